"""Settings: every shipped YAML loads, precedence, and the fixed set of keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypros_lm.config import ALIASES, known_keys, load_settings, settings_from_dict

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    settings = load_settings(["--config", str(path)])
    assert settings_from_dict(settings.to_dict()) == settings


def test_cli_overrides_yaml_overrides_defaults(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("loss:\n  name: brier\n  tau: 0.2\ntrain:\n  max_steps: 50\n")
    s = load_settings(["--config", str(cfg), "--max-steps", "70", "--loss.t0=0.4"])
    assert (s.loss.name, s.loss.tau, s.loss.t0, s.train.max_steps) == ("brier", 0.2, 0.4, 70)
    assert s.model.name == "nano"  # default


def test_unknown_yaml_key_is_an_error(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("loss:\n  taus: 0.2\n")
    with pytest.raises(ValueError, match="unknown setting 'loss.taus'"):
        load_settings(["--config", str(cfg)])


def test_resume_flag_and_launcher_local_rank():
    s = load_settings(["--local_rank=1", "--resume", "--seed", "7"])
    assert s.train.resume and s.train.seed == 7


def test_the_set_of_settings_is_deliberate():
    """Adding or renaming a setting is a user-visible change: update this list on purpose."""
    assert set(ALIASES) == {"loss", "model", "data", "max-steps", "seq-len", "micro-batch-size", "ds-config",
                            "out", "resume", "seed", "precision", "task", "init-from"}
    assert known_keys() == [
        "model.name", "model.attention", "model.activation_checkpointing", "model.tie_embeddings", "model.vocab_size",
        "data.name", "data.train_split", "data.val_split", "data.text_field", "data.seq_len", "data.tokenizer",
        "data.vocab_size", "data.token_budget", "data.tokenizer_sample_chars", "data.holdout_fraction",
        "data.holdout_min_tokens", "data.holdout_seed", "data.docs_per_shard", "data.verify_shards",
        "loss.name", "loss.bounded", "loss.alpha", "loss.t0", "loss.tau", "loss.lam_max", "loss.lam_fixed",
        "loss.linear_start", "loss.linear_end", "loss.peak", "loss.switch", "loss.label_smoothing",
        "loss.score_smoothing", "loss.z_loss", "loss.chunk_size",
        "optim.lr", "optim.min_lr_ratio", "optim.warmup_steps", "optim.decay", "optim.weight_decay", "optim.beta1",
        "optim.beta2", "optim.grad_clip",
        "train.out", "train.resume", "train.max_steps", "train.micro_batch_size", "train.grad_accum", "train.seed",
        "train.ds_config", "train.precision", "train.log_every", "train.eval_every", "train.eval_batches",
        "train.eval_at_start",
        "train.save_every", "train.keep_checkpoints", "train.component_grad_every", "train.stop_at", "train.lm_eval_tasks",
        "telemetry.wandb", "telemetry.wandb_project", "telemetry.run_name", "telemetry.peak_tflops",
        "task.name", "task.init_from", "task.max_target_tokens", "task.train_limit", "task.score_over",
        "task.label_words",
    ]


def test_help_lists_every_key_with_type_default_and_description():
    import subprocess
    import sys

    from tests.helpers import PRETRAIN, REPO

    out = subprocess.run([sys.executable, str(PRETRAIN), "--help"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert "  --train.max_steps  (int; default 300)\n      Optimizer steps T; λ schedules and the learning rate" in out
    assert "  --loss.tau  (float; default 0.1)\n      sigmoid: width τ as a fraction of max_steps" in out
    assert "  --train.precision  (one of fp32, bf16; default 'fp32')" in out
    assert "  --task.name  (str or none; default None)" in out
    assert "  --max-steps          = --train.max_steps" in out and "see --help" not in out
    from hypros_lm.config import known_keys

    assert all(f"  --{key}  (" in out for key in known_keys())


def test_the_preparer_takes_the_data_settings_under_training_s_names(capsys):
    """hypros-prepare --help shows its data settings as hypros-pretrain --help does, line for line; values go
    through the same conversions and checks; the flags of 0.1 are named with what they are now."""
    from hypros_lm.commands import prepare
    from hypros_lm.data.settings import PREPARE_SETTINGS
    from hypros_lm.settings_docs import settings_help

    with pytest.raises(SystemExit):
        prepare.parse(["--help"])
    preparer = capsys.readouterr().out
    training = settings_help().splitlines()
    for name in PREPARE_SETTINGS:
        at = training.index(next(line for line in training if line.startswith(f"  --data.{name}  (")))
        assert "\n".join(training[at:at + 2]) in preparer, name
    assert "--data.seq_len" not in preparer and "--vocab-size" not in preparer
    args, data = prepare.parse(["--data", "imdb", "--data.token_budget", "1e7", "--data.vocab_size", "600", "--out", "x"])
    assert (data.name, data.token_budget, data.vocab_size, args.out) == ("imdb", 10**7, 600, Path("x"))
    with pytest.raises(ValueError, match="data.holdout_fraction=2.0"):
        prepare.parse(["--data", "imdb", "--data.holdout_fraction", "2", "--out", "x"])
    with pytest.raises(ValueError, match="--data.seq_len is not a setting of this command"):
        prepare.parse(["--data", "imdb", "--data.seq_len", "64", "--out", "x"])
    with pytest.raises(SystemExit):
        prepare.parse(["--data", "imdb", "--vocab-size", "600", "--out", "x"])
    assert "--vocab-size is now --data.vocab_size" in capsys.readouterr().err


def test_settings_that_make_little_sense_together_are_warned():
    from hypros_lm.config import load_settings, settings_warnings

    warned = settings_warnings(load_settings(["--max-steps", "20", "--train.eval_every", "50"]))
    assert any("optim.warmup_steps=20 ≥ train.max_steps=20: the learning rate never leaves its warm-up" in w
               for w in warned)
    assert any("train.eval_every=50 > train.max_steps=20" in w for w in warned)
    assert settings_warnings(load_settings(["--max-steps", "300"])) == []


@pytest.mark.parametrize("env, yaml_value, cli_value, expected", [
    (None, None, None, "offline"),  # the default
    ("disabled", None, None, "disabled"),  # unset: the environment decides (documented)
    ("disabled", "offline", None, "offline"),  # YAML wins over the environment
    ("offline", "offline", "disabled", "disabled"),  # the command line wins over both
])
def test_wandb_mode_follows_defaults_then_environment_then_yaml_then_cli(tmp_path, monkeypatch, env, yaml_value,
                                                                         cli_value, expected):
    from hypros_lm.training.telemetry import wandb_mode

    if env is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", env)
    config = tmp_path / "run.yaml"
    config.write_text(f"telemetry:\n  wandb: {yaml_value}\n" if yaml_value else "train:\n  max_steps: 3\n")
    argv = ["--telemetry.wandb", cli_value] if cli_value else []
    assert wandb_mode(load_settings(argv, config=config).telemetry.wandb) == expected

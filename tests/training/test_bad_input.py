"""Bad input stops before heavy work with one message naming the value and the fix."""

from __future__ import annotations

import os

import pytest
import torch

from hypros_lm.config import load_settings
from hypros_lm.errors import InvalidValue, UserError
from hypros_lm.training import check_run
from tests.helpers import run_python


def _check(argv, tmp_path):
    return check_run(load_settings(["--out", str(tmp_path / "run"), *argv]))


@pytest.mark.parametrize(
    ("argv", "error", "message"),
    [
        (["--loss", "focal"], ValueError, "unknown loss 'focal'"),
        (["--model", "huge"], ValueError, "unknown model 'huge'"),
        (["--loss.tau", "0"], ValueError, "loss.tau=0.0 must be > 0"),
        (["--loss.t0", "1.3"], ValueError, "loss.t0=1.3 lies outside the run"),
        (["--seq-len", "4096"], ValueError, "data.seq_len=4096 exceeds model 'nano'"),
        (["--ds-config", "zero9"], FileNotFoundError, "train.ds_config='zero9'"),
        (["--data", "wikitext-103-raw-v1"], FileNotFoundError, "no 'train' split offline"),
        (["--data", "no-such-corpus-xyz"], FileNotFoundError, "unknown data set 'no-such-corpus-xyz'"),
        (["--train.max_steps", "ten"], ValueError, "train.max_steps='ten' is not a valid int"),
        (["--train.lr", "1"], ValueError, "unknown setting 'train.lr'"),
        (["--model.attention", "flash_attention_2"], ValueError, "needs half precision: add --precision bf16"),
    ],
)
def test_bad_settings_raise_named_errors(argv, error, message, tmp_path):
    with pytest.raises(error, match=message) as caught:
        _check(argv, tmp_path)
    assert isinstance(caught.value, UserError)  # what the command line shows as one line


def test_the_command_line_shows_user_errors_in_one_line_and_bugs_with_their_traceback(capsys):
    from hypros_lm.cli import run_main

    def bad_input(_argv):
        raise InvalidValue("loss.tau=0 must be > 0")

    with pytest.raises(SystemExit) as stopped:
        run_main(bad_input, [])
    assert stopped.value.code == 2 and "hypros-lm error (rank 0): loss.tau=0 must be > 0" in capsys.readouterr().err

    def bug(_argv):
        return {}["missing key"]

    with pytest.raises(KeyError):  # not a user error: it propagates, traceback and all
        run_main(bug, [])


def test_missing_split_names_what_is_there(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"offline it has \['test', 'validation'\]"):
        _check(["--data", "wikitext-2-raw-v1"], tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_run_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(PermissionError, match="not writable"):
        check_run(load_settings(["--out", str(locked / "run")]))


def test_run_folder_under_a_file_is_unwritable(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PermissionError, match="is not writable"):
        check_run(load_settings(["--out", str(tmp_path / "file" / "run")]))


def _probe_many_times(folder: str) -> None:
    from pathlib import Path

    from hypros_lm.files import ensure_writable

    for _ in range(300):
        ensure_writable(Path(folder), "train.out")


def test_ranks_checking_the_same_run_folder_at_once_do_not_collide(tmp_path):
    """All ranks check the run folder at the same moment, before the process group exists (a CI failure once)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    ranks = [context.Process(target=_probe_many_times, args=(str(tmp_path / "run"),)) for _ in range(2)]
    for rank in ranks:
        rank.start()
    for rank in ranks:
        rank.join(timeout=120)
    assert [rank.exitcode for rank in ranks] == [0, 0]
    assert not list((tmp_path / "run").iterdir()), "probes must be removed"


def test_tokenizer_larger_than_fixed_model_vocab():
    from hypros_lm.models import ModelSettings, model_vocab_size

    with pytest.raises(ValueError, match="model.vocab_size=1000 cannot hold the tokenizer's 8192 ids"):
        model_vocab_size(ModelSettings(vocab_size=1000), 8192)
    assert model_vocab_size(ModelSettings(), 8190) == 8192


def test_launcher_prints_one_clear_line(tmp_path, cache_dir):
    proc = run_python(["--loss", "focal", "--out", str(tmp_path)], cache_dir, check=False)
    assert proc.returncode == 2
    assert "hypros-lm error (rank 0): unknown loss 'focal'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_hf_models_are_named_before_any_work(tmp_path):
    from transformers import T5Config

    from tests.integrations.hf_models import small_config

    with pytest.raises(FileNotFoundError, match=r"model.name='hf:.*nowhere': no config.json at .*nowhere"):
        _check(["--model", f"hf:{tmp_path / 'nowhere'}"], tmp_path)
    T5Config(vocab_size=512, d_model=32, num_layers=1, num_heads=2).save_pretrained(tmp_path / "t5")
    with pytest.raises(ValueError, match="is a 't5' model, which transformers has no causal LM class for"):
        _check(["--model", f"hf:{tmp_path / 't5'}"], tmp_path)
    small_config("gpt2", vocab=512).save_pretrained(tmp_path / "gpt2")  # 128 positions
    with pytest.raises(ValueError, match=r"data.seq_len=256 exceeds model 'hf:.*gpt2''s 128 positions"):
        _check(["--model", f"hf:{tmp_path / 'gpt2'}", "--seq-len", "256"], tmp_path)
    with pytest.raises(ValueError, match="do not apply to hf:"):
        _check(["--model", f"hf:{tmp_path / 'gpt2'}", "--model.vocab_size", "1024"], tmp_path)


def test_an_hf_vocabulary_too_small_for_the_tokenizer_is_named(tmp_path):
    from hypros_lm.models import ModelSettings, build_model
    from tests.integrations.hf_models import small_config

    small_config("llama", vocab=512).save_pretrained(tmp_path / "llama")
    with pytest.raises(ValueError, match="vocabulary of 512 cannot hold the tokenizer's 2048 ids"):
        build_model(ModelSettings(name=f"hf:{tmp_path / 'llama'}"), 2048)


def test_an_hf_model_whose_head_the_fused_score_would_not_reproduce_is_refused(tmp_path):
    """BERT's causal-LM head transforms the hidden states (dense, GELU, LayerNorm) before its output embedding: once the
    weights are written the stack's probe refuses it, naming what differed."""
    from transformers import BertConfig

    from hypros_lm.models import ModelSettings, build_model
    from hypros_lm.training.engine import assign_parameters

    BertConfig(vocab_size=512, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
               is_decoder=True).save_pretrained(tmp_path / "bert")
    model = build_model(ModelSettings(name=f"hf:{tmp_path / 'bert'}"), 512)
    assign_parameters(model, lambda _name, shape: torch.randn(shape) * 0.5, rank=0)
    with pytest.raises(ValueError, match=r"refuses BertLMHeadModel .*logits differ from the model's own"):
        model.check_head()


def test_malformed_settings_study_and_deepspeed_files_are_named_at_their_line_and_column(tmp_path, cache_dir):
    from hypros_lm.studies.spec import load_study
    from hypros_lm.training.engine import load_ds_config

    settings = tmp_path / "broken.yaml"
    settings.write_text("train:\n  max_steps: 4\nmodel: [1, 2\n")
    proc = run_python(["--config", str(settings)], cache_dir, check=False)
    error = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert error[0].startswith(f"hypros-lm error (rank 0): {settings}:4:1: not valid YAML (expected ',' or ']', but got "
                               "'<stream end>'); fix the file there"), error
    study = tmp_path / "study.yaml"
    study.write_text("name: broken\nobjectives: [log, hypros]\n\tmodels: [nano]\n")
    with pytest.raises(InvalidValue, match=rf"^{study}:3:1: not valid YAML \(found character '\\t' that cannot start any token\)"):
        load_study(study)
    ds = tmp_path / "zero_bad.json"
    ds.write_text('{"zero_optimization": {"stage": 2,}}')
    settings = load_settings(["--ds-config", str(ds)])
    with pytest.raises(InvalidValue, match=rf"^{ds}:1:35: not valid JSON \(Expecting property name enclosed in double quotes\)"):
        load_ds_config(settings.train, settings.optim, 1, hidden_size=64)

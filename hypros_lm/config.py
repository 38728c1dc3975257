"""Run settings (the floor above models and data): one small dataclass per component, nested; loaded from
YAML, overridden from the CLI.

Precedence: dataclass defaults < ``--config FILE.yaml`` < command-line flags. Flags are dotted
(``--loss.tau 0.05``, ``--train.max_steps=200``) with a few short aliases (``--loss hypros``,
``--max-steps 200``). Unknown keys are errors that name the closest known ones, then all.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hypros_lm import resources
from hypros_lm.data import DataSettings
from hypros_lm.errors import InvalidValue, MissingFile
from hypros_lm.files import read_yaml
from hypros_lm.models import ModelSettings, hf_tokenizer, is_hf
from hypros_lm.scoring import LossSettings


@dataclass(kw_only=True)
class OptimSettings:
    lr: float = 3e-3
    """Peak learning rate (AdamW)."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak (cosine)."""
    warmup_steps: int = 20
    """Steps of linear warm-up from 0 to lr (warm-up ≥ max_steps never decays: a warning says so)."""
    decay: Literal["cosine", "inverse_sqrt", "constant"] = "cosine"
    """Learning-rate decay after the warm-up: cosine to min_lr_ratio·lr, inverse square root, or constant."""
    weight_decay: float = 0.1
    """AdamW weight decay (not on norms and biases)."""
    beta1: float = 0.9
    """AdamW β₁."""
    beta2: float = 0.95
    """AdamW β₂."""
    grad_clip: float = 1.0
    """Global gradient-norm clipping (fills the DeepSpeed config's "auto"); 0 disables."""

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise InvalidValue(f"optim.lr={self.lr} must be > 0")
        if self.decay not in ("cosine", "inverse_sqrt", "constant"):
            raise InvalidValue(f"optim.decay={self.decay!r}; use cosine, inverse_sqrt or constant")
        if self.warmup_steps < 0:
            raise InvalidValue(f"optim.warmup_steps={self.warmup_steps} must be ≥ 0")


@dataclass(kw_only=True)
class TrainSettings:
    out: str = "runs/default"
    """Run folder: settings, tokenizer, metrics.jsonl, checkpoints/."""
    resume: bool = False
    """Continue from the run folder's latest checkpoint (starts fresh if there is none)."""
    max_steps: int = 300
    """Optimizer steps T; λ schedules and the learning rate are defined over it."""
    micro_batch_size: int = 8
    """Sequences per rank per micro-step."""
    grad_accum: int = 1
    """Micro-steps per optimizer step (gradient accumulation)."""
    seed: int = 1234
    """Seed of the initial weights, the data order and every random choice of the run."""
    ds_config: str = "zero2"
    """DeepSpeed JSON: a path, or the name of a shipped one (zero0, zero1, zero2, zero3, zero3_offload)."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """fp32, or bf16 mixed precision (DeepSpeed's bf16: fp32 master weights)."""
    log_every: int = 10
    """Log the training record (metrics.jsonl, wandb, console) every k steps."""
    eval_every: int = 100
    """Validation every k steps (and at the last step); 0 disables."""
    eval_batches: int = 8
    """Micro-batches of validation per rank."""
    eval_at_start: bool = False
    """Also validate the initial weights, as step 0 (where continued pretraining or a fine-tune starts from)."""
    save_every: int = 100
    """Checkpoint every k steps (and at the last step); 0 keeps only the final one."""
    keep_checkpoints: int = 2
    """Complete checkpoints kept in the run folder (older ones are deleted)."""
    component_grad_every: int = 50
    """Log ‖∂L_log/∂h‖ and ‖∂L_bounded/∂h‖ every k steps; 0 disables."""
    stop_at: int | None = None
    """Stop (with a checkpoint) after this step, as a time-limited job would; resume later."""
    lm_eval_tasks: str | None = None
    """lm-eval tasks run at each evaluation, with a per-task example limit: 'lambada_openai:200,arc_easy:200'
    (log-likelihood tasks; offline, those with copies in the data folder)."""

    def __post_init__(self) -> None:
        for name in ("max_steps", "micro_batch_size", "grad_accum", "log_every", "eval_batches", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise InvalidValue(f"train.{name}={getattr(self, name)} must be ≥ 1")
        if self.precision not in ("fp32", "bf16"):
            raise InvalidValue(f"train.precision={self.precision!r}; use fp32 or bf16")
        if self.stop_at is not None and not 0 < self.stop_at <= self.max_steps:
            raise InvalidValue(f"train.stop_at={self.stop_at} must lie in (0, max_steps={self.max_steps}]")


@dataclass(kw_only=True)
class TelemetrySettings:
    wandb: Literal["offline", "online", "disabled"] | None = None
    """wandb mode: offline (sync later with `wandb sync <out>/wandb/offline-run-*`), online or disabled; unset: the
    WANDB_MODE environment variable where it is set, else offline. A value given here (YAML or command line) wins
    over WANDB_MODE."""
    wandb_project: str = "hypros-lm"
    """wandb project name."""
    run_name: str | None = None
    """wandb run name (None: wandb chooses one)."""
    peak_tflops: float | None = None
    """Peak TFLOP/s of one device for MFU; None looks the GPU up in telemetry.PEAK_TFLOPS (no MFU on CPU)."""

    def __post_init__(self) -> None:
        if self.peak_tflops is not None and self.peak_tflops <= 0:
            raise InvalidValue(f"telemetry.peak_tflops={self.peak_tflops} must be > 0 (or unset to look the GPU up)")


@dataclass(kw_only=True)
class TaskSettings:
    name: str | None = None
    """None: language-model pretraining; else a task of a registered family (hypros_lm.tasks, checked before
    any heavy work: unknown names list every registered task): a
    sequence-to-sequence task (multi30k-en-de, wmt14-en-de, …) or a classification task (sst2, ag_news)."""
    init_from: str | None = None
    """A pretraining run folder or an exported Hugging Face folder to start from (None: from scratch)."""
    max_target_tokens: int = 64
    """Sequence-to-sequence: target tokens kept per example (the source is truncated to fit the rest of seq_len)."""
    train_limit: int | None = None
    """Use at most this many training examples."""
    score_over: Literal["vocab", "labels"] = "vocab"
    """Classification: score the objective over the full vocabulary at the label token (as in pretraining),
    or over the label set only (the class-level scores: softmax over the label words' logits)."""
    label_words: str | None = None
    """Classification: comma-separated label words replacing the task's own (one token each, in label order)."""

    def __post_init__(self) -> None:
        if self.max_target_tokens < 1:
            raise InvalidValue(f"task.max_target_tokens={self.max_target_tokens} must be ≥ 1")
        if self.score_over not in ("vocab", "labels"):
            raise InvalidValue(f"task.score_over={self.score_over!r}; use vocab or labels")
        if self.train_limit is not None and self.train_limit < 1:
            raise InvalidValue(f"task.train_limit={self.train_limit} must be ≥ 1")


@dataclass(kw_only=True)
class RunSettings:
    model: ModelSettings = field(default_factory=ModelSettings)
    data: DataSettings = field(default_factory=DataSettings)
    loss: LossSettings = field(default_factory=LossSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    task: TaskSettings = field(default_factory=TaskSettings)

    def __post_init__(self) -> None:
        if is_hf(self.model.name) and self.data.tokenizer is None and self.task.init_from is None:
            self.data.tokenizer = hf_tokenizer(self.model.name)  # an hf: model reads text with its own tokenizer

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


ALIASES = {
    "loss": "loss.name",
    "model": "model.name",
    "data": "data.name",
    "max-steps": "train.max_steps",
    "seq-len": "data.seq_len",
    "micro-batch-size": "train.micro_batch_size",
    "ds-config": "train.ds_config",
    "out": "train.out",
    "resume": "train.resume",
    "seed": "train.seed",
    "precision": "train.precision",
    "task": "task.name",
    "init-from": "task.init_from",
}
_IGNORED_FLAGS = {"local_rank", "local-rank"}  # passed by the deepspeed launcher; we read LOCAL_RANK


def sections() -> dict[str, type]:
    """Each section's name in the settings tree and its dataclass."""
    return {f.name: f.default_factory().__class__ for f in dataclasses.fields(RunSettings)}


def known_keys() -> list[str]:
    return [f"{s}.{f.name}" for s, cls in sections().items() for f in dataclasses.fields(cls)]


def coerce(key: str, raw: Any, annotation: Any) -> Any:
    """Convert a YAML/CLI value to the field's type, or raise naming the key."""
    hint = annotation
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null")):
            return None
        hint = args[0]
        origin = typing.get_origin(hint)
    if origin is Literal:
        if raw not in typing.get_args(hint):
            raise InvalidValue(f"{key}={raw!r}: choose one of {list(typing.get_args(hint))}")
        return raw
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "false", "0", "no"):
            return raw.lower() in ("true", "1", "yes")
        raise InvalidValue(f"{key}={raw!r} is not a boolean (true/false)")
    try:
        if hint is int:
            number = float(raw) if isinstance(raw, str) and not raw.strip().lstrip("-").isdigit() else raw
            if isinstance(number, float) and not number.is_integer():  # 1e10 is a whole number, 0.5 is not
                raise ValueError
            return int(number)
        if hint is float:
            return float(raw)
        if hint is str:
            return str(raw)
    except (TypeError, ValueError):
        raise InvalidValue(f"{key}={raw!r} is not a valid {hint.__name__}") from None
    return raw


def _apply(tree: dict[str, dict[str, Any]], key: str, raw: Any) -> None:
    section, _, name = key.partition(".")
    classes = sections()
    if section not in classes or name not in {f.name for f in dataclasses.fields(classes[section])}:
        close = " or ".join(difflib.get_close_matches(key, known_keys(), n=3, cutoff=0.6))  # a typo's fix first
        raise InvalidValue(f"unknown setting {key!r}; " + (f"did you mean {close}? " if close else "")
                           + f"known settings: {', '.join(known_keys())}")
    hints = typing.get_type_hints(classes[section])
    tree.setdefault(section, {})[name] = coerce(key, raw, hints[name])


def _flatten(data: dict[str, Any], source: str) -> list[tuple[str, Any]]:
    items = []
    for section, values in (data or {}).items():
        if not isinstance(values, dict):
            raise InvalidValue(f"{source}: top-level key {section!r} must hold a mapping of settings")
        items += [(f"{section}.{k}", v) for k, v in values.items()]
    return items


def parse_cli(argv: list[str]) -> tuple[str | None, list[tuple[str, Any]]]:
    """Split argv into an optional --config path and (dotted key, raw value) overrides."""
    config, overrides, i = None, [], 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise InvalidValue(f"unexpected argument {arg!r}; settings are given as --section.key value")
        name, eq, value = arg[2:].partition("=")
        if name in _IGNORED_FLAGS:
            i += 1 if eq else 2
            continue
        key = ALIASES.get(name, name.replace("-", "_") if "." not in name else name)
        if not eq:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if key == "train.resume" and (nxt is None or nxt.startswith("--")):
                value, i = "true", i + 1
            elif nxt is None or nxt.startswith("--"):
                raise InvalidValue(f"{arg} needs a value")
            else:
                value, i = nxt, i + 2
        else:
            i += 1
        if key == "config":
            config = value
        else:
            overrides.append((key, value))  # a string: coerce converts it to the field's type
    return config, overrides


def load_settings(argv: list[str] | None = None, *, config: str | Path | None = None) -> RunSettings:
    """Build RunSettings from an optional YAML file and CLI arguments; every check runs here."""
    cli_config, overrides = parse_cli(list(argv or []))
    config = cli_config or config
    tree: dict[str, dict[str, Any]] = {}
    if config is not None:
        try:
            path = resources.find("configs", str(config), suffixes=(".yaml",))
        except FileNotFoundError as err:
            raise MissingFile(f"--config {err}") from None
        for key, value in _flatten(read_yaml(path), str(path)):
            _apply(tree, key, value)
    for key, value in overrides:
        _apply(tree, key, value)
    return _build(tree)


def load_data_settings(argv: list[str], *, keys: Collection[str]) -> DataSettings:
    """The data settings of a command that takes only some of them (``hypros-prepare``): the same ``--data.*``
    flags, names, conversions and checks as training's; another setting is refused, naming the ones taken."""
    tree: dict[str, dict[str, Any]] = {}
    for key, value in parse_cli(argv)[1]:
        if key not in keys:
            raise InvalidValue(f"--{key} is not a setting of this command; it takes {', '.join(f'--{k}' for k in keys)}")
        _apply(tree, key, value)
    return DataSettings(**tree.get("data", {}))


def _build(tree: dict[str, dict[str, Any]]) -> RunSettings:
    return RunSettings(**{name: cls(**tree.get(name, {})) for name, cls in sections().items()})


def settings_from_dict(data: dict[str, Any]) -> RunSettings:
    """Rebuild RunSettings from ``to_dict()`` output (a saved run's settings.yaml)."""
    tree: dict[str, dict[str, Any]] = {}
    for key, value in _flatten(data, "settings"):
        _apply(tree, key, value)
    return _build(tree)


def settings_warnings(settings: RunSettings) -> list[str]:
    """Settings that are valid but make little sense together (said before training, never fatal)."""
    t, o, out = settings.train, settings.optim, []
    if o.warmup_steps >= t.max_steps:
        out.append(f"optim.warmup_steps={o.warmup_steps} ≥ train.max_steps={t.max_steps}: the learning rate never "
                   f"leaves its warm-up and never decays; lower --optim.warmup_steps (e.g. {max(1, t.max_steps // 10)})")
    if t.eval_every > t.max_steps:
        out.append(f"train.eval_every={t.eval_every} > train.max_steps={t.max_steps}: validation runs only at the "
                   f"last step")
    if t.save_every > t.max_steps:
        out.append(f"train.save_every={t.save_every} > train.max_steps={t.max_steps}: the only checkpoint is the "
                   f"final one")
    if t.log_every > t.max_steps:
        out.append(f"train.log_every={t.log_every} > train.max_steps={t.max_steps}: only the last step is logged")
    if t.component_grad_every > t.max_steps:
        out.append(f"train.component_grad_every={t.component_grad_every} > train.max_steps={t.max_steps}: the "
                   f"component gradient norms are never logged")
    return out

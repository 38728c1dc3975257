"""HyProS in Axolotl: a plugin, listed as Axolotl's own Liger and Cut Cross-Entropy plugins are.

    plugins:
      - hypros_lm.integrations.axolotl.HyProSPlugin
    hypros_loss: hypros        # an objective of --loss (hypros_lm.scoring.LOSSES)
    hypros_t0: 0.3             # any other --loss.<name> setting as hypros_<name>: tau, bounded, alpha, z_loss, ...

The plugin patches the model ([`patch_causal_lm()`][hypros_lm.integrations.transformers.patch_causal_lm]) after
Axolotl builds it and before adapters are applied, so LoRA and ``lora_modules_to_save`` wrap a patched model as in
the PEFT integration, and probes the patch once they are in (the model as it trains). It adds a
[`HyProSCallback`][hypros_lm.integrations.transformers.HyProSCallback] to the trainer (λ from the step, each component
logged, the guard that stops a run whose loss the patched head did not compute), and replaces the ``ppl`` Axolotl
logs (exp of the loss, meaningless for a mixture) with exp of the log-loss component.

Config validation refuses what would train another objective, naming the key: Axolotl's other loss kernels,
label smoothing outside the plugin, and preference, reward and RL trainers. A config without ``hypros_loss`` is left
alone, so the plugin may be installed as an ``axolotl.plugins`` entry point and loaded for every run.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import asdict, fields
from typing import Any, get_type_hints

from hypros_lm.errors import InvalidValue, MissingPackage
from hypros_lm.integrations.transformers import HyProSCallback, check_patch, extend_logs, patch_causal_lm
from hypros_lm.scoring.fused import ScoringOptions
from hypros_lm.scoring.losses import LossSettings

LOSS_KERNELS = ("liger_cross_entropy", "liger_fused_linear_cross_entropy", "cut_cross_entropy",
                "chunked_cross_entropy", "use_dft", "use_eaft")
"""Axolotl's keys that compute the loss another way (each replaces the model's or the trainer's loss)."""
OTHER_TRAINERS = ("rl", "reward_model", "process_reward_model")
"""Axolotl's keys that pick a preference, reward or RL trainer: these train no token-level score."""
OUTSIDE_SMOOTHING = ("label_smoothing_factor", "label_smoothing")
"""Keys a user may write for the Trainer's label smoothing: Axolotl drops them silently; the plugin names its own."""
CCE_PLUGIN = "axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin"  # its key defaults to true when listed


def _axolotl():
    try:
        import pydantic
        from axolotl.integrations.base import BasePlugin
    except ImportError as err:
        raise MissingPackage("hypros_lm.integrations.axolotl needs Axolotl (Python >= 3.12): bash "
                             "scripts/axolotl_env.sh builds an environment with it and hypros-lm (or pip install "
                             "axolotl==0.21.0 beside hypros-lm)") from err
    return BasePlugin, pydantic


BasePlugin, _pydantic = _axolotl()


def settings_of(cfg: Any) -> LossSettings | None:
    """The ``--loss`` settings a config's ``hypros_*`` keys give (None without ``hypros_loss``: the plugin is off)."""
    if not _get(cfg, "hypros_loss"):
        return None
    given = {f.name: _get(cfg, f"hypros_{f.name}") for f in fields(LossSettings) if f.name != "name"}
    return LossSettings(name=_get(cfg, "hypros_loss"), **{k: v for k, v in given.items() if v is not None})


def _get(cfg: Any, key: str) -> Any:
    return cfg.get(key) if isinstance(cfg, dict) else getattr(cfg, key, None)


def refused_keys(data: dict[str, Any]) -> list[str]:
    """The keys of a raw config that would train another objective than the plugin's, each with why."""
    listed = CCE_PLUGIN in (data.get("plugins") or [])
    on = {**{key: data.get(key) for key in LOSS_KERNELS}, "cut_cross_entropy": data.get("cut_cross_entropy", listed)}
    refused = [f"{key} (another loss kernel: set it false or leave it out)" for key in LOSS_KERNELS if on[key]]
    refused += [f"{key} (label smoothing: set hypros_label_smoothing instead)" for key in OUTSIDE_SMOOTHING
                if data.get(key)]
    refused += [f"{key} (a preference, reward or RL trainer, which trains no token-level score)"
                for key in OTHER_TRAINERS if data.get(key)]
    return refused


class _Checks(_pydantic.BaseModel):
    @_pydantic.model_validator(mode="before")
    @classmethod
    def _no_other_objective(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("hypros_loss"):
            refused = refused_keys(data)
            if refused:
                raise ValueError(f"hypros_loss: {data['hypros_loss']!r} trains the HyProS plugin's objective, but the "
                                 f"config also sets {'; '.join(refused)}")
        return data

    @_pydantic.model_validator(mode="after")
    def _valid_settings(self) -> Any:
        try:
            settings_of(self)
        except InvalidValue as err:  # named as the config names them: loss.tau -> hypros_tau
            raise ValueError(re.sub(r"(?<![\w-])loss\.(\w)", r"hypros_\1", str(err))) from None
        return self


def _args_model():
    hints = get_type_hints(LossSettings)
    keys = {f"hypros_{f.name}": (hints[f.name] | None, None) for f in fields(LossSettings) if f.name != "name"}
    return _pydantic.create_model("HyProSArgs", __base__=_Checks, __module__=__name__, hypros_loss=(str | None, None),
                                  **keys)


HyProSArgs = _args_model()
"""The plugin's YAML keys: ``hypros_loss`` and ``hypros_<name>`` for each other ``--loss.<name>`` setting
(`hypros_lm.scoring.losses.LossSettings`), all optional."""


class AxolotlHyProSCallback(HyProSCallback):
    """[`HyProSCallback`][hypros_lm.integrations.transformers.HyProSCallback] whose logs carry ``ppl`` (and
    ``<prefix>_ppl``) as exp of the log-loss component, where Axolotl's trainer logged exp of the mixture."""

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        super().on_log(args, state, control, logs=logs, model=model, **kwargs)
        if not logs:
            return
        prefixes = [key.removesuffix("_loss") for key in logs if key.endswith("_loss")]  # evaluation: eval_loss
        sources = {"ppl": "hypros/log", **{f"{prefix}_ppl": f"{prefix}_log" for prefix in prefixes}}
        extend_logs(state, logs, {ppl: _exp(logs[log]) for ppl, log in sources.items() if log in logs})


def _exp(value: float) -> float:
    return math.exp(value) if value < 700 else float("inf")


class HyProSPlugin(BasePlugin):
    """Trains Axolotl's SFT runs on a HyProS objective (``hypros_loss``); does nothing without that key."""

    def get_input_args(self) -> str:
        return f"{__name__}.HyProSArgs"

    def post_model_build(self, cfg, model):
        settings = settings_of(cfg)
        if settings is not None:  # probed once the adapters are in (Axolotl's LoRA kernels need them to run)
            patch_causal_lm(model, verify=False, bounded=settings.bounded, alpha=settings.alpha,
                            **asdict(settings.options()))

    def post_model_load(self, cfg, model):
        if settings_of(cfg) is not None:
            verified, note = check_patch(model)  # the model as it will train: refused with what differed
            if not verified:
                warnings.warn(note, stacklevel=2)

    def post_trainer_create(self, cfg, trainer):
        settings = settings_of(cfg)
        if settings is None:
            return
        params = {k: v for k, v in asdict(settings).items() if k != "name" and k not in ScoringOptions.__dataclass_fields__}
        callback = AxolotlHyProSCallback(settings.name, **params)  # the schedule's and the bounded score's
        trainer.callback_handler.callbacks.insert(0, callback)  # ahead of the reporting callbacks: they see λ


__all__ = ["AxolotlHyProSCallback", "HyProSArgs", "HyProSPlugin", "refused_keys", "settings_of"]

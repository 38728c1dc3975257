"""Study files: a matrix of variations × model sizes × seeds on one task, with shared settings.

    name: cpu-demo
    task: pretrain            # or a fine-tune task name (see hypros_lm.data.seq2seq)
    ranks: 1
    base: {data: {...}, train: {...}}          # shared run settings (any RunSettings key)
    variations: {log: {loss: {name: log}}, hypros: {loss: {name: hypros}}}
    models: [nano, micro]
    seeds: [1, 2, 3]
    evaluations: {test: {data: wikitext-2-v1, split: test}, shift-lambada: {data: lambada, split: test}}
    robustness: [shift-lambada]               # evaluations that test robustness (criterion C4)
    eval_batches: 20
    target: {metric: loss_log, value: null}   # time-to-target; null = the level every variation reaches

String settings may name their cell: ``{variation}``, ``{model}`` and ``{seed}`` are filled per run (e.g. a
fine-tune study's ``task.init_from: runs/studies/exp1-core/{variation}-{model}-s{seed}``).
Every run's settings are built and checked when the file is loaded, before anything runs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hypros_lm.training.settings import RunSettings, settings_from_dict

STUDY_KEYS = {"name", "description", "task", "ranks", "base", "variations", "models", "seeds", "evaluations",
              "robustness", "eval_batches", "target", "baselines"}


@dataclass
class RunSpec:
    name: str
    variation: str
    model: str
    seed: int
    settings: RunSettings
    out: Path

    def identity(self, study: str, task: str) -> dict[str, Any]:
        return {"study": study, "task": task, "variation": self.variation, "model": self.model, "seed": self.seed}


@dataclass
class Study:
    name: str
    task: str
    variations: dict[str, dict[str, Any]]
    models: list[str]
    seeds: list[int]
    base: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    ranks: int = 1
    evaluations: dict[str, dict[str, str]] = field(default_factory=dict)
    robustness: list[str] = field(default_factory=list)
    eval_batches: int = 20
    target: dict[str, Any] = field(default_factory=lambda: {"metric": "loss_log", "value": None})
    baselines: dict[str, str] = field(default_factory=lambda: {"log": "log", "bounded": "brier", "method": "hypros"})


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for section, values in (over or {}).items():
        out.setdefault(section, {}).update(values)
    return out


def load_study(path: str | Path) -> Study:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no study file {path}; shipped studies: {sorted(p.name for p in Path('studies').glob('*.yaml'))}")
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = set(raw) - STUDY_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown study key(s) {sorted(unknown)}; known: {sorted(STUDY_KEYS)}")
    for key in ("name", "variations", "models", "seeds"):
        if key not in raw:
            raise ValueError(f"{path}: the study needs {key!r}")
    study = Study(**{"task": "pretrain", **raw})
    missing = [r for r in study.robustness if r not in study.evaluations]
    if missing:
        raise ValueError(f"{path}: robustness names {missing}, which are not among evaluations {list(study.evaluations)}")
    for role, variation in study.baselines.items():
        if variation not in study.variations:
            raise ValueError(f"{path}: baselines.{role}={variation!r} is not a variation ({list(study.variations)})")
    return study


def expand(study: Study, out_root: Path) -> list[RunSpec]:
    """One RunSpec per (variation, model, seed), each with fully built and checked settings."""
    runs = []
    for variation, overrides in study.variations.items():
        for model in study.models:
            for seed in study.seeds:
                name = f"{variation}-{model}-s{seed}"
                tree = _merge(_merge(study.base, overrides),
                              {"model": {"name": model}, "train": {"seed": seed, "out": str(out_root / name)}})
                cell = {"variation": variation, "model": model, "seed": seed}
                tree = {sec: {k: v.format(**cell) if isinstance(v, str) else v for k, v in values.items()}
                        for sec, values in tree.items()}
                try:
                    settings = settings_from_dict(tree)
                except (ValueError, TypeError) as err:
                    raise ValueError(f"study {study.name!r}, run {name}: {err}") from err
                runs.append(RunSpec(name, variation, model, seed, settings, out_root / name))
    return runs

"""Study files: a matrix of variations × model sizes × seeds on one task, with shared settings.

    name: cpu-demo
    task: pretrain            # or a fine-tune task name (see hypros_lm.tasks)
    ranks: 1
    base: {data: {...}, train: {...}}          # shared run settings (any RunSettings key)
    variations: {log: {loss: {name: log}}, hypros: {loss: {name: hypros}}}
    models: [nano, micro]     # ladder rungs, or hf:<config, folder or hub name> (runs named by its folder)
    seeds: [1, 2, 3]
    evaluations: {test: {data: wikitext-2-v1, split: test}, shift-lambada: {data: lambada, split: test}}
    # or a task's own evaluation: {task: imdb, split: test, limit: 2000}, {task: sst2, split: validation, perturb: swap:0.05}
    robustness: [shift-lambada]               # evaluations that test robustness (criterion C4)
    eval_batches: 20
    target: {metric: loss_log, value: null}   # time-to-target; null = the level every variation reaches
    timing: {steps: 12}                       # optional: method and log-loss steps alternated in one process per
                                              #   model after the runs (timing/<model>.json): what C1 is judged on
    scaling:                                  # optional: budgets that grow with the model (a scaling-law study)
      tokens_per_parameter: 10                #   D = k·N tokens per run, N its model's total parameters
      warmup_fraction: 0.02                   #   each run's warm-up, a fraction of its own steps
      evaluations: 8                          #   validations per run (its learning curve; the compute frontier)
      lr: {reference: 20000, value: 1.0e-2, exponent: 0.3}   # optional: lr(N) = value·(N/reference)^−exponent
    sweep:                                    # optional: a grid of variations around one variation
      variation: hypros                       #   the grid varies this one; its own settings are the reference cell
      grid: {loss.tau: [0.05, 0.15], loss.lam_max: [0.7, 1.0]}   # one or two settings (heat-maps need two)
      metric: ece_10                          #   the heat-maps' test metric: nll, brier, ece_10, accuracy or auc

A sweep expands into named variations (``hypros-tau0.05-lam_max0.7``) that run, skip and resume like the
others; a grid point with the reference's own settings is the reference variation itself, not a copy.
String settings may name their cell: ``{variation}``, ``{model}`` and ``{seed}`` are filled per run (e.g. a
fine-tune study's ``task.init_from: runs/studies/exp1-core/{variation}-{model}-s{seed}``).
Every run's settings are built and checked when the file is loaded, before anything runs.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypros_lm import resources
from hypros_lm.config import RunSettings, settings_from_dict
from hypros_lm.data.perturb import parse
from hypros_lm.errors import InvalidValue, MissingFile
from hypros_lm.files import read_yaml
from hypros_lm.models import count_parameters
from hypros_lm.models.hf import model_label
from hypros_lm.tasks import family_for

STUDY_KEYS = {"name", "description", "task", "ranks", "base", "variations", "models", "seeds", "evaluations",
              "robustness", "eval_batches", "target", "baselines", "sweep", "timing", "scaling"}
SCALING_KEYS = {"tokens_per_parameter", "warmup_fraction", "evaluations", "lr", "seeds"}
SWEEP_KEYS = {"variation", "grid", "metric"}
SWEEP_METRICS = ("nll", "brier", "ece_10", "accuracy", "auc", "bleu", "chrf", "rouge1_f", "rouge2_f", "rougeL_f")


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
    sweep: dict[str, Any] | None = None
    timing: dict[str, int] | None = None
    """``{steps: N}``: after the runs, an interleaved step timing per model (training/timing.py) for C1."""
    scaling: dict[str, Any] | None = None
    """Budgets that grow with the model (see the module docstring): each run's max_steps from D = k·N, its warm-up,
    validations and (by a stated rule) learning rate; ``seeds`` may map a model to its own seeds."""
    grid_cells: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Filled from ``sweep``: variation name → its grid values (the reference variation included)."""


@dataclass(frozen=True)
class GridAxis:
    section: str
    key: str
    values: tuple[Any, ...]

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"


def grid_axes(study: Study) -> list[GridAxis]:
    return [GridAxis(*name.split(".", 1), tuple(values)) for name, values in (study.sweep or {}).get("grid", {}).items()]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for section, values in (over or {}).items():
        out.setdefault(section, {}).update(values)
    return out


def load_study(path: str | Path) -> Study:
    """A study file by path, or the name of a shipped one (cpu-demo, sensitivity-cpu, ...)."""
    try:
        path = resources.find("studies", str(path), suffixes=(".yaml",))
    except FileNotFoundError as err:
        raise MissingFile(f"study {err}") from None
    raw = read_yaml(path) or {}
    unknown = set(raw) - STUDY_KEYS
    if unknown:
        raise InvalidValue(f"{path}: unknown study key(s) {sorted(unknown)}; known: {sorted(STUDY_KEYS)}")
    for key in ("name", "variations", "models", "seeds"):
        if key not in raw:
            raise InvalidValue(f"{path}: the study needs {key!r}")
    study = Study(**{"task": "pretrain", **raw})
    if study.sweep is not None:
        _expand_sweep(study, path)
    if study.scaling is not None:
        _check_scaling(study, path)
    for name, spec in study.evaluations.items():
        _check_evaluation(path, name, spec)
    if study.timing is not None and (set(study.timing) != {"steps"} or not isinstance(study.timing["steps"], int)
                                     or study.timing["steps"] < 3):
        raise InvalidValue(f"{path}: timing={study.timing!r}; give timing: {{steps: N}} with N ≥ 3 (e.g. 12)")
    missing = [r for r in study.robustness if r not in study.evaluations]
    if missing:
        raise InvalidValue(f"{path}: robustness names {missing}, which are not among evaluations {list(study.evaluations)}")
    for role, variation in study.baselines.items():
        if variation not in study.variations:
            raise InvalidValue(f"{path}: baselines.{role}={variation!r} is not a variation ({list(study.variations)}); "
                               f"name the method and the baselines among them with a `baselines:` key, e.g. "
                               f"baselines: {{method: hypros, log: log, bounded: brier}} (docs/studies.md)")
    return study


def _check_evaluation(path: Path, name: str, spec: Any) -> None:
    if not isinstance(spec, dict) or ("data" in spec) == ("task" in spec):
        raise InvalidValue(f"{path}: evaluations.{name} needs either data: (a corpus, with split:) or task: (a task's "
                           f"own evaluation, with split: and optionally limit:, perturb:, seed:); got {spec!r}")
    if "data" in spec and set(spec) != {"data", "split"}:
        raise InvalidValue(f"{path}: evaluations.{name}: a corpus evaluation takes data and split only; got {sorted(spec)}")
    if "task" in spec:
        family_for(spec["task"])  # unknown tasks fail here
        unknown = set(spec) - {"task", "split", "limit", "perturb", "seed"}
        if unknown:
            raise InvalidValue(f"{path}: evaluations.{name}: unknown key(s) {sorted(unknown)}")
        if spec.get("perturb"):
            parse(spec["perturb"])


def _check_sweep(sweep: Any, study: Study, path: Path) -> None:
    if not isinstance(sweep, dict) or set(sweep) - SWEEP_KEYS or "grid" not in sweep or "variation" not in sweep:
        raise InvalidValue(f"{path}: sweep must be a mapping with 'variation' and 'grid' (and optionally 'metric'), "
                           f"e.g. sweep: {{variation: hypros, grid: {{loss.tau: [0.05, 0.2]}}, metric: ece_10}}")
    if sweep["variation"] not in study.variations:
        raise InvalidValue(f"{path}: sweep.variation={sweep['variation']!r} is not a variation ({list(study.variations)})")
    grid = sweep["grid"]
    if not isinstance(grid, dict) or not 1 <= len(grid) <= 2:
        raise InvalidValue(f"{path}: sweep.grid must map one or two settings (section.key) to lists of values; got {grid!r}")
    for name, values in grid.items():
        if name.count(".") != 1:
            raise InvalidValue(f"{path}: sweep.grid key {name!r} must be section.key, e.g. loss.tau")
        if not isinstance(values, list) or not values or len(set(map(repr, values))) != len(values):
            raise InvalidValue(f"{path}: sweep.grid.{name} must be a non-empty list of distinct values; got {values!r}")
    if len({n.split(".")[1] for n in grid}) != len(grid):
        raise InvalidValue(f"{path}: sweep.grid keys {list(grid)} share a name; variation names would collide")
    metric = sweep.setdefault("metric", "ece_10")
    if metric not in SWEEP_METRICS:
        raise InvalidValue(f"{path}: sweep.metric={metric!r}; choose one of {list(SWEEP_METRICS)}")


def _check_scaling(study: Study, path: Path) -> None:
    sc = study.scaling
    example = ("scaling: {tokens_per_parameter: 10, warmup_fraction: 0.02, evaluations: 8, "
               "lr: {reference: 20000, value: 1.0e-2, exponent: 0.3}}")
    if not isinstance(sc, dict) or set(sc) - SCALING_KEYS or "tokens_per_parameter" not in sc:
        raise InvalidValue(f"{path}: scaling={sc!r}; give {example}")
    if not sc["tokens_per_parameter"] > 0 or not 0 <= sc.setdefault("warmup_fraction", 0.02) < 0.5 \
            or not int(sc.setdefault("evaluations", 8)) >= 2:
        raise InvalidValue(f"{path}: scaling needs tokens_per_parameter > 0, 0 ≤ warmup_fraction < 0.5 and "
                           f"evaluations ≥ 2; got {sc!r}")
    lr = sc.get("lr")
    if lr is not None and (not isinstance(lr, dict) or set(lr) != {"reference", "value", "exponent"}):
        raise InvalidValue(f"{path}: scaling.lr={lr!r}; give lr: {{reference: N0, value: lr0, exponent: b}} for "
                           f"lr(N) = lr0·(N/N0)^−b, or leave it out to keep each run's optim.lr")
    unknown = set(sc.get("seeds", {})) - set(study.models)
    if unknown:
        raise InvalidValue(f"{path}: scaling.seeds names {sorted(unknown)}, which are not among models {study.models}")


def budget(settings: RunSettings, scaling: dict[str, Any], *, ranks: int) -> dict[str, Any]:
    """What a scaling study sets for one run from its model's size: max_steps for D = k·N tokens (N the total
    parameters), warm-up, validation and checkpoint steps, and the learning rate by the study's rule."""
    total, _ = count_parameters(settings.model, settings.data.vocab_size)
    t = settings.train
    per_step = t.micro_batch_size * t.grad_accum * settings.data.seq_len * ranks
    steps = max(2, -(-int(scaling["tokens_per_parameter"] * total) // per_step))
    every = max(1, steps // int(scaling["evaluations"]))
    out: dict[str, Any] = {"train": {"max_steps": steps, "eval_every": every, "save_every": every},
                           "optim": {"warmup_steps": max(1, round(scaling["warmup_fraction"] * steps))}}
    if scaling.get("lr"):
        rule = scaling["lr"]
        out["optim"]["lr"] = float(f"{rule['value'] * (total / rule['reference']) ** (-rule['exponent']):.3g}")
    return out


def grid_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _expand_sweep(study: Study, path: Path) -> None:
    """Add one variation per grid point; the point with the reference's own settings is the reference."""
    _check_sweep(study.sweep, study, path)
    reference = study.sweep["variation"]
    axes = grid_axes(study)

    def resolved(overrides: dict[str, Any]) -> dict[str, Any]:
        try:
            return settings_from_dict(_merge(_merge(study.base, study.variations[reference]), overrides)).to_dict()
        except (ValueError, TypeError) as err:
            raise InvalidValue(f"{path}: sweep of {reference!r}: {err}") from err

    ref_settings = resolved({})
    for axis in axes:
        if axis.key not in ref_settings.get(axis.section, {}):
            raise InvalidValue(f"{path}: sweep.grid names {axis.name}, which is not a run setting")
    study.grid_cells[reference] = {a.name: ref_settings[a.section][a.key] for a in axes}
    for point in itertools.product(*(a.values for a in axes)):
        overrides: dict[str, dict[str, Any]] = {}
        for axis, value in zip(axes, point, strict=True):
            overrides.setdefault(axis.section, {})[axis.key] = value
        if resolved(overrides) == ref_settings:
            continue  # the reference variation itself
        name = "-".join([reference] + [f"{a.key}{grid_value(v)}" for a, v in zip(axes, point, strict=True)])
        if name in study.variations:
            raise InvalidValue(f"{path}: sweep variation {name!r} is also listed under variations; remove one")
        study.variations[name] = _merge(study.variations[reference], overrides)
        study.grid_cells[name] = {a.name: v for a, v in zip(axes, point, strict=True)}


def expand(study: Study, out_root: Path) -> list[RunSpec]:
    """One RunSpec per (variation, model, seed), each with fully built and checked settings."""
    runs, budgets = [], {}
    for variation, overrides in study.variations.items():
        for model_name in study.models:
            model = model_label(model_name)  # hf:<path> -> the folder's name
            for seed in (study.scaling or {}).get("seeds", {}).get(model_name, study.seeds):
                name = f"{variation}-{model}-s{seed}"
                tree = _merge(_merge(study.base, overrides),
                              {"model": {"name": model_name}, "train": {"seed": seed, "out": str(out_root / name)}})
                cell = {"variation": variation, "model": model, "seed": seed}
                tree = {sec: {k: v.format(**cell) if isinstance(v, str) else v for k, v in values.items()}
                        for sec, values in tree.items()}
                try:
                    settings = settings_from_dict(tree)
                    if study.scaling is not None:
                        key = (variation, model_name)
                        budgets[key] = budgets.get(key) or budget(settings, study.scaling, ranks=study.ranks)
                        settings = settings_from_dict(_merge(tree, budgets[key]))
                except (ValueError, TypeError) as err:
                    raise InvalidValue(f"study {study.name!r}, run {name}: {err}") from err
                runs.append(RunSpec(name, variation, model, seed, settings, out_root / name))
    return runs

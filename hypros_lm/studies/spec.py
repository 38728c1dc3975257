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
    target: {metric: loss_log, value: null}   # time-to-target (C2); null = the log-loss baseline's mean final value
    timing: {steps: 12}                       # optional: method and log-loss steps alternated in one process per
                                              #   model after the runs (timing/<model>.json): what C1 is judged on
    scaling:                                  # optional: budgets that grow with the model (a scaling-law study)
      tokens_per_parameter: 10                #   D = k·N tokens per run, N its model's total parameters
      warmup_fraction: 0.02                   #   each run's warm-up, a fraction of its own steps
      evaluations: 8                          #   validations per run (its learning curve; the compute frontier)
      lr: {reference: 20000, value: 1.0e-2, exponent: 0.3}   # optional: lr(N) = value·(N/reference)^−exponent
      fit_from: w16                           #   optional: the smallest size the laws are fitted from
    sweep:                                    # optional: a grid of variations around one variation
      variation: hypros                       #   the grid varies this one; its own settings are the reference cell
      grid: {loss.tau: [0.05, 0.15], loss.lam_max: [0.7, 1.0]}   # one or two settings (heat-maps need two)
      metric: ece_10                          #   the heat-maps' test metric: nll, brier, ece_10, accuracy or auc
    baselines: {method: hypros, log: log, bounded: brier}
    criteria:                                 # optional: how the criteria judge (studies/sections.py: Criteria)
      alpha: 0.05                             #   the level of Holm-adjusted p-values
      margins: {bleu: 1.0}                    #   "no worse" margins in each metric's units (defaults: DEFAULT_MARGINS)
      families: {calibration: [brier, ece_10]}   # Holm families (default: one per metric)

A sweep expands into named variations (``hypros-tau0.05-lam_max0.7``) that run, skip and resume like the
others; a grid point with the reference's own settings is the reference variation itself, not a copy.
String settings may name their cell: ``{variation}``, ``{model}`` and ``{seed}`` are filled per run (e.g. a
fine-tune study's ``task.init_from: runs/studies/exp1-core/{variation}-{model}-s{seed}``).
Every run's settings are built and checked when the file is loaded, before anything runs; so are the sections
(studies/sections.py): an unknown key or a bad value is named in one line. A study that compares a method with a
baseline needs at least three seeds at every size (a paired test of fewer has no interval worth printing), unless
it is a pilot (``criteria: {pilot: true}``: what needs three seeds is marked untested or not measured).
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
from hypros_lm.studies.sections import Baselines, Criteria, Scaling, Sweep, Target, Timing, section
from hypros_lm.studies.stats import MIN_PAIRS
from hypros_lm.tasks import family_for

STUDY_KEYS = {"name", "description", "task", "ranks", "base", "variations", "models", "seeds", "evaluations",
              "robustness", "eval_batches", "target", "baselines", "sweep", "timing", "scaling", "criteria"}
SECTIONS = {"target": Target, "baselines": Baselines, "sweep": Sweep, "timing": Timing, "scaling": Scaling,
            "criteria": Criteria}


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
    target: Target = field(default_factory=Target)
    baselines: Baselines = field(default_factory=Baselines)
    sweep: Sweep | None = None
    timing: Timing | None = None
    """After the runs, an interleaved step timing per model (training/timing.py) for C1."""
    scaling: Scaling | None = None
    """Budgets that grow with the model (see the module docstring): each run's max_steps from D = k·N, its warm-up,
    validations and (by a stated rule) learning rate; ``seeds`` may map a model to its own seeds."""
    criteria: Criteria = field(default_factory=Criteria)
    grid_cells: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Filled from ``sweep``: variation name → its grid values (the reference variation included)."""

    @property
    def compares_method(self) -> bool:
        """Whether the study compares a method with log-loss (a learning-rate sweep names one variation for all)."""
        return self.baselines.method != self.baselines.log


@dataclass(frozen=True)
class GridAxis:
    section: str
    key: str
    values: tuple[Any, ...]

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"


def grid_axes(study: Study) -> list[GridAxis]:
    grid = study.sweep.grid if study.sweep else {}
    return [GridAxis(*name.split(".", 1), tuple(values)) for name, values in grid.items()]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for name, values in (over or {}).items():
        out.setdefault(name, {}).update(values)
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
    sections = {key: section(cls, raw[key], f"{path}: {key}") for key, cls in SECTIONS.items()
                if raw.get(key) is not None}
    study = Study(**{"task": "pretrain", **raw, **sections})
    if study.sweep is not None:
        _expand_sweep(study, path)
    if study.scaling is not None:
        _check_scaling(study, path)
    for name, spec in study.evaluations.items():
        _check_evaluation(path, name, spec)
    _check_seeds(study, path)
    missing = [r for r in study.robustness if r not in study.evaluations]
    if missing:
        raise InvalidValue(f"{path}: robustness names {missing}, which are not among evaluations {list(study.evaluations)}")
    for role, variation in vars(study.baselines).items():
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


def _check_sweep(sweep: Sweep, study: Study, path: Path) -> None:
    if sweep.variation not in study.variations:
        raise InvalidValue(f"{path}: sweep.variation={sweep.variation!r} is not a variation ({list(study.variations)})")
    grid = sweep.grid
    if not 1 <= len(grid) <= 2:
        raise InvalidValue(f"{path}: sweep.grid must map one or two settings (section.key) to lists of values; got {grid!r}")
    for name, values in grid.items():
        if name.count(".") != 1:
            raise InvalidValue(f"{path}: sweep.grid key {name!r} must be section.key, e.g. loss.tau")
        if not isinstance(values, list) or not values or len(set(map(repr, values))) != len(values):
            raise InvalidValue(f"{path}: sweep.grid.{name} must be a non-empty list of distinct values; got {values!r}")
    if len({n.split(".")[1] for n in grid}) != len(grid):
        raise InvalidValue(f"{path}: sweep.grid keys {list(grid)} share a name; variation names would collide")


def _check_scaling(study: Study, path: Path) -> None:
    sc = study.scaling
    unknown = set(sc.seeds) - set(study.models)
    if unknown:
        raise InvalidValue(f"{path}: scaling.seeds names {sorted(unknown)}, which are not among models {study.models}")
    strays = set(sc.objective_lr) - set(study.variations)
    if strays:
        raise InvalidValue(f"{path}: scaling.objective_lr names {sorted(strays)}, which are not variations "
                           f"({list(study.variations)})")
    if sc.fit_from is not None and sc.fit_from not in study.models:
        raise InvalidValue(f"{path}: scaling.fit_from={sc.fit_from!r} is not among models {study.models}; name the "
                           f"smallest model the laws are fitted from")


def _check_seeds(study: Study, path: Path) -> None:
    """A study that compares its method with a baseline tests them over paired seeds: fewer than three at a size
    give no test, so the file is refused before anything runs."""
    if not study.compares_method or study.criteria.pilot:
        return  # compares no method (e.g. a learning-rate sweep), or a pilot
    for model in study.models:
        seeds = study.scaling.seeds.get(model, study.seeds) if study.scaling else study.seeds
        if len(seeds) < MIN_PAIRS:
            key = f"scaling.seeds.{model}" if study.scaling and model in study.scaling.seeds else "seeds"
            raise InvalidValue(f"{path}: {key}={seeds!r}: the method is compared with its baselines over paired seeds, "
                               f"and a test needs at least {MIN_PAIRS}; give {MIN_PAIRS} or more (e.g. [1, 2, 3]), or "
                               f"criteria: {{pilot: true}} for a pilot whose tests are marked not measured")


def budget(settings: RunSettings, scaling: Scaling, *, ranks: int, variation: str) -> dict[str, Any]:
    """What a scaling study sets for one run from its model's size: max_steps for D = k·N tokens (N the total
    parameters), warm-up, validation and checkpoint steps, and the learning rate by the variation's rule."""
    total, _ = count_parameters(settings.model, settings.data.vocab_size)
    t = settings.train
    per_step = t.micro_batch_size * t.grad_accum * settings.data.seq_len * ranks
    steps = max(2, -(-int(scaling.tokens_per_parameter * total) // per_step))
    every = max(1, steps // scaling.evaluations)
    out: dict[str, Any] = {"train": {"max_steps": steps, "eval_every": every, "save_every": every},
                           "optim": {"warmup_steps": max(scaling.warmup_min_steps, round(scaling.warmup_fraction * steps))}}
    rule = scaling.rule(variation)
    if rule is not None:
        out["optim"]["lr"] = rule.at(total)
    return out


def grid_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _expand_sweep(study: Study, path: Path) -> None:
    """Add one variation per grid point; the point with the reference's own settings is the reference."""
    _check_sweep(study.sweep, study, path)
    reference = study.sweep.variation
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
            for seed in (study.scaling.seeds if study.scaling else {}).get(model_name, study.seeds):
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
                        budgets[key] = budgets.get(key) or budget(settings, study.scaling, ranks=study.ranks,
                                                                  variation=variation)
                        settings = settings_from_dict(_merge(tree, budgets[key]))
                except (ValueError, TypeError) as err:
                    raise InvalidValue(f"study {study.name!r}, run {name}: {err}") from err
                runs.append(RunSpec(name, variation, model, seed, settings, out_root / name))
    return runs

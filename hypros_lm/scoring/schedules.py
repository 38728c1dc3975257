"""λ schedules and the learning-rate schedule: pure functions of the global step.

λ weights the bounded score in ``L = (1 − λ)·log + λ·bounded``. Every schedule is a pure
function of the step, so a resumed run recomputes the same λ without any saved state.
The registry maps a name to a factory that binds the schedule's parameters and returns a
``step -> λ`` callable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

from hypros_lm.errors import InvalidValue

Schedule = Callable[[int], float]


def constant_lambda(step: int, *, lam: float) -> float:
    """λ = lam at every step (``log`` is 0, ``brier`` is 1, ``hypros-fixed`` is 0.5)."""
    return float(lam)


def sigmoid_lambda(step: int, *, t0: float, tau: float, lam_max: float = 1.0) -> float:
    """The HyProS schedule: λ = lam_max · sigmoid((t − T0)/τ).

    Exact formula, not shifted to start at 0: with T0 = 0.3·T, τ = 0.1·T, λ(0) = sigmoid(−3) ≈ 0.047.
    """
    x = (step - t0) / tau
    # numerically stable sigmoid for large |x|
    if x >= 0:
        return lam_max / (1.0 + math.exp(-x))
    e = math.exp(x)
    return lam_max * e / (1.0 + e)


def linear_lambda(step: int, *, start: float, end: float, lam0: float = 0.0, lam1: float = 1.0) -> float:
    """λ goes linearly from lam0 (at and before `start`) to lam1 (at and after `end`)."""
    if step <= start:
        return float(lam0)
    if step >= end:
        return float(lam1)
    return lam0 + (lam1 - lam0) * (step - start) / (end - start)


def noanneal_lambda(step: int, *, peak: float, total: float, lam_max: float = 1.0) -> float:
    """λ rises linearly from 0 at step 0 to lam_max at `peak`, then returns linearly to 0 at `total`."""
    if step <= 0 or step >= total:
        return 0.0
    if step <= peak:
        return lam_max * step / peak
    return lam_max * (total - step) / (total - peak)


def step_lambda(step: int, *, switch: float, lam_max: float = 1.0) -> float:
    """The two-phase recipe: 0 before the switch step, lam_max from it on."""
    return float(lam_max) if step >= switch else 0.0


SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant_lambda,
    "sigmoid": sigmoid_lambda,
    "linear": linear_lambda,
    "noanneal": noanneal_lambda,
    "step": step_lambda,
}


def make_schedule(name: str, **params: float) -> Schedule:
    """Bind a registered schedule's parameters; unknown names raise with the list of known ones."""
    if name not in SCHEDULES:
        raise InvalidValue(f"unknown λ schedule {name!r}; known: {sorted(SCHEDULES)}")
    return partial(SCHEDULES[name], **params)


def learning_rate(step: int, *, peak: float, warmup_steps: int, decay: str, min_ratio: float, total_steps: int) -> float:
    """The learning rate at a step: linear warm-up to ``peak``, then cosine to ``min_ratio``·peak at
    ``total_steps``, inverse square root, or constant. A pure function of the step, like λ."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if decay == "constant":
        return peak
    if decay == "inverse_sqrt":
        return peak * math.sqrt(max(1, warmup_steps) / (step + 1))
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    floor = min_ratio * peak
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(1.0, progress)))

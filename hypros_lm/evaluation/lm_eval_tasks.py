"""lm-eval's own tasks, extended where lm-eval expects it: a task class named in a task YAML (``class:``).

Imported only by the task files hypros-lm generates (see [`hypros_lm.evaluation.zeroshot`][hypros_lm.evaluation.zeroshot]), so
importing hypros-lm does not import lm-eval.
"""

from __future__ import annotations

import math

from lm_eval.api.task import ConfigurableTask

from hypros_lm.metrics import multiple_choice_brier


class ChoiceBrierTask(ConfigurableTask):
    """A built-in task, unchanged, whose ``brier_score`` is the Brier score of each document over its
    own choices (lm-eval's per-choice log-likelihoods normalised over them), a float per document that the
    task file aggregates by ``mean`` (so lm-eval reports its standard error as for acc). lm-eval's own
    ``brier_score`` aggregation stacks every document's probabilities into one array, which fails when
    documents have different numbers of choices (ARC: 3 to 5)."""

    def __init__(self, config: dict | None = None, **kwargs):
        super().__init__(config={k: v for k, v in (config or {}).items() if k != "class"}, **kwargs)

    def process_results(self, doc, results):
        out = super().process_results(doc, results)
        if "brier_score" in out:
            gold, probabilities = out["brier_score"]  # lm-eval's softmax over this document's choices
            out["brier_score"] = multiple_choice_brier(gold, probabilities) if isinstance(gold, int) and gold >= 0 \
                else math.nan  # several gold answers, or a label outside the choices (lm-eval warns)
        return out

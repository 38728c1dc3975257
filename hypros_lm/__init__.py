"""hypros-lm: training and evaluating language models with proper scoring rules (HyProS).

The loss API needs torch alone::

    from hypros_lm import LambdaSchedule, LinearScoringLoss, linear_scoring_loss

Hugging Face models: ``hypros_lm.integrations.transformers`` (``patch_causal_lm``, ``HyProSCallback``).
The training stack (DeepSpeed, evaluation, studies) needs the ``[train]`` extra (``pip install './hypros-lm[train]'``
from a checkout: the package is not on the public index).

The names are imported when first used (PEP 562), so that processes which import only a part of the
package (the corpus preparer's tokenizer workers) do not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "SCORES": "hypros_lm.scoring.api",
    "LambdaSchedule": "hypros_lm.scoring.api",
    "LinearScoringLoss": "hypros_lm.scoring.api",
    "linear_scoring_loss": "hypros_lm.scoring.api",
    "ScoreOutput": "hypros_lm.scoring.fused",
    "fused_linear_score": "hypros_lm.scoring.fused",
    "token_scores": "hypros_lm.scoring.fused",
    "Score": "hypros_lm.scoring.scores",
    "bounded_score": "hypros_lm.scoring.scores",
}
__all__ = [
    "SCORES", "LambdaSchedule", "LinearScoringLoss", "Score", "ScoreOutput", "__version__", "bounded_score",
    "fused_linear_score", "linear_scoring_loss", "token_scores",
]

if TYPE_CHECKING:
    from hypros_lm.scoring.api import SCORES, LambdaSchedule, LinearScoringLoss, linear_scoring_loss
    from hypros_lm.scoring.fused import ScoreOutput, fused_linear_score, token_scores
    from hypros_lm.scoring.scores import Score, bounded_score


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hypros_lm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

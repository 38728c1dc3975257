"""hypros-lm: training and evaluating language models with proper scoring rules (HyProS).

The loss API needs torch alone::

    from hypros_lm import LambdaSchedule, LinearScoringLoss, linear_scoring_loss

Hugging Face models: ``hypros_lm.integrations.transformers`` (``patch_causal_lm``, ``HyProSCallback``).
The training stack (DeepSpeed, evaluation, studies) needs ``pip install 'hypros-lm[train]'``.
"""

from hypros_lm.scoring.api import SCORES, LambdaSchedule, LinearScoringLoss, linear_scoring_loss
from hypros_lm.scoring.fused import ScoreOutput, fused_linear_score, token_scores

__version__ = "0.1.0"

__all__ = [
    "SCORES", "LambdaSchedule", "LinearScoringLoss", "ScoreOutput", "__version__", "fused_linear_score",
    "linear_scoring_loss", "token_scores",
]

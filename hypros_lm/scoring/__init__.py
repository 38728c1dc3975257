"""Proper scoring rules for language models: pure tensor math, no model or training code."""

from hypros_lm.scoring.fused import ScoreOutput, ScoringOptions, default_chunk_size, fused_linear_score, token_scores
from hypros_lm.scoring.losses import LOSSES, LossSettings, Objective, build_objective
from hypros_lm.scoring.reference import naive_linear_score, naive_token_scores
from hypros_lm.scoring.schedules import SCHEDULES, make_schedule

__all__ = [
    "LOSSES", "SCHEDULES", "LossSettings", "Objective", "ScoreOutput", "ScoringOptions", "build_objective",
    "default_chunk_size", "fused_linear_score", "token_scores", "make_schedule", "naive_linear_score", "naive_token_scores",
]

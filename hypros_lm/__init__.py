"""hypros-lm: training and evaluating language models with proper scoring rules (HyProS)."""

__version__ = "0.1.0"

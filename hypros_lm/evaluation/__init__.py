"""Evaluation: language-model metrics over token blocks, loading run checkpoints, Hugging Face export."""

"""Training: DeepSpeed engine set-up, the loop and its telemetry (settings: hypros_lm.config; run folders and
checkpoints: hypros_lm.runs)."""

from hypros_lm.training.loop import check_run, train

__all__ = ["check_run", "train"]

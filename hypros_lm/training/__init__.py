"""Training: settings, DeepSpeed engine set-up, the loop, checkpoints and telemetry."""

from hypros_lm.training.loop import check_run, train
from hypros_lm.training.settings import RunSettings, known_keys, load_settings, settings_from_dict

__all__ = ["RunSettings", "check_run", "known_keys", "load_settings", "settings_from_dict", "train"]

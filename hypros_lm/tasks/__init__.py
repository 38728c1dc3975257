"""Task families as registered components (see registry.py): pretraining, sequence-to-sequence, classification."""

from hypros_lm.tasks.registry import FAMILIES, TaskFamily, family_for, register_family, require_family
from hypros_lm.tasks.settings import TaskSettings

__all__ = ["FAMILIES", "TaskFamily", "TaskSettings", "family_for", "register_family", "require_family"]

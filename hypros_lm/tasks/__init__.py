"""Task families (see registry.py): pretraining, sequence-to-sequence, classification, one module each.

Importing this package fills ``FAMILIES``, the plain dict from family name to family, with the built-in ones.
"""

from hypros_lm.tasks.classification import ClassificationFamily
from hypros_lm.tasks.pretrain import PretrainFamily
from hypros_lm.tasks.registry import FAMILIES, TaskFamily, family_for, register_family, require_family
from hypros_lm.tasks.seq2seq import Seq2SeqFamily

for _family in (PretrainFamily(), Seq2SeqFamily(), ClassificationFamily()):
    register_family(_family)

__all__ = ["FAMILIES", "ClassificationFamily", "PretrainFamily", "Seq2SeqFamily", "TaskFamily", "family_for",
           "register_family", "require_family"]

"""Shared test set-up: offline, seeded, and one trained nano run shared by the tests that need it."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One tokenizer/token cache for the whole session (the first run trains and packs, the rest reuse)."""
    path = tmp_path_factory.mktemp("hypros_cache")
    os.environ["HYPROS_CACHE_DIR"] = str(path)
    return path

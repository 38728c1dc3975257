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


@pytest.fixture(scope="session")
def stage_runs(tmp_path_factory, cache_dir):
    """The same 4-step HyProS run under ZeRO-0, ZeRO-2 and ZeRO-3, 2 ranks each, on real WikiText-2."""
    from tests.helpers import TINY_RUN, run_deepspeed

    runs = {}
    for stage in ("zero0", "zero2", "zero3"):
        out = tmp_path_factory.mktemp(stage)
        run_deepspeed([*TINY_RUN, "--loss", "hypros", "--max-steps", "4", "--ds-config", stage, "--out", str(out)],
                      cache_dir)
        runs[stage] = out
    return runs


def pytest_collection_modifyitems(config, items):
    """Tests marked requires_gpu are skipped where CUDA is absent (CI and these machines)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "requires_gpu" in item.keywords:
            item.add_marker(skip)

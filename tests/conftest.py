"""Shared test set-up: offline, seeded, and one trained nano run shared by the tests that need it."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

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


def _shared(tmp_path_factory, name: str) -> Path:
    """A folder every pytest-xdist worker of this session sees (the session's own folder without xdist)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' folders share this parent
    return root / name


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One tokenizer/token cache for the whole session, shared by the xdist workers (the first run trains and
    packs, the rest reuse; preparation is node-safe, so two workers preparing at once is one preparing)."""
    path = _shared(tmp_path_factory, "hypros_cache")
    path.mkdir(parents=True, exist_ok=True)
    os.environ["HYPROS_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def stage_runs(tmp_path_factory, cache_dir):
    """The same 4-step HyProS run under ZeRO-0, ZeRO-2 and ZeRO-3, 2 ranks each, on real WikiText-2: trained
    once per session, by whichever xdist worker asks first. Beside each, a record of what its launch left in
    /dev/shm (``helpers.shared_memory_record``, read by ``helpers.leftover_shared_memory``)."""
    from filelock import FileLock

    from tests.helpers import STAGE_RUN, free_port, release_shared_memory, run_deepspeed, shared_memory_buffers, shared_memory_record

    root = _shared(tmp_path_factory, "stage_runs")
    runs = {stage: root / stage for stage in ("zero0", "zero2", "zero3")}
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / ".lock"):
        for stage, out in runs.items():
            record = shared_memory_record(out)
            if not record.is_file():
                port = free_port()
                run_deepspeed([*STAGE_RUN, "--ds-config", stage, "--out", str(out)], cache_dir, port=port, release=False)
                left = [p.name for p in shared_memory_buffers(port)]
                release_shared_memory(port)
                record.write_text(json.dumps(left))
    return runs


FILE_SECONDS = Path(__file__).with_name("file_seconds.json")
"""Each test file's seconds in a recent full run (scripts/test_durations.py writes it)."""


def pytest_collection_modifyitems(config, items):
    """The costliest test files first (stable within a file), so that the workers, handed whole files in this order
    (scripts/test.sh: --dist loadfile --no-loadscope-reorder), do not end on one long file while the other idles;
    tests marked requires_gpu are skipped where CUDA is absent (CI and these machines)."""
    seconds = json.loads(FILE_SECONDS.read_text()) if FILE_SECONDS.is_file() else {}
    items.sort(key=lambda item: -seconds.get(item.nodeid.split("::", 1)[0], 0.0))
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "requires_gpu" in item.keywords:
            item.add_marker(skip)

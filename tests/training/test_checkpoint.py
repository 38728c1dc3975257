"""Checkpoints are atomic: a save that dies mid-write never looks complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch.distributed as dist

from hypros_lm.runs import LATEST, META, RunFolder, save_checkpoint
from tests.helpers import free_port


class _Engine:
    """Stands in for a DeepSpeed engine: writes one shard file, optionally dies half-way."""

    def __init__(self, crash: bool = False):
        self.crash = crash

    def save_checkpoint(self, save_dir, tag, client_state, save_latest):
        folder = Path(save_dir) / tag
        folder.mkdir(parents=True)
        (folder / "mp_rank_00_model_states.pt").write_bytes(b"shard")
        if self.crash:
            raise RuntimeError("killed mid-write")


@pytest.fixture(scope="module", autouse=True)
def _process_group():
    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    yield


def _partial(folder: Path) -> Path:
    return folder.with_name(f"{folder.name}.partial")


def test_save_writes_meta_latest_and_prunes(tmp_path):
    run = RunFolder(tmp_path)
    for step in (2, 4, 6):
        save_checkpoint(_Engine(), run.checkpoints, step, {"elapsed_s": 1.0}, keep=2)
    assert (run.checkpoints / LATEST).read_text() == run.checkpoint(6).name
    assert sorted(p for p in run.checkpoints.iterdir() if p.is_dir()) == [run.checkpoint(4), run.checkpoint(6)]
    assert json.loads((run.checkpoint(6) / META).read_text())["step"] == 6
    assert run.latest() == run.checkpoint(6) and run.has_checkpoint(6) and not run.has_checkpoint(2)


def test_crash_mid_write_keeps_previous_checkpoint(tmp_path):
    run = RunFolder(tmp_path)
    save_checkpoint(_Engine(), run.checkpoints, 2, {}, keep=3)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        save_checkpoint(_Engine(crash=True), run.checkpoints, 4, {}, keep=3)
    assert _partial(run.checkpoint(4)).is_dir()  # the debris of the crash
    assert not run.checkpoint(4).exists()
    assert run.latest() == run.checkpoint(2)
    save_checkpoint(_Engine(), run.checkpoints, 4, {}, keep=3)  # the next save clears the debris
    assert not _partial(run.checkpoint(4)).exists()
    assert run.latest() == run.checkpoint(4)


def test_latest_pointing_at_incomplete_folder_is_an_error(tmp_path):
    run = RunFolder(tmp_path)
    run.checkpoint(2).mkdir(parents=True)
    (run.checkpoints / LATEST).write_text(run.checkpoint(2).name)
    with pytest.raises(FileNotFoundError, match="missing or incomplete"):
        run.latest()
    assert RunFolder(tmp_path / "nothing").latest() is None

"""Checkpoints are atomic: a save that dies mid-write never looks complete."""

from __future__ import annotations

import json

import pytest
import torch.distributed as dist

from hypros_lm.runs import latest_checkpoint, save_checkpoint
from tests.helpers import free_port


class _Engine:
    """Stands in for a DeepSpeed engine: writes one shard file, optionally dies half-way."""

    def __init__(self, crash: bool = False):
        self.crash = crash

    def save_checkpoint(self, save_dir, tag, client_state, save_latest):
        from pathlib import Path

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


def test_save_writes_meta_latest_and_prunes(tmp_path):
    for step in (2, 4, 6):
        save_checkpoint(_Engine(), tmp_path, step, {"elapsed_s": 1.0}, keep=2)
    assert (tmp_path / "latest").read_text() == "step_0000006"
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_0000004", "step_0000006"]
    assert json.loads((tmp_path / "step_0000006" / "meta.json").read_text())["step"] == 6
    assert latest_checkpoint(tmp_path) == tmp_path / "step_0000006"


def test_crash_mid_write_keeps_previous_checkpoint(tmp_path):
    save_checkpoint(_Engine(), tmp_path, 2, {}, keep=3)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        save_checkpoint(_Engine(crash=True), tmp_path, 4, {}, keep=3)
    assert (tmp_path / "step_0000004.partial").is_dir()  # the debris of the crash
    assert not (tmp_path / "step_0000004").exists()
    assert latest_checkpoint(tmp_path) == tmp_path / "step_0000002"
    save_checkpoint(_Engine(), tmp_path, 4, {}, keep=3)  # the next save clears the debris
    assert not (tmp_path / "step_0000004.partial").exists()
    assert latest_checkpoint(tmp_path) == tmp_path / "step_0000004"


def test_latest_pointing_at_incomplete_folder_is_an_error(tmp_path):
    (tmp_path / "step_0000002").mkdir()
    (tmp_path / "latest").write_text("step_0000002")
    with pytest.raises(FileNotFoundError, match="missing or incomplete"):
        latest_checkpoint(tmp_path)
    assert latest_checkpoint(tmp_path / "nothing") is None

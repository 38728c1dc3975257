"""A run folder is loaded without unpickling code: an RNG or weight file holding a pickled callable is refused
with a clear error, and the callable never runs (resume, evaluation, --init-from alike)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from hypros_lm.files import file_checksum
from hypros_lm.runs import META, RunFolder, load_run, safe_load
from tests.helpers import TINY_RUN, run_python


class _Payload:
    """Unpickling this calls os.system: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("safe") / "run"
    run_python([*TINY_RUN, "--max-steps", "1", "--train.eval_every", "0", "--ds-config", "zero2", "--out", str(out)],
               cache_dir)
    return out


def _checkpoint(run_dir):
    return RunFolder(run_dir).latest()


def _record_checksum(path):
    meta = path.parent / META
    recorded = json.loads(meta.read_text())
    recorded["checksums"][path.name] = file_checksum(path)
    meta.write_text(json.dumps(recorded))


def test_the_saved_rng_state_loads_as_plain_data(run_dir):
    state = safe_load(_checkpoint(run_dir) / "rng_rank000.pt")
    assert isinstance(state["python"]["internal"], torch.Tensor) and state["python"]["internal"].numel() == 625
    assert state["numpy"]["name"] == "MT19937" and state["numpy"]["keys"].numel() == 624


@pytest.mark.parametrize("victim", ["rng_rank000.pt", "mp_rank_00_model_states.pt"])
def test_a_pickled_callable_is_refused_and_never_runs(run_dir, tmp_path, cache_dir, victim):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    marker = tmp_path / "pwned"
    target = _checkpoint(copy) / victim
    original = torch.load(target, weights_only=False)  # our own file: trusted here
    original["evil"] = _Payload(marker)
    torch.save(original, target)
    _record_checksum(target)  # a checksum shows damage, not intent: whoever alters a file can record its sum too
    with pytest.raises(ValueError, match=r"holds pickled objects other than tensors and plain values \(.*posix.system"):
        load_run(copy)
    proc = run_python([*TINY_RUN, "--max-steps", "2", "--train.eval_every", "0", "--ds-config", "zero2", "--resume",
                       "--out", str(copy)], cache_dir, check=False)
    assert proc.returncode != 0 and "refusing to load it" in proc.stderr, proc.stderr[-2000:]
    assert not marker.exists(), "the pickled callable ran"

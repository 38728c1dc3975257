"""Runs that meet faults: a run that diverges stops at that step with one line and writes no checkpoint of its broken
weights; a checkpoint damaged after it was written is named (file, recorded and actual checksum), resume falls back
to the newest intact one and continues exactly, and with none intact it stops; a checkpoint saved before checksums
still loads, with a note."""

from __future__ import annotations

import json
import shutil

import pytest

from hypros_lm.runs import LATEST, META, RunFolder, export_hf, load_run
from tests.helpers import STAGE_RUN, read_metrics, run_python

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory, cache_dir):
    """The stage run's 4 HyProS steps in one process, with checkpoints at steps 2 and 4."""
    out = tmp_path_factory.mktemp("faults") / "run"
    run_python([*STAGE_RUN, "--ds-config", "zero2", "--train.save_every", "2", "--out", str(out)], cache_dir)
    run = RunFolder(out)
    assert run.complete() == [run.checkpoint(4), run.checkpoint(2)]
    return out


def _copy(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return RunFolder(tmp_path / "run")


def _damage(checkpoint, *, name="mp_rank_00_model_states.pt"):
    """Cut the file to half its length, as a partial copy or a full disk leaves it."""
    path = checkpoint / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _resume(run, cache_dir, *extra):
    return run_python([*STAGE_RUN, "--ds-config", "zero2", "--train.save_every", "2", "--resume", "--out",
                       str(run.path), *extra], cache_dir, check=False)


def test_every_file_of_a_checkpoint_has_its_checksum(two_checkpoints):
    checkpoint = RunFolder(two_checkpoints).latest()
    recorded = json.loads((checkpoint / META).read_text())["checksums"]
    assert set(recorded) == {p.name for p in checkpoint.iterdir() if p.name != META}
    assert all(value.startswith("xxh3_128:") for value in recorded.values())


def test_a_diverged_run_stops_at_that_step_and_keeps_the_last_good_checkpoint(two_checkpoints, tmp_path, cache_dir):
    run = _copy(two_checkpoints, tmp_path)
    proc = _resume(run, cache_dir, "--max-steps", "8", "--optim.lr", "1e30", "--optim.grad_clip", "0")
    assert proc.returncode == 2, proc.stderr[-2000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith("hypros-lm error")]
    assert len(error) == 1 and "training diverged at step 5: " in error[0] and "parameter norm inf" in error[0], error
    assert "Lower --optim.lr" in error[0] and "Traceback" not in proc.stderr
    assert (run.checkpoints / LATEST).read_text() == run.checkpoint(4).name and run.latest() == run.checkpoint(4)
    assert not run.checkpoint(6).exists() and not run.checkpoint(5).exists()
    assert [r["step"] for r in read_metrics(run.path)] == [1, 2, 3, 4]  # nothing logged from the broken step


def test_resume_skips_a_damaged_checkpoint_and_continues_exactly_from_the_one_before(two_checkpoints, tmp_path, cache_dir):
    run = _copy(two_checkpoints, tmp_path)
    _damage(run.checkpoint(4))
    proc = _resume(run, cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    skipped, used = run.checkpoint(4).name, run.checkpoint(2).name
    assert (f"warning: skipping checkpoint {skipped}, resuming from {used}: checkpoint" in proc.stdout
            and "mp_rank_00_model_states.pt has checksum xxh3_128:" in proc.stdout), proc.stdout[-3000:]
    full = read_metrics(two_checkpoints)
    resumed = [r for r in read_metrics(run.path) if r["step"] in (3, 4)][-2:]  # the steps trained again
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full[2:]]
    assert load_run(run.path).checkpoint == run.checkpoint(4)  # saved again, intact


def test_with_no_intact_checkpoint_resume_stops_naming_the_file(two_checkpoints, tmp_path, cache_dir):
    run = _copy(two_checkpoints, tmp_path)
    _damage(run.checkpoint(4))
    meta = json.loads((run.checkpoint(2) / META).read_text())
    meta["checksums"]["rng_rank000.pt"] = "xxh3_128:" + "0" * 32  # or a file altered in place
    (run.checkpoint(2) / META).write_text(json.dumps(meta))
    proc = _resume(run, cache_dir)
    assert proc.returncode == 2 and "no intact checkpoint to resume from" in proc.stderr, proc.stderr[-2000:]
    assert f"{run.checkpoint(2).name} is damaged: rng_rank000.pt has checksum xxh3_128:" in proc.stderr
    assert "Traceback" not in proc.stderr and max(r["step"] for r in read_metrics(run.path)) == 4


def test_load_run_and_export_refuse_a_damaged_checkpoint_naming_both_sums(two_checkpoints, tmp_path):
    run = _copy(two_checkpoints, tmp_path)
    recorded = json.loads((run.checkpoint(4) / META).read_text())["checksums"]["mp_rank_00_model_states.pt"]
    _damage(run.checkpoint(4))
    with pytest.raises(OSError, match=rf"mp_rank_00_model_states.pt has checksum xxh3_128:[0-9a-f]{{32}}, {META} "
                                      rf"recorded {recorded}"):
        load_run(run.path)
    with pytest.raises(OSError, match="is damaged"):
        export_hf(run.path, tmp_path / "hf")
    assert load_run(run.path, step=2).checkpoint == run.checkpoint(2)  # the intact one still loads


def test_a_checkpoint_saved_before_checksums_loads_with_a_note(two_checkpoints, tmp_path):
    run = _copy(two_checkpoints, tmp_path)
    meta = json.loads((run.checkpoint(4) / META).read_text())
    del meta["checksums"]
    (run.checkpoint(4) / META).write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="records no checksums"):
        loaded = load_run(run.path)
    assert loaded.checkpoint == run.checkpoint(4)

"""Two nodes simulated on this machine: two deepspeed launchers (--no_ssh --node_rank 0/1, one rank each)
sharing a cold cache and the run folder, as cluster nodes share a home directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hypros_lm.runs import RunFolder
from tests import helpers
from tests.helpers import PRETRAIN, REPO, STAGE_RUN, TINY_RUN, free_port, read_metrics

pytestmark = pytest.mark.slow

PREPARE = REPO / "launch" / "prepare_data.py"


def start_two_nodes(args: list[str], cache_dir: Path, tmp_path: Path, *,
                    script: Path = PRETRAIN) -> tuple[list[subprocess.Popen], list[Path]]:
    """Both launchers, started at once; their outputs go to the returned log files."""
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node-a slots=1\nnode-b slots=1\n")
    port = free_port()
    deepspeed = Path(sys.executable).parent / "deepspeed"
    procs, logs = [], []
    for node in (0, 1):
        cmd = [str(deepspeed), "--hostfile", str(hostfile), "--no_ssh", "--node_rank", str(node), "--master_addr",
               "127.0.0.1", "--master_port", str(port), str(script), *args]
        logs.append(tmp_path / f"node{node}-{port}.log")
        with open(logs[-1], "w") as log:
            procs.append(subprocess.Popen(cmd, cwd=REPO, env=helpers.test_env(cache_dir), stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
    return procs, logs


def finish(procs: list[subprocess.Popen], timeout: float = 300) -> None:
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    helpers.release_shared_memory(int(procs[0].args[procs[0].args.index("--master_port") + 1]))


def two_node_run(args: list[str], cache_dir: Path, tmp_path: Path, *, script: Path = PRETRAIN) -> list[str]:
    procs, logs = start_two_nodes(args, cache_dir, tmp_path, script=script)
    finish(procs)
    texts = [p.read_text() for p in logs]
    for p, text in zip(procs, texts, strict=True):
        assert p.returncode == 0, text[-4000:]
    return texts


def test_cold_cache_two_nodes_equal_one_node_with_two_ranks(stage_runs, tmp_path, tmp_path_factory):
    cold = tmp_path_factory.mktemp("cold-cache")  # neither node finds anything prepared
    run = [*STAGE_RUN, "--ds-config", "zero3"]
    out = tmp_path / "two"
    two_node_run([*run, "--out", str(out)], cold, tmp_path)
    one = read_metrics(stage_runs["zero3"])  # the same run on one node with two ranks
    assert [r["loss"] for r in read_metrics(out)] == pytest.approx([r["loss"] for r in one], rel=1e-5)
    prepared = list((cold / "prepared").iterdir())
    assert len([p for p in prepared if p.is_dir()]) == 1 and not list((cold / "prepared").glob(".*.lock"))

    # stopped at step 2 and started again: the same losses as the uninterrupted two-node run
    cut = tmp_path / "cut"
    two_node_run([*run, "--train.stop_at", "2", "--out", str(cut)], cold, tmp_path)
    two_node_run([*run, "--resume", "--out", str(cut)], cold, tmp_path)
    assert [r["loss"] for r in read_metrics(cut)] == pytest.approx([r["loss"] for r in read_metrics(out)], rel=1e-6)


def test_prepare_data_on_two_nodes_equals_one_process(tmp_path, cache_dir):
    import gzip

    folder = tmp_path / "reviews"
    folder.mkdir()
    with gzip.open(REPO.parent / "shared" / "data" / "imdb" / "test.jsonl.gz", "rt") as f:
        lines = [line for _, line in zip(range(1200), f, strict=False)]
    (folder / "train.jsonl").write_text("".join(lines))
    args = ["--data", str(folder), "--data.vocab_size", "600", "--data.docs_per_shard", "200", "--no-progress"]
    two_node_run([*args, "--out", str(tmp_path / "two")], cache_dir, tmp_path, script=PREPARE)
    subprocess.run([sys.executable, str(PREPARE), *args, "--out", str(tmp_path / "one")], cwd=REPO,
                   env=helpers.test_env(cache_dir), check=True, capture_output=True)
    two, one = (json.loads((tmp_path / n / "manifest.json").read_text()) for n in ("two", "one"))
    for split in ("train", "validation"):
        assert [r["sha256"] for r in two["splits"][split]["shards"]] == [r["sha256"] for r in one["splits"][split]["shards"]]
    assert len(two["splits"]["train"]["shards"]) >= 5  # both ranks wrote shards


def test_a_lost_node_is_named_within_a_minute(tmp_path, cache_dir):
    out = tmp_path / "run"
    procs, logs = start_two_nodes([*TINY_RUN, "--ds-config", "zero2", "--max-steps", "100000", "--train.eval_every", "0",
                             "--train.save_every", "0", "--out", str(out)], cache_dir, tmp_path)
    try:
        deadline = time.time() + 240
        while not RunFolder(out).metrics_file.is_file() or len(read_metrics(out)) < 3:
            assert time.time() < deadline and all(p.poll() is None for p in procs), "training did not start"
            time.sleep(1)
        victim = json.loads((out / ".heartbeat" / "rank1.json").read_text())
        os.kill(victim["pid"], signal.SIGKILL)  # node 1's training process dies
        killed = time.time()
        procs[0].wait(timeout=90)
        waited = time.time() - killed
    finally:
        finish(procs, timeout=5)
    log = logs[0].read_text()
    assert waited < 60, f"node 0 took {waited:.0f}s to stop"
    assert procs[0].returncode != 0
    assert "lost rank 1" in log and f"pid {victim['pid']}" in log, log[-3000:]

"""Helpers for tests that start real training processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRETRAIN = REPO / "launch" / "pretrain.py"
TINY_VOCAB = 2048  # the tiny runs' BPE


def tiny_run(model: str = "nano") -> list[str]:
    """The arguments of a few-step run of ``model`` on real WikiText-2 (4 × 64 tokens a micro-batch, a BPE of
    TINY_VOCAB tokens, validation at step 3 on 2 micro-batches); tests add --out and what they vary."""
    return ["--model", model, "--data", "wikitext-2-v1", "--seq-len", "64", "--micro-batch-size", "4",
            "--data.vocab_size", str(TINY_VOCAB), "--train.log_every", "1", "--train.eval_every", "3", "--train.eval_batches", "2",
            "--train.component_grad_every", "2", "--optim.warmup_steps", "2"]


TINY_RUN = tiny_run()
# The session's stage runs (conftest.stage_runs): 4 HyProS steps; a test comparing against them adds only
# --ds-config, --out and how it cuts or spreads the same run.
STAGE_RUN = [*TINY_RUN, "--loss", "hypros", "--max-steps", "4"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_env(cache_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled",
               HYPROS_CACHE_DIR=str(cache_dir), TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    return env


def run_deepspeed(args: list[str], cache_dir: Path, *, ranks: int = 2, script: Path = PRETRAIN,
                  timeout: int = 300, env: dict[str, str] | None = None, port: int | None = None,
                  release: bool = True) -> subprocess.CompletedProcess:
    """Run a script under the real deepspeed launcher with `ranks` CPU ranks on a free port (``release``: remove
    what DeepSpeed left in /dev/shm for it afterwards)."""
    deepspeed = Path(sys.executable).parent / "deepspeed"
    port = port or free_port()
    cmd = [str(deepspeed), "--num_gpus", str(ranks), "--master_port", str(port), str(script), *args]
    full_env = {**test_env(cache_dir), **(env or {})}
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
    finally:
        if release:
            release_shared_memory(port)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def shared_memory_buffers(port: int) -> list[Path]:
    """What DeepSpeed's CPU all-reduce keeps in /dev/shm for a launch on this port."""
    return sorted(Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{port}_*"))


def release_shared_memory(port: int) -> None:
    """Remove what DeepSpeed's CPU all-reduce left in /dev/shm for a launch on this port: the project's
    loop removes its own, but a script that is not the loop (the Hugging Face example), or a killed rank,
    leaves 67 MB per rank behind."""
    for buffer in shared_memory_buffers(port):
        buffer.unlink(missing_ok=True)


def shared_memory_record(run: Path) -> Path:
    """Where the stage-run fixture writes what the launch of ``run`` left in /dev/shm, beside the run folder."""
    return run.parent / f"{run.name}.shm.json"


def leftover_shared_memory(run: Path) -> list[str]:
    """What the launch of a stage run left in /dev/shm, before the tests' own clean-up."""
    return json.loads(shared_memory_record(run).read_text())


def run_python(args: list[str], cache_dir: Path, *, script: Path = PRETRAIN, check: bool = True,
               timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a script as a plain single process (no launcher)."""
    env = test_env(cache_dir)
    env["MASTER_PORT"] = str(free_port())
    proc = subprocess.run([sys.executable, str(script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{script.name} {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def read_metrics(run_dir: Path, split: str = "train") -> list[dict]:
    """The records of one split of a run folder's metrics."""
    from hypros_lm.runs import RunFolder

    return RunFolder(run_dir).metrics(split)


def evaluation_metrics(folder: Path) -> dict:
    """What an evaluation wrote into ``folder`` (``eval/lm.py --out``, a run's ``eval-<name>``, a task's sets)."""
    from hypros_lm.runs import EVALUATION_FILE

    return json.loads((folder / EVALUATION_FILE).read_text())


def headless_chromium(download_dir: Path | None = None):
    """A Selenium driver of Debian's headless Chromium (scripts/test.sh installs chromium and chromium-driver as
    root); skipped where they are missing, except in CI, where set-up installs them."""
    import shutil

    import pytest

    binary, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (binary and driver):
        message = "Chromium or chromedriver is missing: run scripts/test.sh as root (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)  # set-up installs them; CI must not skip this test
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--disable-background-networking", "--disable-component-update", "--no-first-run"):
        options.add_argument(arg)
    if download_dir is not None:
        options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                                  "download.prompt_for_download": False})
    browser = webdriver.Chrome(service=Service(driver), options=options)
    if download_dir is not None:
        browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return browser


def wandb_history(run_dir: Path) -> dict[int, dict]:
    """{step: {key: value}} of what an offline wandb run logged, read back from its transaction log
    (``wandb/offline-run-*/run-*.wandb``: a LevelDB-style log of 32 KiB blocks holding protobuf ``Record``s, after a
    7-byte ``:W&B`` header); the values of one step merged as the wandb server merges them."""
    import struct

    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data, block, header = path.read_bytes(), 32768, 7
    assert data[:4] == b":W&B", f"{path} is not a wandb transaction log"
    records, pending, pos = [], b"", header
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a record header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:  # zero padding to the block's end
            pos += block - pos % block if pos % block else 0
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # FULL or LAST: a whole record
            records.append(pending)
            pending = b""
    history: dict[int, dict] = {}
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") != "history":
            continue
        step = record.history.step.num
        items = {(item.key or "/".join(item.nested_key)): json.loads(item.value_json) for item in record.history.item}
        history.setdefault(step, {}).update(items)
    return history

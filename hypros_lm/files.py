"""Files shared between processes: writing so that nothing half-written is ever read, checking a folder can be
written, waiting for a file another process writes, and the launcher's rank."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` aside (fsynced), then rename it over ``path``: readers see the old file or the new one,
    never a part (checkpoint markers, manifests, shard records, tokenizers that other ranks wait for)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def ensure_writable(folder: Path, setting: str) -> None:
    """Create ``folder`` and prove a file can be written there, or raise naming the setting to change.

    Several ranks may run this at once on a shared folder, so each writes its own uniquely named probe."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write_probe_"):
            pass
    except OSError as err:
        raise PermissionError(f"{setting}={folder} is not writable ({err.strerror}); choose another folder") from err


def launcher_rank() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment (deepspeed or torchrun); (0, 1) without one."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def wait_for(path: Path, what: str, *, log: Callable[[str], None] = print, timeout: float | None = None,
             poll: float = 0.5) -> None:
    """Wait until ``path`` exists (another process writes it atomically), saying so every minute."""
    start = last = time.time()
    while not path.exists():
        now = time.time()
        if timeout is not None and now - start > timeout:
            raise TimeoutError(f"waited {timeout:.0f}s for {what} ({path})")
        if now - last > 60:
            log(f"waiting for {what} ({path}, {now - start:.0f}s so far)")
            last = now
        time.sleep(poll)

"""Writing files so that nothing half-written is ever read, and checking a folder can be written."""

from __future__ import annotations

import os
import tempfile
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

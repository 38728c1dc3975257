"""Files shared between processes: writing so that nothing half-written is ever read, checksums that show a file
is still what was written, checking a folder can be written, waiting for a file another process writes, and the
launcher's rank."""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from hypros_lm.errors import InvalidValue, MissingPackage, NotWritable


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


CHECKSUM = "xxh3_128"
"""The checksum of checkpoint files: xxHash's XXH3 (128 bits) reads at memory speed, where SHA-256 would add about
half a save's time to each save (docs/benchmarks/checksums-cpu.txt). It finds truncation, partial copies and bit rot;
it is not meant to resist someone altering a file on purpose."""


def file_checksum(path: Path) -> str:
    """``"xxh3_128:<hex>"`` of a file's bytes, read through a memory map (no copy: twice as fast as read())."""
    try:
        import xxhash
    except ImportError as err:
        raise MissingPackage("checkpoint checksums need xxhash: pip install xxhash (or the project's [train] extra)") from err
    digest = xxhash.xxh3_128()
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
                digest.update(view)
    return f"{CHECKSUM}:{digest.hexdigest()}"


def read_yaml(path: Path) -> object:
    """A YAML file's contents, or one line naming the file, line and column where it is not valid YAML."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InvalidValue(f"{where}: not valid YAML ({problem}); fix the file there (an unclosed bracket or quote, a tab "
                           f"in the indentation, a missing ': ')") from None


def ensure_writable(folder: Path, setting: str) -> None:
    """Create ``folder`` and prove a file can be written there, or raise naming the setting to change.

    Several ranks may run this at once on a shared folder, so each writes its own uniquely named probe."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write_probe_"):
            pass
    except OSError as err:
        raise NotWritable(f"{setting}={folder} is not writable ({err.strerror}); choose another folder") from err


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


def run_once(done: Path, work: Callable[[], object], *, what: str, log: Callable[[str], None] = print,
             stale_after: float = 60.0, poll: float = 0.5) -> bool:
    """Make ``done`` exist by running ``work`` in exactly one process among all that call this with the same
    ``done`` (on any node sharing the folder); the others wait for it. Returns whether this process worked.

    The claim is a lock file created with O_EXCL beside ``done``'s folder, kept fresh while held. A claim left
    by a crashed process is broken once it is ``stale_after`` seconds old (at once when its process is known
    dead on this host), and the next claimant resumes the work, which must therefore be resumable.
    """
    lock = done.parent.parent / f".{done.parent.name}.lock"
    start = last = time.time()
    while not done.exists():
        if _claim(lock, stale_after):
            try:
                with _kept_fresh(lock, stale_after / 4):
                    if not done.exists():
                        work()
                        return True
            finally:
                lock.unlink(missing_ok=True)
            return False
        now = time.time()
        if now - last > 60:
            log(f"waiting for {what} (another process holds {lock}, {now - start:.0f}s so far)")
            last = now
        time.sleep(poll)
    return False


def _claim(lock: Path, stale_after: float) -> bool:
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        if _abandoned(lock, stale_after):
            with contextlib.suppress(FileNotFoundError):  # of several breakers, one renames; the rest retry
                os.replace(lock, lock.with_name(f"{lock.name}.broken{os.getpid()}"))
                lock.with_name(f"{lock.name}.broken{os.getpid()}").unlink()
        return False
    with os.fdopen(fd, "w") as f:
        json.dump({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}, f)
    return True


def _abandoned(lock: Path, stale_after: float) -> bool:
    """A claim whose holder stopped: not refreshed for ``stale_after`` s, or held by a dead process here."""
    try:
        age = time.time() - lock.stat().st_mtime
        holder = json.loads(lock.read_text() or "{}")
    except (FileNotFoundError, json.JSONDecodeError):
        return False  # gone, or being written right now
    if age > stale_after:
        return True
    if holder.get("host") == socket.gethostname() and holder.get("pid"):
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


@contextlib.contextmanager
def _kept_fresh(lock: Path, every: float):
    """Touch the lock every ``every`` seconds while the block runs (the holder is alive)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            with contextlib.suppress(FileNotFoundError):
                os.utime(lock)

    thread = threading.Thread(target=beat, daemon=True, name="lock-heartbeat")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def free_port() -> int:
    """A TCP port free on this host now (for a launcher's master port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

"""A lost rank is reported, not waited for.

When one node's process dies, the others would sit in their next collective until DeepSpeed's 10-minute
timeout (or fail later with a bare "broken pipe"). Each rank instead beats a file in the run folder
(``<out>/.heartbeat/rank<R>.json``, a counter rewritten every ``every`` seconds by a background thread) and
watches the others' files: a rank whose counter has not moved for ``lost_after`` seconds is named, and this
process stops. The counter, not the file's time, is compared (with this process's own clock), so clocks that
differ between nodes do not matter. It needs the run folder on a filesystem every node shares, as
checkpoints do; where a rank's file never appears, that rank is not judged (and DeepSpeed's timeout applies).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

LOST_EXIT_CODE = 75


class Watchdog:
    def __init__(self, folder: Path, *, rank: int, world: int, run_id: str, every: float = 3.0,
                 lost_after: float = 30.0, on_lost: Callable[[int, bool], None] | None = None):
        """``on_lost(rank, same_host)`` runs before this process stops: for this rank and the lost one
        (shared-memory buffers that a dead process cannot remove itself, say)."""
        self.folder, self.rank, self.world, self.run_id = folder, rank, world, run_id
        self.on_lost = on_lost
        self.every, self.lost_after = every, lost_after
        self._count = 0
        self._seen: dict[int, tuple[int, float]] = {}  # rank → (last counter, when it last moved, our clock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rank-watchdog")

    def start(self) -> Watchdog:
        if self.world > 1:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._beat()
            self._thread.start()
        return self

    def stop(self, *, finished: bool) -> None:
        """Stop beating; ``finished``: say so, so that the others do not take this rank for lost."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.world > 1 and finished:
            self._beat(state="finished")

    def _beat(self, state: str = "running") -> None:
        self._count += 1
        record = {"run": self.run_id, "rank": self.rank, "count": self._count, "state": state,
                  "host": socket.gethostname(), "pid": os.getpid()}
        path = self.folder / f"rank{self.rank}.json"
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with contextlib.suppress(OSError):  # a full or flaky disk must not stop training by itself
            tmp.write_text(json.dumps(record))
            os.replace(tmp, path)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._beat()
            lost = self.lost_rank()
            if lost is not None:
                self._report(lost)

    def lost_rank(self) -> dict | None:
        """The record of a rank whose beat stopped, if any (ranks that finished, or never showed up, are not)."""
        now = time.monotonic()
        for r in range(self.world):
            if r == self.rank:
                continue
            try:
                record = json.loads((self.folder / f"rank{r}.json").read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if record.get("run") != self.run_id or record.get("state") == "finished":
                continue
            count, moved = self._seen.get(r, (None, now))
            if record["count"] != count:
                self._seen[r] = (record["count"], now)
            elif now - moved > self.lost_after:
                return record
        return None

    def _report(self, record: dict) -> None:
        print(f"hypros-lm error (rank {self.rank}): lost rank {record['rank']} (host {record['host']}, pid "
              f"{record['pid']}): no heartbeat for {self.lost_after:.0f}s, so its process died or its node went "
              f"away. Stopping instead of waiting for DeepSpeed's collective timeout; restart the run with "
              f"--resume from the last checkpoint.", file=sys.stderr, flush=True)
        if self.on_lost is not None:
            with contextlib.suppress(Exception):
                self.on_lost(self.rank, True)
                self.on_lost(record["rank"], record.get("host") == socket.gethostname())
        os._exit(LOST_EXIT_CODE)

    def explain_failure(self) -> None:
        """After a collective failed (a peer's connection closed): wait until the lost rank can be named,
        then report it and stop; return if no rank turns out lost."""
        deadline = time.monotonic() + self.lost_after + 3 * self.every
        while self.world > 1 and time.monotonic() < deadline:
            time.sleep(self.every)  # the thread reports it as soon as it is sure
        # still here: every rank is alive, so the failure was something else

"""Run a tiny pretraining run's first two steps in this process, counting the host-device synchronisations of the
second (a step that logs, evaluates and saves nothing) by call site; prints them as one JSON line. Arguments are the
run's settings (tests/training/test_host_syncs.py)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hypros_lm.config import load_settings  # noqa: E402
from hypros_lm.training import loop  # noqa: E402
from hypros_lm.training.engine import init_distributed  # noqa: E402
from hypros_lm.training.telemetry import Clock  # noqa: E402
from tests.sync_counter import SyncCounter  # noqa: E402

settings = load_settings(sys.argv[1:])
plan = loop.check_run(settings)
rank, _, world = init_distributed()
run = loop.build_run(settings, plan, rank, world)
progress = loop.Progress(Clock(), 0, (0.0, 0))
loop.run_step(run, [], 1, progress)  # the first step: compiles, allocates, logs
with SyncCounter() as counter:
    loop.run_step(run, [], 2, progress)
print(json.dumps({"by_package": counter.by_package,
                  "sites": [[*key, n] for key, n in sorted(counter.sites.items())]}))

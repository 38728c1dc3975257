"""Write tests/file_seconds.json from a pytest run's ``--durations=0`` output: each test file's seconds (setup, call and
teardown summed), which tests/conftest.py uses to hand the costliest files to the workers first.

    bash scripts/test.sh -q --durations=0 | tee /tmp/suite.txt
    python scripts/test_durations.py /tmp/suite.txt
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

LINE = re.compile(r"^([0-9.]+)s (?:call|setup|teardown)\s+(tests/\S+?\.py)::")
OUT = Path(__file__).resolve().parents[1] / "tests" / "file_seconds.json"


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python scripts/test_durations.py PYTEST_OUTPUT (a run with --durations=0)")
    seconds: dict[str, float] = defaultdict(float)
    for line in Path(argv[0]).read_text().splitlines():
        match = LINE.match(line)
        if match:
            seconds[match.group(2)] += float(match.group(1))
    if not seconds:
        raise SystemExit(f"{argv[0]}: no durations found; run pytest with --durations=0")
    ranked = dict(sorted(((k, round(v, 1)) for k, v in seconds.items()), key=lambda kv: -kv[1]))
    OUT.write_text(json.dumps(ranked, indent=1) + "\n")
    print(f"wrote {OUT} ({len(ranked)} files, {sum(ranked.values()) / 60:.1f} worker-minutes)")


if __name__ == "__main__":
    main(sys.argv[1:])

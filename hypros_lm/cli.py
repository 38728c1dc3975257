"""Shared entry-point plumbing: the project's user errors ([`UserError`][hypros_lm.errors.UserError]) and a path that is
not there (``FileNotFoundError``) as one clear line instead of a traceback; any other exception is a bug and keeps its
traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from hypros_lm.errors import UserError


def run_main(main: Callable[[list[str]], object], argv: list[str] | None = None) -> None:
    try:
        main(sys.argv[1:] if argv is None else argv)
    except (UserError, FileNotFoundError) as err:
        if os.environ.get("HYPROS_DEBUG") == "1":
            raise
        if not isinstance(err, UserError):  # a path given on the command line that is not there
            err = f"{err.filename}: no such file or folder; check the path (relative paths start from {os.getcwd()})"
        rank = os.environ.get("RANK", "0")
        print(f"hypros-lm error (rank {rank}): {err}\n(set HYPROS_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(2)

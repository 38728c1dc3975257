"""Fresh virtual environments for install tests, offline: the wheel built from the checkout, and
dependencies taken from this environment (linked, not downloaded)."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def build_wheel(out: Path) -> Path:
    """The project's wheel, built from the checkout without network or build isolation."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, text=True, timeout=600)
    return next(out.glob("hypros_lm-*.whl"))


def _requirement_names(dist: metadata.Distribution) -> list[str]:
    names = []
    for req in dist.requires or []:
        if "extra ==" in req:
            continue
        names.append(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0])
    return names


def closure(names: list[str]) -> list[metadata.Distribution]:
    """The installed distributions of ``names`` and everything they require (extras left out)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        dist = metadata.distribution(name)
        seen[name] = dist
        todo.extend(_requirement_names(dist))
    return list(seen.values())


def fresh_venv(path: Path, *, provide: list[str]) -> Path:
    """A venv without pip whose only packages are ``provide`` and their requirements, linked from this
    environment through a .pth folder. Returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    linked = path / "linked"
    linked.mkdir()
    for dist in closure(provide):
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            src = Path(dist.locate_file(top))
            if src.exists() and not (linked / top).exists() and top != "__pycache__" and not top.endswith(".pth"):
                (linked / top).symlink_to(src)
    (site / "provided.pth").write_text(str(linked) + "\n")
    return python


def pip_install(python: Path, *args: str) -> subprocess.CompletedProcess:
    """This environment's pip, installing into the venv of ``python``, offline."""
    return subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "-q", *args],
                          capture_output=True, text=True, timeout=900)

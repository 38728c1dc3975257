"""Fresh virtual environments for install tests, offline: the wheel built from the checkout, and
dependencies taken from this environment (linked, not downloaded)."""

from __future__ import annotations

import os
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


def _requirements(dist: metadata.Distribution, extras: tuple[str, ...] = ()) -> list[tuple[str, tuple[str, ...]]]:
    """(name, extras) of what ``dist`` requires here (markers evaluated), with its given extras' requirements."""
    from packaging.requirements import Requirement

    out = []
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            out.append((req.name, tuple(sorted(req.extras))))
    return out


def requirements_of_project(extras: tuple[str, ...]) -> list[str]:
    """What the project (as installed here, editable) requires with these extras, as name[extra,...]."""
    return [f"{n}[{','.join(e)}]" if e else n for n, e in _requirements(metadata.distribution("hypros-lm"), extras)]


def closure(names: list[str]) -> list[metadata.Distribution]:
    """The installed distributions of ``names`` (``name[extra]`` too) and everything they require."""
    seen: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, tuple[str, ...]]] = set()
    todo = [(n.split("[")[0], tuple(n.split("[")[1].rstrip("]").split(",")) if "[" in n else ()) for n in names]
    while todo:
        name, extras = todo.pop()
        key = (name.lower().replace("_", "-"), extras)
        if key in done:
            continue
        done.add(key)
        try:
            dist = metadata.distribution(key[0])
        except metadata.PackageNotFoundError:
            continue  # an optional requirement this environment does without
        seen[key[0]] = dist
        todo.extend(_requirements(dist, extras))
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
    for dist in closure(provide):  # their console scripts (deepspeed's launcher among them), as pip writes them
        for ep in dist.entry_points.select(group="console_scripts"):
            script = path / "bin" / ep.name
            module, _, attr = ep.value.partition(":")
            script.write_text(f"#!{python}\nimport sys\nfrom {module} import {attr.split('.')[0]}\n"
                              f"sys.exit({attr}())\n")
            script.chmod(0o755)
        for file in dist.files or []:  # plain scripts (deepspeed's launcher is one), with this venv's python
            parts = Path(str(file)).parts
            if parts[:1] == ("..",) and "bin" in parts and not (path / "bin" / parts[-1]).exists():
                source = Path(dist.locate_file(file))
                text = source.read_text(errors="replace").splitlines(keepends=True)
                if text and text[0].startswith("#!") and "python" in text[0]:
                    text[0] = f"#!{python}\n"
                (path / "bin" / parts[-1]).write_text("".join(text))
                (path / "bin" / parts[-1]).chmod(0o755)
    return python


def clean_env() -> dict[str, str]:
    """This environment without PYTHONPATH: the venv must see its own packages, not a checkout."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def pip_install(python: Path, *args: str) -> subprocess.CompletedProcess:
    """This environment's pip, installing into the venv of ``python``, offline."""
    return subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "-q", *args],
                          capture_output=True, text=True, timeout=900, env=clean_env())

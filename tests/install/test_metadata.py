"""The package's legal and environment metadata: Apache-2.0 in LICENSE and pyproject.toml, and constraints.txt is
the environment the tests run in (every pin installed at its version), admits every declared dependency, and is
what scripts/setup.sh installs from."""

from __future__ import annotations

from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import REPO


def _pins() -> dict[str, str]:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    pins = dict(line.split("==", 1) for line in lines if line and not line.startswith("#"))
    return {canonicalize_name(k): v for k, v in pins.items()}


def test_license_is_apache_2_in_the_file_and_the_metadata():
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text[:200] and "Version 2.0, January 2004" in text[:200]
    assert "END OF TERMS AND CONDITIONS" in text  # the whole license, not a stub
    installed = metadata.metadata("hypros-lm")  # built from pyproject.toml
    assert installed["License-Expression"] == "Apache-2.0" and installed.get_all("License-File") == ["LICENSE"]


def test_constraints_are_the_tested_environment_and_what_setup_installs():
    pins = _pins()
    assert len(pins) > 50 and "torch" not in pins  # torch comes first, from setup.sh's HYPROS_TORCH_SPEC
    installed: dict[str, str] = {}
    for dist in metadata.distributions():  # the first on sys.path is the one imported (as metadata.version says);
        installed.setdefault(canonicalize_name(dist.metadata["Name"]), dist.version)  # later: vendored copies
    drift = {name: (version, installed[name]) for name, version in pins.items() if installed.get(name, version) != version}
    assert not drift, f"constraints.txt differs from this environment (pinned, installed): {drift}; run scripts/lock.sh"
    requires = [Requirement(r) for r in metadata.requires("hypros-lm")]
    for req in requires:
        if not req.marker or not any(req.marker.evaluate({"extra": e}) for e in ("train", "hf", "trl", "peft", "dev", "docs")):
            continue  # torch (installed first, unpinned) and the gpu extra
        name = canonicalize_name(req.name)
        assert name in pins and installed.get(name) == pins[name], f"{req.name} is not pinned and installed by setup.sh"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req} does not admit the pinned {pins[name]}"
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert "pip install -q -c constraints.txt -e \".[train,trl,peft,dev,docs]\"" in setup

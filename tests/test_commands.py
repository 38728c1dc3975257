"""What a newcomer meets at the command line: every option of every command described by --help, a path that is not
there named in one line (no traceback), an unknown setting answered with the closest known ones first, a hub data set
without the datasets package answered with how to install it."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from hypros_lm.config import load_settings
from hypros_lm.errors import InvalidValue, MissingPackage
from tests.helpers import REPO

ARGPARSE_COMMANDS = ["prepare", "study", "timing", *(f"evaluate.{name}" for name in (
    "classify", "compare", "export", "generate", "lm", "plots", "ratings", "report", "zeroshot"))]


class _Parsed(Exception):
    """Raised instead of parsing: carries the command's parser out of its main()."""


@pytest.mark.parametrize("command", ARGPARSE_COMMANDS)
def test_every_option_of_every_command_has_a_description(command, monkeypatch):
    def capture(parser, *_args, **_kwargs):
        raise _Parsed(parser)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    module = importlib.import_module(f"hypros_lm.commands.{command}")
    with pytest.raises(_Parsed) as caught:
        module.main(["--help"])
    parser = caught.value.args[0]
    undescribed = [action.dest for action in parser._actions if not action.help]
    assert undescribed == [], f"{command}: {undescribed}"


@pytest.mark.parametrize("argv", [
    ["eval/report.py", "runs/studies/no-such-study"],
    ["eval/lm.py", "runs/no-such-run", "--split", "test"],
    ["launch/study.py", "studies/no-such-study.yaml"],
    ["eval/plots.py", "runs/no-such-run", "--out", "plots"],
])
def test_a_missing_path_is_one_line_naming_it(argv, tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / argv[0]), *argv[1:]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("hypros-lm error")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "no-such-" in errors[0]


def test_an_unknown_setting_names_the_closest_known_ones_first():
    with pytest.raises(InvalidValue, match=r"unknown setting 'train\.max_step'; did you mean train\.max_steps"):
        load_settings(["--train.max_step", "3"])
    with pytest.raises(InvalidValue) as caught:
        load_settings(["--zzz.qqq", "1"])
    assert "did you mean" not in str(caught.value) and "optim.lr" in str(caught.value)  # nothing close: the list


def test_a_hub_data_set_without_the_datasets_package_says_how_to_get_it(monkeypatch):
    from hypros_lm.data import sources

    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets now fails, as in a [hf]-only install
    with pytest.raises(MissingPackage, match=r"'wikitext-103-raw-v1'.*needs the datasets package: pip install datasets"):
        sources._datasets("wikitext-103-raw-v1")

"""The pretraining page's sample of what the main job prints (written by scripts/demo_sample.py from a real run) is
in today's console format: each of its step and validation lines is matched by the line the console would print
today for a record of the same keys, with the numbers left open."""

from __future__ import annotations

import re

from hypros_lm.training.telemetry import console_line
from tests.helpers import REPO

PAGE = REPO / "docs" / "pretraining.md"
NUMBER = r"-?\d[\d.:k%]*(?:e[-+]\d+)?"


def _sample() -> list[str]:
    page = PAGE.read_text()
    block = page[page.index("<!-- demo-output -->"):page.index("<!-- /demo-output -->")]
    return block.split("```")[1].strip().splitlines()


def _shape(line: str) -> re.Pattern:
    """A line with every number opened up: what stays are the labels, their order and the separators."""
    parts = re.split(NUMBER, line)
    return re.compile("^" + NUMBER.join(re.sub(" +", " +", re.escape(p).replace("\\ ", " ")) for p in parts) + "$")


def test_the_sample_s_step_lines_are_today_s_console_lines():
    record = {"step": 20, "loss": 6.8, "loss_log": 7.3, "loss_brier": 0.99, "loss_spherical": 0.9, "lambda": 0.07,
              "lr": 2e-3, "tokens_per_s": 6000.0, "tflops_per_device": 0.07, "mfu": None, "peak_mem_mb": 700.0}
    steps = [line for line in _sample() if line.startswith("step ")]
    assert len(steps) >= 3, _sample()
    shape = _shape(console_line(record, max_steps=400, elapsed=3.0, start_step=0))
    for line in steps:
        assert shape.match(line), (line, shape.pattern)


def test_the_sample_ends_with_the_last_evaluation_and_the_page_states_its_perplexity():
    lines = _sample()
    val = [line for line in lines if line.startswith("  val @ ")]
    assert val and " | spherical " in val[-1] and "(ppl " in val[-1]
    ppl = re.search(r"\(ppl ([0-9.]+)\)", val[-1]).group(1)
    assert f"validation perplexity **{ppl}**" in PAGE.read_text()
    assert f"validation perplexity {ppl} (" in (REPO / "README.md").read_text()  # the README's statement, from the page
    assert lines[-1].startswith("done: runs/cpu-demo")

"""The package's layout holds: imports read with `ast` (inside functions too) go from a floor to the same or a
lower one and form no cycle; package imports inside functions are kept for optional, heavy dependencies only;
no file over 400 lines, no function over 80. Floors as in the documentation's layout page (docs/layout.md)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGE = REPO / "hypros_lm"
FLOORS = {  # top-level part of the package -> floor (lowest first)
    "files": 0, "cli": 0, "errors": 0, "resources": 0,
    "scoring": 1, "metrics": 1,
    "models": 2, "data": 2, "integrations": 2,
    "config": 3, "settings_docs": 3, "runs": 3,
    "evaluation": 4,
    "tasks": 5,
    "training": 6,
    "studies": 7,
    "commands": 8,
}
# package modules that wrap an optional dependency at their top (lm-eval): imported inside functions on purpose
LAZY_MODULES = {"hypros_lm.evaluation.lm_eval_model", "hypros_lm.evaluation.lm_eval_tasks"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str:
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported package module, inside a function?) for each hypros_lm import of the file."""
    tree = ast.parse(path.read_text())
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hypros_lm"):
            for alias in node.names:
                found.append((_resolve(f"{node.module}.{alias.name}"), id(node) in inner))
        elif isinstance(node, ast.Import):
            found += [(_resolve(a.name), id(node) in inner) for a in node.names if a.name.startswith("hypros_lm")]
    return found


def _floor(module: str) -> int:
    parts = module.split(".")
    return FLOORS[parts[1]] if len(parts) > 1 else FLOORS["scoring"]  # the package root exports the loss API


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _ in _imports(p) if t != m} for m, p in MODULES.items()}


def test_every_part_of_the_package_has_a_floor():
    parts = {m.split(".")[1] for m in MODULES if "." in m}
    assert parts <= set(FLOORS), f"parts without a floor: {parts - set(FLOORS)}"


def test_imports_go_down_or_across_never_up():
    upward = [f"{m} (floor {_floor(m)}) imports {t} (floor {_floor(t)})"
              for m, targets in _graph().items() for t in targets
              if _floor(t) > _floor(m) and not (m.startswith(t + ".") or t == "hypros_lm")]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    graph = _graph()
    # a package's __init__ importing its own submodules is how Python packages work: not a cycle
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " → ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_package_imports_inside_functions_only_for_optional_dependencies():
    inner = [f"{path.relative_to(REPO)} imports {t} inside a function"
             for m, path in MODULES.items() for t, is_inner in _imports(path) if is_inner and t not in LAZY_MODULES]
    assert not inner, "\n".join(inner)


def test_no_file_over_400_lines_and_no_function_over_80():
    long_files = [f"{p.relative_to(REPO)}: {n} lines" for p in MODULES.values()
                  if (n := len(p.read_text().splitlines())) > 400]
    long_functions = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
                long_functions.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: "
                                      f"{node.end_lineno - node.lineno + 1} lines")
    assert not long_files + long_functions, "\n".join(long_files + long_functions)


RUN_FOLDER_NAMES = {"settings.yaml", "metrics.jsonl", "environment.json", "model_config.json", "checkpoints", "latest",
                    "meta.json", "metrics.json"}
RUN_FOLDER_PATTERN = re.compile(r"^(step_[0-9*{]|eval-)")  # a checkpoint's or an evaluation's folder


def _path_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of the string literals of a file that spell a run-folder name: equal to one, or an f-string
    beginning with a checkpoint's or an evaluation's prefix (docstrings and messages are prose: not counted)."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                node.value in RUN_FOLDER_NAMES or RUN_FOLDER_PATTERN.match(node.value) and " " not in node.value):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant) and \
                RUN_FOLDER_PATTERN.match(f"{node.values[0].value}{{"):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_only_the_run_folder_type_spells_run_folder_names():
    """Every reader and writer of a run folder (the package, the tests, the benchmarks) goes through
    hypros_lm.runs.RunFolder; the run folder's names are spelled in hypros_lm/runs.py alone."""
    files = [*PACKAGE.rglob("*.py"), *(REPO / "tests").rglob("*.py"), *(REPO / "benchmarks").rglob("*.py")]
    spelled = [f"{p.relative_to(REPO)}:{line} {text!r}" for p in files
               if p not in (PACKAGE / "runs.py", Path(__file__)) for line, text in _path_literals(p)]
    assert not spelled, "\n".join(spelled)


def test_the_run_folder_type_names_what_a_run_writes(tmp_path):
    from hypros_lm.runs import EVALUATION_FILE, RunFolder

    run = RunFolder(tmp_path)
    layout = [run.settings_file, run.tokenizer_file, run.environment_file, run.metrics_file, run.hf_config_file,
              run.checkpoint(100), run.evaluation("test") / EVALUATION_FILE]
    assert [str(p.relative_to(tmp_path)) for p in layout] == [
        "settings.yaml", "tokenizer.json", "environment.json", "metrics.jsonl", "model_config.json",
        "checkpoints/step_0000100", "eval-test/metrics.json"]
    with pytest.raises(FileNotFoundError, match="is not a run folder"):
        run.check()
    run.metrics_file.write_text('{"step": 1, "split": "train"}\n{"step": 1, "split": "val"}\n')
    assert run.metrics("val") == [{"step": 1, "split": "val"}] and len(run.metrics()) == 2
    assert run.latest() is None and not run.has_checkpoint(100)


# where Brier is a metric of class or choice probabilities, or a study's headline test metric (not the fused score)
BRIER_AS_A_METRIC = ("hypros_lm.metrics", "hypros_lm.studies", "hypros_lm.tasks.classification",
                     "hypros_lm.evaluation.lm_eval_tasks", "hypros_lm.evaluation.zeroshot",
                     "hypros_lm.commands.evaluate.classify")


def test_only_the_scoring_floor_spells_a_score():
    """Adding a score is a file in the scoring floor: no other module names one (the training objectives' names,
    such as ``--loss brier``, are LOSSES' keys; Brier as a metric of probabilities lives in the metric modules)."""
    from hypros_lm.scoring.scores import ALIASES, FAMILIES

    names = {*ALIASES, *FAMILIES}
    spelled = {}
    for name, path in MODULES.items():
        if name.startswith("hypros_lm.scoring"):
            continue
        text = path.read_text()
        constants = {n.value for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        allowed = {"brier"} if name.startswith(BRIER_AS_A_METRIC) else set()
        found = (names & constants) - allowed
        if "spherical" in text.lower():
            found.add("spherical")
        if found:
            spelled[name] = sorted(found)
    assert not spelled, f"modules outside hypros_lm/scoring that name a score: {spelled}"

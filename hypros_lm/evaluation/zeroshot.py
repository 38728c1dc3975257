"""Zero-shot transfer through lm-evaluation-harness itself, online or on the offline data copies.

Each supported task gets a small generated YAML that ``include``s lm-eval's own built-in task file (by
absolute path, found from the installed package): same prompts, same metrics, plus the Brier score of
each multiple-choice document over its own choices ([`ChoiceBrierTask`][hypros_lm.evaluation.lm_eval_tasks.ChoiceBrierTask],
aggregated by mean with lm-eval's stderr), online as offline. Offline it also overrides where the data
comes from.
Copies that are not in the hub's layout are adapted here, never edited: PIQA's labels live in a
separate file, BoolQ's labels are strings, and WikiText's document-level pages are grouped from the
raw test file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hypros_lm.data.sources import data_dir, use_offline_copies
from hypros_lm.errors import InvalidValue, MissingFile


@dataclass(frozen=True)
class OfflineTask:
    builtin: str  # path of lm-eval's task YAML under lm_eval/tasks/
    files: dict[str, str]  # split → file in the data folder
    multiple_choice: bool = True
    process_docs: str | None = None  # a function of hypros_task_utils.py (generated beside the YAML)
    note: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)


_ARC = {"train": "train.jsonl", "validation": "validation.jsonl", "test": "test.jsonl"}
OFFLINE_TASKS: dict[str, OfflineTask] = {
    "lambada_openai": OfflineTask("lambada/lambada_openai.yaml", {"test": "lambada/lambada_test.jsonl"},
                                  multiple_choice=False),
    "arc_easy": OfflineTask("arc/arc_easy.yaml", {k: f"ai2_arc/ARC-Easy/{v}" for k, v in _ARC.items()}),
    "arc_challenge": OfflineTask("arc/arc_challenge.yaml", {k: f"ai2_arc/ARC-Challenge/{v}" for k, v in _ARC.items()}),
    "piqa": OfflineTask("piqa/piqa.yaml", {"validation": "piqa/valid.jsonl"}, process_docs="piqa_process_docs",
                        overrides={"training_split": None}),
    "winogrande": OfflineTask("winogrande/default.yaml", {"validation": "winogrande/dev.jsonl"},
                              overrides={"training_split": None}),
    "boolq": OfflineTask("super_glue/boolq/default.yaml", {"validation": "boolq/val.jsonl.gz"},
                         process_docs="boolq_process_docs", overrides={"training_split": None}),
    "hellaswag": OfflineTask("hellaswag/hellaswag.yaml", {"validation": "hellaswag/val_sample1000.jsonl"},
                             note="1,000 of the 10,042 validation examples", overrides={"training_split": None}),
    "wikitext": OfflineTask("wikitext/wikitext.yaml", {"validation": "wikitext-2-raw/wiki.valid.raw",
                                                       "test": "wikitext-2-raw/wiki.test.raw"},
                            multiple_choice=False, overrides={"training_split": None}),
}
OFFLINE_SUFFIX = "_offline"
ONLINE_SUFFIX = "_hypros"


def lm_eval_tasks_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks"


class _IgnoreTags(yaml.SafeLoader):
    pass


_IgnoreTags.add_multi_constructor("!", lambda loader, suffix, node: None)


def _builtin_metric_list(path: Path) -> list[dict[str, Any]]:
    """metric_list of a built-in task, following its includes (its !function tags are not needed here)."""
    cfg = yaml.load(path.read_text(), Loader=_IgnoreTags)  # noqa: S506 - a SafeLoader subclass
    if "metric_list" in cfg:
        return cfg["metric_list"]
    if "include" in cfg:
        return _builtin_metric_list(path.parent / cfg["include"])
    return []


def _wikitext_pages(raw: Path) -> list[dict[str, str]]:
    """Group raw WikiText lines into document-level pages, as EleutherAI/wikitext_document_level does."""
    pages, buf = [], []
    for line in raw.read_text(encoding="utf-8").splitlines(keepends=True):
        if re.match(r"^ = [^=].* = \n$", line) and any(x.strip() for x in buf):
            pages.append({"page": "".join(buf)})
            buf = []
        buf.append(line)
    if any(x.strip() for x in buf):
        pages.append({"page": "".join(buf)})
    return pages


def write_tasks(folder: Path, names: list[str], *, offline: bool) -> dict[str, str]:
    """Write task YAMLs for ``names`` into ``folder`` (offline: on the copies in the data folder);
    return {task name lm-eval runs: description}."""
    root = data_dir() if offline else None
    if offline and root is None:
        raise MissingFile("no offline data folder (set HYPROS_DATA_DIR or place the copies in ../shared/data)")
    folder.mkdir(parents=True, exist_ok=True)
    utils = ["from hypros_lm.evaluation.lm_eval_tasks import ChoiceBrierTask  # noqa: F401"]
    if offline:
        utils += [
            "from hypros_lm.evaluation.zeroshot import attach_line_labels, boolq_string_labels",
            f"PIQA_LABELS = {str(root / 'piqa' / 'valid-labels.lst')!r}",
            "def piqa_process_docs(dataset):\n    return attach_line_labels(dataset, PIQA_LABELS)",
            "def boolq_process_docs(dataset):\n    return boolq_string_labels(dataset)",
        ]
    (folder / "hypros_task_utils.py").write_text("\n\n".join(utils) + "\n")
    described = {}
    for name in names:
        spec = OFFLINE_TASKS[name]
        builtin = lm_eval_tasks_dir() / spec.builtin
        task = name + (OFFLINE_SUFFIX if offline else ONLINE_SUFFIX)
        cfg: dict[str, Any] = {"include": str(builtin), "task": task}
        where = "hub data"
        if offline:
            files = _offline_files(name, spec, root, folder)
            cfg |= {"dataset_path": "json", "dataset_name": None,
                    "dataset_kwargs": {"data_files": {split: str(p) for split, p in files.items()}}, **spec.overrides}
            where = ", ".join(str(p) for p in files.values())
        if "tag" in yaml.load(builtin.read_text(), Loader=_IgnoreTags):  # noqa: S506
            cfg["tag"] = []  # keep the variant out of the built-in groups
        if spec.multiple_choice:
            kept = [m for m in _builtin_metric_list(builtin) if m.get("metric") != "brier_score"]
            cfg["metric_list"] = [*kept, {"metric": "brier_score", "aggregation": "mean", "higher_is_better": False}]
        text = yaml.safe_dump(cfg, sort_keys=False)
        if spec.multiple_choice:
            text += "class: !function hypros_task_utils.ChoiceBrierTask\n"
        if offline and spec.process_docs:
            text += f"process_docs: !function hypros_task_utils.{spec.process_docs}\n"
        (folder / f"{task}.yaml").write_text(text)
        described[task] = f"lm-eval {name} on {where}" + (f" ({spec.note})" if spec.note and offline else "")
    return described


def _offline_files(name: str, spec: OfflineTask, root: Path, folder: Path) -> dict[str, Path]:
    files = {split: root / rel for split, rel in spec.files.items()}
    if name == "wikitext":  # lm-eval reads document-level pages
        for split, raw in list(files.items()):
            target = folder / f"wikitext_{split}.jsonl"
            target.write_text("".join(json.dumps(p) + "\n" for p in _wikitext_pages(raw)))
            files[split] = target
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise MissingFile(f"offline task {name!r} needs {missing}, which the data folder lacks")
    return files


def attach_line_labels(dataset, labels_path: str):
    """Add the ``label`` column from a file of one integer label per line, aligned with the records."""
    labels = [int(x) for x in Path(labels_path).read_text().split()]
    if len(labels) != len(dataset):
        raise InvalidValue(f"{labels_path} has {len(labels)} labels for {len(dataset)} records")
    return dataset.add_column("label", labels)


def boolq_string_labels(dataset):
    """SuperGLUE's file stores the label as true/false; the hub's class label is 1/0."""
    return dataset.map(lambda doc: {"label": 1 if str(doc["label"]).lower() == "true" else 0})


def resolve_tasks(names: list[str], folder: Path) -> tuple[list[str], dict[str, str]]:
    """Map requested task names to what lm-eval runs: generated variants of the known tasks (offline:
    on the data folder's copies); online, other lm-eval tasks run as they are."""
    offline = use_offline_copies()
    unknown = [n for n in names if n not in OFFLINE_TASKS]
    if offline and unknown:
        raise InvalidValue(f"task(s) {unknown} have no offline copy; offline tasks: {sorted(OFFLINE_TASKS)}")
    described = write_tasks(folder, [n for n in names if n in OFFLINE_TASKS], offline=offline)
    described |= {n: f"lm-eval {n} (hub data, as lm-eval defines it)" for n in unknown}
    suffix = OFFLINE_SUFFIX if offline else ONLINE_SUFFIX
    return [n + suffix if n in OFFLINE_TASKS else n for n in names], described


def summary_lines(results: dict[str, Any], described: dict[str, str]) -> list[str]:
    """One line per task: its metrics (value ± stderr) and where its data came from."""
    lines = []
    for task, metrics in results.get("results", {}).items():
        parts = []
        for key, value in metrics.items():
            if key in ("alias", "sample_len") or "_stderr" in key or not isinstance(value, (int, float)):
                continue
            metric = key.split(",")[0]
            stderr = metrics.get(key.replace(metric, f"{metric}_stderr", 1))
            err = f" ± {stderr:.4f}" if isinstance(stderr, (int, float)) else ""
            parts.append(f"{metric} {value:.4f}{err}")
        lines.append(f"{task:<24} {' | '.join(parts)}   [{described.get(task, '')}]")
    return lines


def parse_task_limits(spec: str) -> dict[str, int | None]:
    """'lambada_openai:100,arc_easy' → {'lambada_openai': 100, 'arc_easy': None}."""
    tasks: dict[str, int | None] = {}
    for item in filter(None, (x.strip() for x in spec.split(","))):
        name, _, limit = item.partition(":")
        if limit and (not limit.isdigit() or int(limit) < 1):
            raise InvalidValue(f"train.lm_eval_tasks: {item!r} has a limit that is not a positive whole number (task:N)")
        tasks[name] = int(limit) if limit else None
    if not tasks:
        raise InvalidValue(f"train.lm_eval_tasks={spec!r} names no task; give e.g. 'lambada_openai:100,arc_easy:100'")
    return tasks

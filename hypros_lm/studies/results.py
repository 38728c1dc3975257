"""A study's run folders read back: one RunResult per finished run, with the headline scores a report
compares (reads files only)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from hypros_lm.errors import InvalidValue, MissingFile
from hypros_lm.runs import EVALUATION_FILE, RunFolder
from hypros_lm.studies.spec import Study
from hypros_lm.studies.stats import curve_area
from hypros_lm.tasks import family_for
from hypros_lm.tasks.seq2seq import get_task

# Telemetry from the runs' metrics.jsonl (each run's median over its logged steps; absent in runs that
# did not log a field, e.g. MFU on CPU without telemetry.peak_tflops, or energy without NVML)
EFFICIENCY = (("tokens_per_s", "tokens/s"), ("tflops_per_device", "TFLOP/s per device"), ("mfu", "MFU"),
              ("peak_mem_mb", "peak memory MiB"), ("model_state_mb", "model states MiB"),
              ("energy_j_per_step", "energy J/step"))
COMPARED = (("nll", "test NLL"), ("brier", "test Brier"), ("ece_10", "test ECE (10 bins)"), ("auc", "val NLL curve area"))
# what a generation evaluation (tasks/seq2seq.evaluate_task) scores its outputs with; higher is better
GENERATION_SCORES = {"bleu": "BLEU", "chrf": "chrF", "rouge1_f": "ROUGE-1", "rouge2_f": "ROUGE-2", "rougeL_f": "ROUGE-L"}
TASK_METRIC = {"translation": "bleu", "summarization": "rougeL_f"}


def task_metric(study: Study) -> str | None:
    """The generation score a study of a sequence-to-sequence task is judged on first (BLEU for translation,
    ROUGE-L for summarization; higher is better), or None where the task metric is the test NLL (pretraining,
    classification)."""
    if study.task == "pretrain" or family_for(study.task).name != "seq2seq":
        return None
    return TASK_METRIC[get_task(study.task).kind]


@dataclass
class RunResult:
    name: str
    variation: str
    model: str
    seed: int
    params: int
    tokens: int
    max_steps: int
    curve: list[dict[str, Any]]  # validation records
    train: list[dict[str, Any]]
    evals: dict[str, dict[str, Any]]
    test: dict[str, float] = field(default_factory=dict)
    non_embedding: int | None = None
    """Parameters without the input embedding and the head (None in runs written before it was recorded)."""
    lr: float | None = None

    @property
    def flops_per_token(self) -> float:
        return float(self.train[-1]["flops_per_token"])

    @property
    def flops(self) -> float:
        """Training FLOPs (head and attention counted): FLOPs per token × tokens trained."""
        return self.flops_per_token * self.tokens

    @property
    def curve_compute(self) -> list[dict[str, float]]:
        """The validation curve against training FLOPs so far."""
        return [{"flops": self.flops_per_token * r["tokens"], "loss_log": r["loss_log"]} for r in self.curve if r["tokens"]]

    @property
    def step_time(self) -> float:
        """Median seconds per optimizer step over the logged training intervals."""
        per_step = [r["tokens"] / r["step"] / r["tokens_per_s"] for r in self.train if r.get("tokens_per_s")]
        return median(per_step)

    def telemetry(self, key: str) -> float | None:
        """Median of a logged training field, None where the run never logged it."""
        values = [r[key] for r in self.train if r.get(key) is not None]
        return median(values) if values else None


TIMING_FOLDER = "timing"


def read_timings(folder: Path) -> dict[str, dict[str, Any]]:
    """The study's interleaved step timings by model (``<folder>/timing/<model>.json``, from the runner)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((Path(folder) / TIMING_FOLDER).glob("*.json"))}


def read_runs(folder: Path, study: Study) -> tuple[list[RunResult], list[str]]:
    """Completed runs of this study under ``folder``; notes on what was left out and why."""
    runs, notes = [], []
    for run_dir in sorted(p for p in Path(folder).iterdir() if (p / "study.json").is_file()):
        ident = json.loads((run_dir / "study.json").read_text())
        if ident["study"] != study.name:
            raise InvalidValue(f"{run_dir} belongs to study {ident['study']!r}, not {study.name!r}; keep studies in separate folders")
        folder = RunFolder(run_dir)
        if not folder.metrics_file.is_file():
            notes.append(f"{run_dir.name}: not started; left out")
            continue
        settings, records = folder.settings_dict(), folder.metrics()
        max_steps = settings["train"]["max_steps"]
        curve = [headline(r) for r in records if r["split"] == "val"]
        if not curve or curve[-1]["step"] != max_steps:
            notes.append(f"{run_dir.name}: not finished (no validation at step {max_steps}); left out")
            continue
        evals = {name: headline(json.loads((folder.evaluation(name) / EVALUATION_FILE).read_text()))
                 for name in study.evaluations if (folder.evaluation(name) / EVALUATION_FILE).is_file()}
        env = folder.environment()
        train = [r for r in records if r["split"] == "train"]
        run = RunResult(run_dir.name, ident["variation"], ident["model"], int(ident["seed"]), env["num_parameters"],
                        train[-1]["tokens"], max_steps, curve, train, evals,
                        non_embedding=env.get("non_embedding_parameters"), lr=settings.get("optim", {}).get("lr"))
        source = evals.get("test") or curve[-1]
        run.test = {"nll": source["loss_log"], "brier": source["loss_brier"], "ece_10": source["ece_10"],
                    "accuracy": source["accuracy"], "auc": curve_area([r["step"] for r in curve], [r["loss_log"] for r in curve]),
                    **{k: source[k] for k in GENERATION_SCORES if k in source}}
        runs.append(run)
    if not runs:
        raise MissingFile(f"no finished runs of study {study.name!r} under {folder}")
    return runs, notes


CLASS_HEADLINE = {"loss_log": "class_nll", "loss_brier": "class_brier", "ece_10": "class_ece_10",
                  "accuracy": "class_accuracy", "reliability_10": "class_reliability_10"}


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The scores a report compares under their usual names: for a classifier, the class-level ones (NLL of
    the gold class, multi-class Brier, top-label ECE, accuracy) rather than the label token's over the whole
    vocabulary (kept under ``token_*``); for a generation evaluation, the target tokens' scores and the
    outputs' (of its perturbed sources where it has a perturbation, with their relative degradation)."""
    if "target_tokens" in metrics:
        perturbed = [v for v in metrics.values() if isinstance(v, dict) and "relative_degradation" in v]
        outputs = perturbed[0] if perturbed else metrics["clean"]
        extra = {"relative_degradation": outputs["relative_degradation"]} if perturbed else {}
        tokens = outputs.get("target_tokens", metrics["target_tokens"])  # scored given the perturbed sources
        return {**tokens, **{k: outputs[k] for k in GENERATION_SCORES if k in outputs}, **extra}
    if "class_nll" not in metrics:
        return metrics
    out = dict(metrics)
    for usual, cls in CLASS_HEADLINE.items():
        if usual in metrics:
            out[f"token_{usual}"] = metrics[usual]
        if cls in metrics:
            out[usual] = metrics[cls]
    return out

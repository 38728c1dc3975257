"""Run a study's matrix on this machine, one run after another, through the deepspeed launcher.

Finished runs are skipped (final checkpoint at max_steps and every evaluation written); interrupted
ones resume from their last checkpoint. Each run folder records its study identity (study.json),
resolved settings, code version and environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from hypros_lm.errors import InvalidValue
from hypros_lm.files import free_port
from hypros_lm.runs import EVALUATION_FILE, RunFolder, load_run
from hypros_lm.studies.results import TIMING_FOLDER
from hypros_lm.studies.spec import RunSpec, Study
from hypros_lm.tasks import family_for


def entry_module(study: Study) -> str:
    """The command a run starts, as a module: found wherever hypros-lm is installed (deepspeed --module)."""
    return "hypros_lm.commands." + ("pretrain" if study.task == "pretrain" else "finetune")


def training_done(run: RunSpec) -> bool:
    return RunFolder(run.out).has_checkpoint(run.settings.train.max_steps)


def evaluations_done(study: Study, run: RunSpec) -> bool:
    return all((RunFolder(run.out).evaluation(name) / EVALUATION_FILE).is_file() for name in study.evaluations)


def check_identity(study: Study, run: RunSpec) -> None:
    """Refuse to reuse a folder that belongs to another study or another cell of the matrix."""
    path = run.out / "study.json"
    if path.is_file():
        found = json.loads(path.read_text())
        if found != run.identity(study.name, study.task):
            raise InvalidValue(f"{run.out} holds run {found}, not {run.identity(study.name, study.task)}; "
                               f"use another --out for this study")


def write_run_config(study: Study, run: RunSpec) -> Path:
    run.out.mkdir(parents=True, exist_ok=True)
    (run.out / "study.json").write_text(json.dumps(run.identity(study.name, study.task), indent=2))
    config = run.out / "study-run.yaml"
    config.write_text(yaml.safe_dump(run.settings.to_dict(), sort_keys=False))
    return config


def deepspeed_command(study: Study, run: RunSpec, *, ranks: int, port: int | None = None,
                      hostfile: str | None = None) -> list[str]:
    local = Path(sys.executable).parent / "deepspeed"
    cmd = [str(local) if port else "deepspeed"]  # printed commands run on other machines: take it from PATH
    if hostfile:
        cmd += ["--hostfile", hostfile]
    else:
        cmd += ["--num_gpus", str(ranks)]
    if port:
        cmd += ["--master_port", str(port)]
    return [*cmd, "--module", entry_module(study), "--config", str(run.out / "study-run.yaml"), "--resume"]



def run_training(study: Study, run: RunSpec, ranks: int) -> float:
    """Train (or resume) one run under the deepspeed launcher; its output goes to <run>/train.log."""
    write_run_config(study, run)
    start = time.time()
    with open(run.out / "train.log", "a") as log:
        proc = subprocess.run(deepspeed_command(study, run, ranks=ranks, port=free_port()),
                              stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if proc.returncode != 0:
        tail = (run.out / "train.log").read_text()[-3000:]
        raise RuntimeError(f"run {run.name} failed (exit {proc.returncode}); end of {run.out / 'train.log'}:\n{tail}")
    return time.time() - start


def run_evaluations(study: Study, run: RunSpec) -> None:
    """Each evaluation of the study on the run's final model, by the family of the evaluation's task
    (``data:`` specs are language-model evaluations, ``task:`` specs the task's own)."""
    loaded = load_run(run.out)
    for name, spec in study.evaluations.items():
        out = RunFolder(run.out).evaluation(name)
        if (out / EVALUATION_FILE).is_file():
            continue
        family_for(spec.get("task")).evaluate_run(loaded, spec, out, batches=study.eval_batches,
                                                  label=f"{run.variation} ({run.model}, seed {run.seed})")


def run_study(study: Study, runs: list[RunSpec], *, ranks: int, log=print) -> None:
    for run in runs:
        check_identity(study, run)
    start = time.time()
    for i, run in enumerate(runs, 1):
        prefix = f"[{i}/{len(runs)}] {run.name}"
        if training_done(run) and evaluations_done(study, run):
            log(f"{prefix}: done, skipped")
            continue
        began = time.time()
        if not training_done(run):
            state = "resuming" if RunFolder(run.out).latest() is not None else "training"
            log(f"{prefix}: {state} ...")
            for stale in RunFolder(run.out).evaluations():  # evaluations of an earlier checkpoint
                shutil.rmtree(stale)
            seconds = run_training(study, run, ranks)
            if not training_done(run):
                log(f"{prefix}: stopped before step {run.settings.train.max_steps} (train.stop_at); not evaluated")
                continue
            log(f"{prefix}: trained in {seconds:.0f}s")
        run_evaluations(study, run)
        _record_wallclock(run, time.time() - began)
        elapsed = time.time() - start
        log(f"{prefix}: evaluated | study {elapsed / 60:.1f} min so far, ~{elapsed / i * (len(runs) - i) / 60:.1f} min left")
    if study.timing:
        run_timings(study, runs, log=log)
    log(f"study {study.name}: {len(runs)} runs complete in {(time.time() - start) / 60:.1f} min")


def _record_wallclock(run: RunSpec, seconds: float) -> None:
    """Add a run's training and evaluation seconds to the study's ``wallclock.jsonl`` as soon as it is done (a study
    cut off keeps what it finished), which the report sums (studies.report.study_minutes)."""
    with open(run.out.parent / "wallclock.jsonl", "a") as f:
        f.write(json.dumps({"run": run.name, "ended": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(seconds, 1)}) + "\n")


def run_timings(study: Study, runs: list[RunSpec], *, log=print) -> None:
    """One interleaved step timing per model (``<out>/timing/<model>.json``), of the method variation's first
    run's settings, in a fresh process of its own (skipped when its file exists)."""
    for model in dict.fromkeys(r.model for r in runs):
        spec = next((r for r in runs if r.model == model and r.variation == study.baselines.method), None)
        if spec is None:
            continue
        path = spec.out.parent / TIMING_FOLDER / f"{model}.json"
        if path.is_file():
            log(f"timing {model}: done, skipped")
            continue
        log(f"timing {model}: {study.baselines.method} and log-loss steps alternated, {study.timing.steps} each ...")
        cmd = [sys.executable, "-m", "hypros_lm.commands.timing", "--config", str(spec.out / "study-run.yaml"),
               "--steps", str(study.timing.steps), "--out", str(path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if proc.returncode != 0:
            raise RuntimeError(f"the timing of {model} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n"
                               f"{proc.stderr[-2000:]}")
        log(proc.stdout.strip().splitlines()[-1])

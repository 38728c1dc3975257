"""The training loop, for pretraining and fine-tuning alike: read it top to bottom.

    check settings → init distributed → data (the task family's) → model (→ initial weights) → DeepSpeed engine → resume?
    for step (run_step): λ(step), lr(step) → micro-batches: forward (fused scoring head) / backward → engine.step
                         → maybe_log → maybe_eval → maybe_save
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml

from hypros_lm.config import RunSettings, settings_warnings
from hypros_lm.data import BlockOrder, PreparedData, save_tokenizer
from hypros_lm.data.sources import use_offline_copies
from hypros_lm.errors import FileInTheWay, InvalidValue
from hypros_lm.evaluation.zeroshot import OFFLINE_TASKS, parse_task_limits
from hypros_lm.files import ensure_writable
from hypros_lm.models import (
    build_model,
    flops_per_token,
    has_weights,
    hf_config,
    initial_value,
    is_hf,
    model_dimensions,
    resolve_attention,
)
from hypros_lm.models.hf import hf_source
from hypros_lm.runs import RunFolder, read_weights, resume_latest, save_checkpoint
from hypros_lm.scoring import Objective, build_objective
from hypros_lm.scoring.schedules import learning_rate
from hypros_lm.tasks import TaskFamily, family_for
from hypros_lm.training.batches import StepSums, scored_tokens, to_device
from hypros_lm.training.divergence import DivergenceGuard
from hypros_lm.training.engine import (
    assign_parameters,
    build_engine,
    init_distributed,
    is_partitioned,
    load_ds_config,
    model_init_context,
    parameter_shapes,
    release_shared_memory_buffers,
    resolve_ds_config,
    set_lr,
    zero_stage,
)
from hypros_lm.training.telemetry import (
    Clock,
    EnergyMeter,
    Stopwatch,
    counting_model_states,
    device_peak_tflops,
    efficiency_record,
    environment,
    full_grad_norm,
    make_loggers,
    print_record,
)
from hypros_lm.training.watchdog import Watchdog


@dataclass(frozen=True)
class RunPlan:
    """What [`check_run()`][hypros_lm.training.loop.check_run] resolved, for `build_run()`: nothing resolved twice."""

    out: Path
    family: TaskFamily
    objective: Objective
    attention: str


def check_run(settings: RunSettings, *, out: Path | None = None) -> RunPlan:
    """Every check that needs no heavy work, and what they resolve; the run folder (``out``, else train.out) is
    created and writable."""
    _, positions = model_dimensions(settings.model)
    if settings.data.seq_len > positions:
        raise InvalidValue(
            f"data.seq_len={settings.data.seq_len} exceeds model {settings.model.name!r}'s "
            f"{positions} positions; lower --seq-len or pick a larger model"
        )
    resolve_ds_config(settings.train.ds_config)
    family = family_for(settings.task.name)
    family.check(data=settings.data, task=settings.task, model=settings.model)
    if settings.train.lm_eval_tasks:
        _check_lm_eval_tasks(settings.train.lm_eval_tasks)
    attention = resolve_attention(settings.model.attention, half_precision=settings.train.precision == "bf16")
    objective = build_objective(settings.loss, settings.train.max_steps)
    if int(os.environ.get("RANK", 0)) == 0:
        for warning in settings_warnings(settings):
            print(f"warning: {warning}", flush=True)
    out = Path(out or settings.train.out)
    ensure_writable(out, "train.out")
    if not settings.train.resume and RunFolder(out).latest() is not None:
        raise FileInTheWay(f"{out} already holds a run with checkpoints; pass --resume to continue it or choose a new --out")
    return RunPlan(out, family, objective, attention)


def _check_lm_eval_tasks(spec: str) -> None:
    unknown = [t for t in parse_task_limits(spec) if t not in OFFLINE_TASKS]
    if unknown and use_offline_copies():
        raise InvalidValue(f"train.lm_eval_tasks: {unknown} have no offline copy; offline tasks: {sorted(OFFLINE_TASKS)}")


@dataclass
class Run:
    settings: RunSettings
    out: Path
    rank: int
    world: int
    data: PreparedData
    engine: Any
    objective: Objective
    family: TaskFamily
    order: BlockOrder
    flops_per_token: int
    peak_tflops: float | None
    energy: EnergyMeter
    guard: DivergenceGuard
    lm_eval: Any = None  # InLoopLmEval when train.lm_eval_tasks is set

    def log(self, msg: str) -> None:
        if self.rank == 0:
            print(msg, flush=True)


def train(settings: RunSettings) -> Path:
    """Run (or resume) a training run (a fine-tune when settings.task.name is set); returns the run folder.

    A watchdog beats a file per rank in the run folder: if another rank's process dies, this one names it
    and stops within a minute (training/watchdog.py) rather than waiting for a collective's timeout."""
    plan = check_run(settings)
    out = plan.out
    rank, _, world = init_distributed()
    watchdog = Watchdog(out / ".heartbeat", rank=rank, world=world, run_id=_launch_id(world),
                        on_lost=lambda r, same_host: release_shared_memory_buffers(r) if same_host else None).start()
    try:
        _train(settings, plan, rank, world)
    except Exception:
        watchdog.explain_failure()  # a collective failing because a peer died: name the rank and stop
        raise
    watchdog.stop(finished=True)
    return out


def _launch_id(world: int) -> str:
    """One id shared by the ranks of this launch (rank 0's, broadcast while every rank is surely alive)."""
    token = [uuid.uuid4().hex]
    if world > 1: dist.broadcast_object_list(token, src=0)  # noqa: E701 - one line: the file is at its limit
    return token[0]


def _train(settings: RunSettings, plan: RunPlan, rank: int, world: int) -> None:
    run, out = build_run(settings, plan, rank, world), plan.out
    start_step, elapsed = _maybe_resume(run)
    loggers = make_loggers(settings, out, resumed_step=start_step if settings.train.resume else None, rank=rank)
    progress = Progress(Clock(elapsed), start_step, (time.perf_counter(), start_step))
    t = settings.train
    if t.eval_at_start and t.eval_every and start_step == 0:
        lam = run.objective.schedule(0)
        _emit(run, loggers, {"step": 0, "tokens": 0, "split": "val", "lambda": lam, **evaluate(run, lam)},
              progress.clock, 0)
    for step in range(start_step + 1, t.max_steps + 1):  # steps are numbered from 1; λ uses step − 1
        if not run_step(run, loggers, step, progress):
            break
    for logger in loggers:
        logger.close()
    dist.barrier()  # every rank is done with the shared-memory all-reduce
    release_shared_memory_buffers(rank)
    run.log(f"done: {out} ({progress.clock.elapsed():.1f}s)")


@dataclass
class Progress:
    """What the loop carries from step to step: the run's clock, where it started, the last log (time, step)."""

    clock: Clock
    start_step: int
    last_log: tuple[float, int]


def run_step(run: Run, loggers: list, step: int, progress: Progress) -> bool:
    """One step of the loop: λ(step), lr(step), the optimizer step, then logging, evaluation and checkpoint where
    due. Returns False where the run stops here (train.stop_at)."""
    settings, t, out = run.settings, run.settings.train, run.out
    tokens_per_step = t.micro_batch_size * settings.data.seq_len * run.world * t.grad_accum
    clock, start_step = progress.clock, progress.start_step
    lam = run.objective.schedule(step - 1)
    o = settings.optim
    lr = learning_rate(step - 1, peak=o.lr, warmup_steps=o.warmup_steps, decay=o.decay, min_ratio=o.min_lr_ratio,
                       total_steps=t.max_steps)
    set_lr(run.engine, lr)
    want_norms = t.component_grad_every > 0 and step % t.component_grad_every == 0
    final = step == t.max_steps or step == t.stop_at
    log_step = step % t.log_every == 0 or final
    sums = train_step(run, step, lam, want_norms, timed=log_step)
    run.guard.observe(step=step, loss=sums.loss, grad_norm=_grad_norm(run.engine, sums))
    evaluates = bool(t.eval_every) and (step % t.eval_every == 0 or final)
    saves = bool(t.save_every and step % t.save_every == 0) or final
    if log_step or evaluates or saves:  # a diverged run stops here, before it is logged, evaluated or saved
        health = run.guard.check()
    if log_step:
        now, (then, then_step) = time.perf_counter(), progress.last_log
        record = _train_record(run, step, sums, health, lam=lam, lr=lr, elapsed_s=clock.elapsed(),
                               tokens_per_s=tokens_per_step * (step - then_step) / (now - then),
                               tokens=tokens_per_step * step)
        progress.last_log = (now, step)
        _emit(run, loggers, record, clock, start_step)
    if evaluates:
        _emit(run, loggers, {"step": step, "tokens": tokens_per_step * step, "split": "val",
                             "lambda": lam, **evaluate(run, lam)}, clock, start_step)
        if run.lm_eval is not None:
            scores = run.lm_eval.evaluate(run.engine, run.data.tokenizer, max_len=settings.data.seq_len,
                                          device=run.engine.device)
            _emit(run, loggers, {"step": step, "tokens": tokens_per_step * step, "split": "lm_eval", **scores},
                  clock, start_step)
        progress.last_log = (time.perf_counter(), step)  # evaluation time is not training throughput
    if saves:
        save_checkpoint(run.engine, RunFolder(out).checkpoints, step,
                        {"elapsed_s": clock.elapsed(), "tokens": tokens_per_step * step}, keep=t.keep_checkpoints)
        progress.last_log = (time.perf_counter(), step)  # nor is checkpoint time
    if step == t.stop_at:
        run.log(f"stopped at step {step} (train.stop_at); continue with --resume")
        return False
    return True


def build_run(settings: RunSettings, plan: RunPlan, rank: int, world: int) -> Run:
    log = print if rank == 0 else (lambda _msg: None)
    ds_config = load_ds_config(settings.train, settings.optim, world, hidden_size=model_dimensions(settings.model)[0])
    family, out, objective = plan.family, plan.out, plan.objective
    data = family.prepare(data=settings.data, task=settings.task, log=log)
    torch.manual_seed(settings.train.seed)
    with model_init_context(ds_config):  # ZeRO-3: partitioned as built, never whole on any rank
        model = build_model(settings.model, data.tokenizer.get_vocab_size(), options=settings.loss.options(),
                            attention=plan.attention)
    family.configure_model(model, data, task=settings.task)
    pretrained = settings.task.init_from or (hf_source(settings.model.name) if is_hf(settings.model.name)
                                             and has_weights(settings.model.name) else None)
    if pretrained:
        _load_initial_weights(model, pretrained, rank)
        log(f"init: weights from {pretrained}")
    else:
        assign_parameters(model, lambda name, shape: initial_value(model.initial_name(name), shape, settings.train.seed),
                          rank=rank)
    log(f"head: {model.check_head()}")  # the patched head against the model's own forward, now that it has weights
    if rank == 0:
        _write_run_files(settings, out, data, world, model)
    log(f"model: {settings.model.name}, {model.num_parameters() / 1e6:.2f}M parameters, "
        f"vocab {model.config.vocab_size}, attention {model.config._attn_implementation}, "
        f"ZeRO stage {zero_stage(ds_config)}, {settings.train.precision}, {world} rank(s)")
    engine = build_engine(model, ds_config, settings.optim)
    log(f"loss: {objective.name} (bounded={objective.bounded}); data: {len(data.train)} train and {len(data.val)} val "
        f"sequences of {settings.data.seq_len} tokens")
    flops = flops_per_token(model, settings.data.seq_len)
    peak, peak_source = device_peak_tflops(settings.train.precision, settings.telemetry.peak_tflops)
    log(f"efficiency: {flops / 1e6:.1f} MFLOP per token (6·N + 12·L·H·Q·T); peak for MFU: "
        f"{f'{peak:g} TFLOP/s, ' if peak else ''}{peak_source}")
    lm_eval = None
    if settings.train.lm_eval_tasks:
        from hypros_lm.evaluation.lm_eval_model import InLoopLmEval  # lm-eval: imported only when asked for

        lm_eval = InLoopLmEval(settings.train.lm_eval_tasks, out / ".lm_eval_tasks", rank=rank, world=world)
        log("lm-eval at each evaluation: " + ", ".join(f"{t} ({n or 'all'} examples)" for t, n in lm_eval.tasks.items()))
    return Run(settings, out, rank, world, data, engine, objective, family, BlockOrder(len(data.train), settings.train.seed),
               flops, peak, EnergyMeter(), DivergenceGuard(engine, partitioned=zero_stage(ds_config) == 3), lm_eval)


def _load_initial_weights(model, init_from: str, rank: int) -> None:
    """Weights of a pretraining run (any ZeRO stage) or an exported Hugging Face folder.

    A partitioned (ZeRO-3) model is written from rank 0 alone, one parameter at a time, so only rank 0
    reads the weights; the size check's verdict is shared so that every rank stops together.
    """
    partitioned = any(is_partitioned(p) for p in model.parameters())
    state = read_weights(init_from) if rank == 0 or not partitioned else None
    error = None
    if state is not None and parameter_shapes(model) != {k: tuple(v.shape) for k, v in state.items()}:
        error = (f"{init_from} holds a model of another architecture, size or vocabulary than "
                 f"model.name; set --model to the pretrained model's")
    if partitioned:
        shared = [error]
        dist.broadcast_object_list(shared, src=0)
        error = shared[0]
    if error:
        raise InvalidValue(error)
    assign_parameters(model, lambda name, _shape: state[name], rank=rank)


def _write_run_files(settings: RunSettings, out: Path, data: PreparedData, world: int, model) -> None:
    save_tokenizer(data.tokenizer, out)
    folder = RunFolder(out)
    if is_hf(settings.model.name):  # the architecture, kept with the run: the hf: source may move or be offline
        hf_config(settings.model.name).to_json_file(str(folder.hf_config_file))
    folder.settings_file.write_text(yaml.safe_dump(settings.to_dict(), sort_keys=False))
    env = {"num_parameters": model.num_parameters(), "non_embedding_parameters": model.num_parameters(embedding=False),
           **environment(world, data.sources)}
    folder.environment_file.write_text(json.dumps(env, indent=2))


def _maybe_resume(run: Run) -> tuple[int, float]:
    if not run.settings.train.resume:
        return 0, 0.0
    resumed = resume_latest(run.engine, RunFolder(run.out), log=run.log)
    if resumed is None:
        run.log(f"resume: no checkpoint in {RunFolder(run.out).checkpoints}, starting fresh")
        return 0, 0.0
    folder, state = resumed
    run.log(f"resume: {folder} (step {state['step']})")
    return state["step"], float(state.get("elapsed_s", 0.0))


def batch_for(run: Run, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's micro-batch of a step, on the host: a pure function of (seed, step, micro, rank)."""
    t = run.settings.train
    first = (((step - 1) * t.grad_accum + micro) * run.world + run.rank) * t.micro_batch_size
    return run.data.train.batch(run.order.indices(first, t.micro_batch_size))


def train_step(run: Run, step: int, lam: float, want_norms: bool, *, timed: bool = False) -> StepSums:
    """One optimizer step over grad_accum micro-batches; ``timed`` (log steps only: each timing is a device sync)
    also measures the seconds and memory [`StepSums`][hypros_lm.training.batches.StepSums] holds for log steps.

    The step's loss is the per-token mean over the whole global batch, whatever its split into micro-batches and
    ranks: each pass's sum of scores is divided by the global batch's scored tokens (``num_items_in_batch``, as
    Hugging Face's Trainer does) and DeepSpeed's own averaging is undone (no division by the accumulation steps,
    a factor ``world`` against its mean over ranks)."""
    sums, tick, accum, device = StepSums(), Stopwatch(timed), run.settings.train.grad_accum, run.engine.device
    batches = [batch_for(run, step, micro) for micro in range(accum)]
    n_items = scored_tokens([y for _, y in batches], ignore_index=run.engine.module.lm.hypros.ignore_index,
                            world=run.world, device=device)
    for micro, (x, y) in enumerate(batches):
        tick.start()
        out = run.engine(to_device(x, device), to_device(y, device), lam, bounded=run.objective.bounded,
                         component_grad_norms=want_norms, num_items_in_batch=n_items, aux_weight=1 / (accum * run.world))
        sums.seconds["forward"] += tick.lap()
        run.engine.backward(out.loss * run.world, scale_wrt_gas=False)
        sums.seconds["backward"] += tick.lap()
        if micro == accum - 1 and run.engine.zero_optimization_stage() == 0:
            sums.grad_norm = full_grad_norm(run.engine.module)  # reduced over ranks by backward
        last = timed and micro == accum - 1
        with counting_model_states(run.engine, sums.held) if last else contextlib.nullcontext():
            run.engine.step()
        sums.seconds["optimizer"] += tick.lap()
        sums.add(out)
    return sums


def _train_record(run: Run, step: int, sums: StepSums, health: dict[str, float], **extra: float) -> dict[str, Any]:
    """The step's record (a sync point: log steps only): its token-weighted means over the global batch, and
    ``health``, the divergence guard's read of the step (loss, gradient and parameter norms)."""
    record: dict[str, Any] = {"step": step, "split": "train", "loss": health["loss"], **sums.means(run.engine.device)}
    record["grad_norm"] = health["grad_norm"] if _grad_norm(run.engine, sums) is not None else None
    record["lambda"] = extra.pop("lam")
    record.update(extra)
    record.update(efficiency_record(run.engine, seconds=sums.seconds, held=sums.held, step=step,
                                    tokens_per_s=record["tokens_per_s"], flops_per_token=run.flops_per_token,
                                    peak_tflops=run.peak_tflops, world=run.world, energy=run.energy,
                                    param_norm=health["param_norm"]))
    return record


def _grad_norm(engine, sums: StepSums) -> torch.Tensor | float | None:
    """The step's gradient norm: DeepSpeed's (ZeRO ≥ 1, or with clipping), else the one measured before the step."""
    norm = engine.get_global_grad_norm()
    return sums.grad_norm if norm is None else norm


def evaluate(run: Run, lam: float) -> dict[str, float]:
    """Every score and calibration metric on a fixed validation slice, sharded over ranks (and what the
    task family adds, e.g. class-level metrics)."""
    t = run.settings.train
    return run.family.evaluate(run.engine, run.data, batches=t.eval_batches, batch_size=t.micro_batch_size, lam=lam,
                               bounded=run.objective.bounded, rank=run.rank, world=run.world, device=run.engine.device)


def _emit(run: Run, loggers: list, record: dict[str, Any], clock: Clock, start_step: int) -> None:
    record.setdefault("elapsed_s", clock.elapsed())
    for logger in loggers:
        logger.log(record)
    if run.rank == 0:
        print_record(record, max_steps=run.settings.train.max_steps, elapsed=clock.elapsed(), start_step=start_step,
                     extra_keys=run.family.console_keys)

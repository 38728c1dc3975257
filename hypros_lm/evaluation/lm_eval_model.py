"""lm-eval inside training: the model being trained (a DeepSpeed engine, any ZeRO stage) as an lm-eval LM.

Shard, not gather: every rank runs lm-eval's evaluator identically (lm-eval sees one process), and this
model hands each rank every world-th request, scores it with the fused per-token pass, and all-gathers
the results. Every rank makes the same number of forward calls (the shortest shard is padded with a
repeat), as ZeRO-3 requires: its forward gathers each layer's shards collectively, so no rank ever holds a
copy of the whole model outside ZeRO. The training's RNG states are restored afterwards, and the data order
is a pure function of the step, so a run with in-loop lm-eval trains exactly as one without.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from lm_eval.api.model import LM
from tokenizers import Tokenizer

from hypros_lm.data.tokenizer import eos_id
from hypros_lm.evaluation.lm import rolling_windows, window_nll
from hypros_lm.evaluation.zeroshot import parse_task_limits, resolve_tasks


class EngineLM(LM):
    """Log-likelihoods (plain and rolling) from the model under training; no generation."""
    def __init__(self, model, tokenizer: Tokenizer, *, max_len: int, device: torch.device, rank: int, world: int):
        super().__init__()
        self.model, self.tok, self.max_len, self._device = model, tokenizer, max_len, device
        self.shard_rank, self.shard_world = rank, world
        self.eos = eos_id(tokenizer)

    def _encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def _pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """As lm-eval's HFLM: trailing spaces go to the continuation; the pair is encoded whole, then split."""
        if not context:
            return [self.eos], self._encode(continuation)
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole, ctx = self._encode(context + continuation), self._encode(context)
        return ctx, whole[len(ctx):]

    @torch.no_grad()
    def _score_pair(self, context: list[int], continuation: list[int]) -> tuple[float, bool]:
        tokens = (context + continuation)[-(self.max_len + 1):]
        inputs = torch.tensor(tokens[:-1], device=self._device)[None]
        targets = torch.tensor(tokens[1:], device=self._device)
        targets[: len(tokens) - 1 - len(continuation)] = -100  # score the continuation only
        scores = self.model(inputs, targets[None], mode="tokens")
        return -float(scores["log"].double().sum()), bool(scores["correct"].all())

    def _sharded(self, items: list[Any], score: Callable[[Any], Any]) -> list[Any]:
        """score(item) for every item, each rank scoring every world-th one (the same count on every rank)."""
        mine = list(range(self.shard_rank, len(items), self.shard_world))
        per_rank = -(-len(items) // self.shard_world)
        results = [score(items[i]) for i in mine]
        for _ in range(per_rank - len(mine)):  # equal forward counts: ZeRO-3 gathers collectively
            score(items[0])
        if self.shard_world == 1:
            return results
        gathered: list[list[Any]] = [None] * self.shard_world  # type: ignore[list-item]
        dist.all_gather_object(gathered, results)
        out: list[Any] = [None] * len(items)
        for r, part in enumerate(gathered):
            for i, value in zip(range(r, len(items), self.shard_world), part, strict=True):
                out[i] = value
        return out

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [self._pair(*req.args) for req in requests]
        return self._sharded(pairs, lambda pair: self._score_pair(*pair))

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Shared out window by window (texts differ in length, ranks must not differ in forward calls)."""
        owners, windows = [], []
        for n, req in enumerate(requests):
            text_windows = rolling_windows(self._encode(req.args[0]), prefix_id=self.eos, max_len=self.max_len)
            owners += [n] * len(text_windows)
            windows += text_windows
        nll = self._sharded(windows, lambda w: float(window_nll(self.model, w, self._device).sum()))
        totals = [0.0] * len(requests)
        for owner, value in zip(owners, nll, strict=True):
            totals[owner] -= value
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        raise NotImplementedError("in-loop lm-eval runs log-likelihood tasks only; generation tasks run with eval/zeroshot.py")


@contextlib.contextmanager
def _as_local_rank_0():
    """lm-eval reads LOCAL_RANK to pick its share of the documents under tensor-parallel launchers (and to
    decide who returns results); here every rank must build the same requests, so it sees 0 meanwhile."""
    saved = os.environ.get("LOCAL_RANK")
    os.environ["LOCAL_RANK"] = "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("LOCAL_RANK", None)
        else:
            os.environ["LOCAL_RANK"] = saved


class InLoopLmEval:
    """The lm-eval tasks of a run, evaluated at its evaluation steps."""
    def __init__(self, spec: str, folder: Path, *, rank: int, world: int):
        from lm_eval.tasks import TaskManager

        self.limits = parse_task_limits(spec)
        names, self.described = resolve_tasks(list(self.limits), folder / f"rank{rank}")  # no two ranks write one file
        self.tasks = dict(zip(names, self.limits.values(), strict=True))
        self.manager = TaskManager(include_path=str(folder / f"rank{rank}"), verbosity="ERROR")
        self.rank, self.world = rank, world

    def evaluate(self, model, tokenizer: Tokenizer, *, max_len: int, device: torch.device) -> dict[str, float]:
        """{'lm_eval/<task>/<metric>': value} (stderr too), the same on every rank; the RNG states are as
        they were before."""
        import lm_eval

        states = random.getstate(), np.random.get_state(), torch.get_rng_state()
        cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        was_training = model.training
        model.eval()
        lm = EngineLM(model, tokenizer, max_len=max_len, device=device, rank=self.rank, world=self.world)
        record: dict[str, float] = {}
        try:
            for task, limit in self.tasks.items():
                with _as_local_rank_0():
                    out = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=self.manager, limit=limit,
                                                  bootstrap_iters=100, log_samples=False, verbosity="ERROR")
                for key, value in out["results"][task].items():
                    if isinstance(value, (int, float)) and key not in ("sample_len",):
                        record[f"lm_eval/{task}/{key.split(',')[0]}"] = float(value)
        finally:
            model.train(was_training)
            random.setstate(states[0])
            np.random.set_state(states[1])
            torch.set_rng_state(states[2])
            if cuda_states is not None:
                torch.cuda.set_rng_state_all(cuda_states)
        return record

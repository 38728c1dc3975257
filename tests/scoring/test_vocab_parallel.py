"""The vocab-parallel head (``process_group=``) on 2 and 3 CPU ranks over gloo: the head's rows split in uneven blocks
(V = 1001), the loss, every component, ∂h and each rank's ∂W and ∂b rows equal the single-process fused head's and
the float64 reference's; bf16 within the single-rank bf16 error; bad input refused on every rank with the same line,
after which the group still works (no rank was left waiting in a collective)."""

from __future__ import annotations

import datetime

import pytest
import torch
import torch.distributed as dist

from hypros_lm.errors import InvalidValue
from hypros_lm.scoring.api import LinearScoringLoss, linear_scoring_loss
from hypros_lm.scoring.fused import ScoringOptions, fused_linear_score
from hypros_lm.scoring.reference import naive_linear_score

N, D, V = 48, 16, 1001
TOL = 2e-5
CASES = {
    "hypros-brier, bias, logit scale": dict(lam=0.3, bounded="brier", bias=True, logit_scale=1.5),
    "power-3, label smoothing, z-loss, soft-cap": dict(lam=0.6, bounded="power", alpha=3.0, softcap=5.0,
                                                         options=ScoringOptions(label_smoothing=0.1, z_loss=1e-3)),
    "spherical, sum, ignored targets": dict(lam=1.0, bounded="spherical", reduction="sum"),
    "per token, several blocks a rank": dict(lam=0.5, reduction="none", vocab_block_size=128),
    "items in batch, recomputed in backward": dict(lam=0.7, num_items_in_batch=100, grad_in_forward=False),
    "score smoothing, component norms": dict(lam=0.4, component_grad_norms=True,
                                             options=ScoringOptions(score_smoothing=0.1, chunk_size=20)),
}


def _inputs(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, D, generator=g, dtype=torch.float64)
    w = torch.randn(V, D, generator=g, dtype=torch.float64) / D**0.5
    b = torch.randn(V, generator=g, dtype=torch.float64) * 0.1
    t = torch.randint(0, V, (N,), generator=g)
    t[::7] = -100
    return h.to(dtype), w.to(dtype), b.to(dtype), t


def _split(sizes: tuple[int, ...], rank: int) -> slice:
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def _run(h, w, b, t, case: dict, **extra):
    """(out, ∂h, ∂W, ∂b) of one pass of the fused head with leaves made of h, w and b."""
    kw = dict(case)
    use_bias = kw.pop("bias", False)
    h, w = h.clone().requires_grad_(), w.clone().requires_grad_()
    b = b.clone().requires_grad_() if use_bias else None
    out = fused_linear_score(h, w, t, bias=b, **kw, **extra)
    (out.loss.sum() if kw.get("reduction") == "none" else out.loss).backward()
    return out, h.grad, w.grad, None if b is None else b.grad


def _close(got, want, what: str, tol: float = TOL) -> None:
    torch.testing.assert_close(got.double(), want.double(), rtol=tol, atol=tol, msg=what)


def _compare(name: str, case: dict, sizes: tuple[int, ...], rank: int, group) -> None:
    h, w, b, t = _inputs()
    rows = _split(sizes, rank)
    out, gh, gw, gb = _run(h, w[rows], b[rows], t, case, process_group=group)
    ref, rh, rw, rb = _run(h, w, b, t, case)
    for key in ("loss", "log", "bounded", "accuracy", "entropy", "n_tokens", "z_loss", "grad_norm_log",
                "grad_norm_bounded"):
        if getattr(ref, key) is not None:
            _close(getattr(out, key), getattr(ref, key), f"{name}: {key}")
    for key in ref.scores:
        _close(out.scores[key], ref.scores[key], f"{name}: {key}")
    _close(gh, rh, f"{name}: ∂h")
    _close(gw, rw[rows], f"{name}: ∂W rows {rows}")
    if rb is not None:
        _close(gb, rb[rows], f"{name}: ∂b")
    if case.get("reduction") in (None, "mean") and "num_items_in_batch" not in case:  # the float64 reference too
        naive = naive_linear_score(h, w, t, case["lam"], case.get("bounded", "brier"), alpha=case.get("alpha"),
                                   bias=b if case.get("bias") else None, logit_scale=case.get("logit_scale", 1.0),
                                   softcap=case.get("softcap"), dtype=torch.float64,
                                   **_naive_options(case.get("options")))
        if not case.get("options") or not case["options"].score_smoothing:
            _close(out.loss, naive["loss"], f"{name}: loss against float64")


def _naive_options(options: ScoringOptions | None) -> dict:
    return {} if options is None else {"label_smoothing": options.label_smoothing, "z_loss": options.z_loss}


def _ties(sizes: tuple[int, ...], rank: int, group) -> None:
    """Three equal rows, on the first, second and last ranks, give every token its largest logit: the argmax is the
    first of them over the whole vocabulary, as in one process. Two targets in three are the first tied row (a hit),
    the third the last (a miss at the tie), so the accuracy and the calibration bins say which row was taken. Small whole
    numbers make every logit exact, so the ranks' matmuls of different shapes tie exactly as one matmul does."""
    g = torch.Generator().manual_seed(1)
    h = torch.randint(-2, 3, (N, D), generator=g).float()
    w = torch.randint(-1, 2, (V, D), generator=g).float()
    h[:, 0], w[:, 0] = 40.0, 0.0  # a component every token shares, which only the tied rows read
    for row in (0, sizes[0], V - 1):
        w[row] = 0.0
        w[row, 0] = 1.0  # logit 40, against at most 2·(D − 1) = 30 elsewhere: the tied rows are the maximum
    t = torch.where(torch.arange(N) % 3 == 2, V - 1, 0)
    rows = _split(sizes, rank)
    with torch.no_grad():
        out = fused_linear_score(h, w[rows], t, lam=0.5, calibration_bins=10, process_group=group)
        ref = fused_linear_score(h, w, t, lam=0.5, calibration_bins=10)
    assert ref.accuracy == pytest.approx(2 / 3)  # the first maximum: the targets of row 0
    _close(out.accuracy, ref.accuracy, "accuracy at ties")
    _close(out.calibration, ref.calibration, "calibration bins at ties")


def _api(sizes: tuple[int, ...], rank: int, group) -> None:
    """The same keyword through the loss API and the module."""
    h, w, _, t = _inputs()
    rows = _split(sizes, rank)
    whole = linear_scoring_loss(h, w, t, score="hypros", lam=0.3, bounded="spherical")
    _close(linear_scoring_loss(h, w[rows], t, score="hypros", lam=0.3, bounded="spherical", process_group=group),
           whole, "linear_scoring_loss")
    module = LinearScoringLoss("hypros", lam=0.3, bounded="spherical", process_group=group, shard_sizes=list(sizes))
    _close(module(h, w[rows], t), whole, "LinearScoringLoss")


def _bf16(sizes: tuple[int, ...], rank: int, group) -> None:
    h, w, _, t = _inputs(torch.bfloat16)
    rows = _split(sizes, rank)
    case = dict(lam=0.3)
    out, gh, _, _ = _run(h, w[rows], None, t, case, process_group=group)
    one, oh, _, _ = _run(h, w, None, t, case)
    exact, eh, _, _ = _run(h.double(), w.double(), None, t, case)
    assert abs(out.loss.double() - exact.loss) <= 2 * abs(one.loss.double() - exact.loss) + 1e-3
    assert (gh.double() - eh).abs().max() <= 2 * (oh.double() - eh).abs().max() + 1e-3


def _refused(sizes: tuple[int, ...], rank: int, group) -> list[str]:
    """Each bad input raises on every rank; the group still works after it (the next call)."""
    h, w, _, t = _inputs()
    rows = _split(sizes, rank)
    bad = {
        "shard sizes": dict(w=w[rows], kw=dict(shard_sizes=[V - 1, *sizes[1:]])),
        "target id": dict(w=w[rows], t=torch.full_like(t, V)),
        "dtype": dict(w=w[rows].double() if rank == 1 else w[rows]),
        "tokens": dict(w=w[rows], h=h[:-1] if rank == 0 else h, t=t[:-1] if rank == 0 else t),
    }
    messages = []
    for what, spec in bad.items():
        with pytest.raises(InvalidValue) as err:
            fused_linear_score(spec.get("h", h), spec["w"], spec.get("t", t), lam=0.5, process_group=group,
                               **spec.get("kw", {}))
        messages.append(f"{what}: {err.value}")
        fused_linear_score(h, w[rows], t, lam=0.5, process_group=group)  # nobody is left inside a collective
    return messages


def _worker(rank: int, world: int, store: str, sizes: tuple[int, ...], result: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        group = dist.group.WORLD
        for name, case in CASES.items():
            _compare(name, case, sizes, rank, group)
        _ties(sizes, rank, group)
        _api(sizes, rank, group)
        _bf16(sizes, rank, group)
        messages = _refused(sizes, rank, group)
        with open(f"{result}.{rank}", "w") as f:
            f.write("\n".join(messages))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("sizes", [(500, 501), (334, 333, 334), (1, 999, 1)], ids=["2 ranks", "3 ranks", "uneven"])
def test_the_vocab_parallel_head_equals_the_whole_head(tmp_path, sizes):
    result = tmp_path / "refused"
    torch.multiprocessing.spawn(_worker, args=(len(sizes), str(tmp_path / "store"), sizes, str(result)),
                                nprocs=len(sizes), join=True)
    said = [(tmp_path / f"refused.{r}").read_text().splitlines() for r in range(len(sizes))]
    assert all(lines == said[0] for lines in said), "every rank refuses with the same line"
    refused = dict(line.split(": ", 1) for line in said[0])
    assert f"do not tile the vocabulary as the ranks hold it: the ranks hold {list(sizes)} rows" in refused["shard sizes"]
    assert refused["target id"].startswith(f"target id {V} is outside the vocabulary [0, {V})")
    assert "the same dtype on every rank of the group: rank 1 has torch.float64" in refused["dtype"]
    assert f"the same number of tokens on every rank of the group: rank 1 has {N}, rank 0 has {N - 1}" in refused["tokens"]

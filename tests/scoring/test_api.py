"""The public loss API: the new kernel options (bias, logit scale, soft-cap, z-loss, reductions,
num_items_in_batch) against the naive float64 reference, and the function, module and schedule."""

from __future__ import annotations

import pytest
import torch

from hypros_lm import LambdaSchedule, LinearScoringLoss, linear_scoring_loss
from hypros_lm.scoring import ScoringOptions, fused_linear_score, naive_linear_score

# (N, d, V, chunk, vocab block): one block and several blocks (the second walk recomputes logits)
SHAPES = [(29, 8, 41, 8, None), (50, 6, 70, 16, 32)]
OPTIONS = [
    dict(bias=True),
    dict(softcap=3.0),
    dict(logit_scale=0.7, softcap=2.0, bias=True),
    dict(z_loss=1e-2),
    dict(label_smoothing=0.1, z_loss=1e-3, bias=True),
]


def _inputs(n, d, v, *, bias=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, dtype=torch.float64, generator=g).requires_grad_()
    w = torch.randn(v, d, dtype=torch.float64, generator=g).requires_grad_()
    b = torch.randn(v, dtype=torch.float64, generator=g).requires_grad_() if bias else None
    t = torch.randint(0, v, (n,), generator=g)
    t[::5] = -100
    return h, w, b, t


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("bounded", ["brier", "spherical"])
@pytest.mark.parametrize("grad_in_forward", [True, False])
def test_options_match_the_float64_reference(shape, options, bounded, grad_in_forward):
    n, d, v, chunk, block = shape
    opts = dict(options)
    h, w, b, t = _inputs(n, d, v, bias=opts.pop("bias", False))
    head = {k: opts.pop(k) for k in ("z_loss", "label_smoothing") if k in opts}  # the head's options, passed whole
    out = fused_linear_score(h, w, t, lam=0.4, bounded=bounded, bias=b, options=ScoringOptions(chunk_size=chunk, **head),
                             vocab_block_size=block, grad_in_forward=grad_in_forward, **opts)
    ref = naive_linear_score(h, w, t, 0.4, bounded, bias=b, **opts, **head)
    leaves = [x for x in (h, w, b) if x is not None]
    got = torch.autograd.grad(out.loss, leaves)
    want = torch.autograd.grad(ref["loss"], leaves)
    assert out.loss.item() == pytest.approx(ref["loss"].item(), rel=1e-12)
    for key in ("log", "brier", "spherical", "entropy", "accuracy"):
        assert out.mean(key).item() == pytest.approx(ref[key].item(), rel=1e-12, abs=1e-14), key
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-13)


def test_gradcheck_with_bias_and_softcap():
    h, w, b, t = _inputs(9, 4, 11, bias=True, seed=1)
    for gif in (True, False):
        def fn(h_, w_, b_, gif=gif):
            return fused_linear_score(h_, w_, t, lam=0.3, bias=b_, softcap=2.5, logit_scale=1.3, vocab_block_size=5,
                                      options=ScoringOptions(z_loss=0.05, chunk_size=4), grad_in_forward=gif).loss
        assert torch.autograd.gradcheck(fn, (h, w, b))


@pytest.mark.parametrize("shape", SHAPES)
def test_reduction_none_gives_the_per_token_reference_and_its_gradients(shape):
    n, d, v, chunk, block = shape
    h, w, _, t = _inputs(n, d, v)
    per_token = linear_scoring_loss(h, w, t, score="hypros", lam=0.6, reduction="none", z_loss=1e-2,
                                    chunk_size=chunk)
    ref = naive_linear_score(h, w, t, 0.6, "brier", z_loss=1e-2)
    assert per_token.shape == (n,)
    torch.testing.assert_close(per_token, ref["per_token"], rtol=1e-12, atol=1e-14)
    assert (per_token[t == -100] == 0).all()
    upstream = torch.rand(n, dtype=torch.float64)  # any weighting of the tokens
    got = torch.autograd.grad((per_token * upstream).sum(), (h, w))
    want = torch.autograd.grad((ref["per_token"] * upstream).sum(), (h, w))
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-13)


def test_sum_and_num_items_in_batch_reductions():
    h, w, _, t = _inputs(40, 6, 30)
    n_valid = int((t != -100).sum())
    mean = linear_scoring_loss(h, w, t, score="brier")
    total = linear_scoring_loss(h, w, t, score="brier", reduction="sum")
    by_items = linear_scoring_loss(h, w, t, score="brier", num_items_in_batch=torch.tensor(100))
    assert total.item() == pytest.approx(mean.item() * n_valid, rel=1e-12)
    assert by_items.item() == pytest.approx(total.item() / 100, rel=1e-12)
    g_items = torch.autograd.grad(by_items, (h,))[0]
    g_total = torch.autograd.grad(total, (h,))[0]
    torch.testing.assert_close(g_items * 100, g_total)


def test_scores_and_components():
    h, w, _, t = _inputs(30, 6, 25)
    ref = {lam: naive_linear_score(h, w, t, lam, "spherical") for lam in (0.0, 1.0)}
    assert linear_scoring_loss(h, w, t, score="log").item() == pytest.approx(ref[0.0]["loss"].item(), rel=1e-12)
    loss, parts = linear_scoring_loss(h, w, t, score="spherical", return_components=True)
    assert loss.item() == pytest.approx(ref[1.0]["loss"].item(), rel=1e-12)
    assert parts["log"].item() == pytest.approx(ref[0.0]["log"].item(), rel=1e-12)
    assert parts["n_tokens"].item() == int((t != -100).sum())
    assert not parts["brier"].requires_grad


def test_bad_arguments_name_the_value_and_the_fix():
    h, w, _, t = _inputs(8, 4, 9)
    with pytest.raises(ValueError, match="give lam="):
        linear_scoring_loss(h, w, t, score="hypros")
    with pytest.raises(ValueError, match="score='hypros-linear' is not known"):
        linear_scoring_loss(h, w, t, score="hypros-linear", lam=0.1)
    with pytest.raises(ValueError, match="score='brier' is λ = 1.0"):
        linear_scoring_loss(h, w, t, score="brier", lam=0.5)
    with pytest.raises(ValueError, match="reduction='avg'"):
        linear_scoring_loss(h, w, t, score="log", reduction="avg")
    with pytest.raises(ValueError, match="bias has shape"):
        linear_scoring_loss(h, w, t, score="log", bias=torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="empty: under ZeRO-3"):
        linear_scoring_loss(h, torch.empty(0, 4, dtype=torch.float64), t, score="log")


def test_schedule_is_the_hypros_sigmoid_and_the_module_follows_it():
    sched = LambdaSchedule("hypros", total_steps=1000)
    for step in (0, 150, 300, 700, 1000):
        assert sched(step) == pytest.approx(1 / (1 + torch.e ** (-(step - 300) / 100)), rel=1e-12)
    assert LambdaSchedule("log-then-brier", total_steps=10, switch=0.4)(4) == 1.0
    assert LambdaSchedule("hypros-spherical", total_steps=10).bounded.key == "spherical"
    assert LambdaSchedule("hypros", total_steps=10, bounded="power", alpha=3).bounded.key == "power-3"
    with pytest.raises(ValueError, match="unknown schedule parameter"):
        LambdaSchedule("hypros", total_steps=10, T0=0.3)

    h, w, _, t = _inputs(20, 5, 17)
    loss_fn = LinearScoringLoss(schedule=sched)
    got = loss_fn(h, w, t, step=400)
    want = naive_linear_score(h, w, t, sched(400), "brier")["loss"]
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    assert set(loss_fn.last_components) >= {"log", "brier", "spherical", "entropy", "accuracy"}
    with pytest.raises(ValueError, match="pass step="):
        loss_fn(h, w, t)


@pytest.mark.parametrize(("options", "message"), [
    (dict(score="hypros", lam=-0.2), r"lam=-0.2 must lie in \[0, 1\]"),
    (dict(score="hypros", lam=3.0), r"lam=3.0 must lie in \[0, 1\]"),
    (dict(z_loss=-1e-4), r"z_loss=-0.0001 must be a finite coefficient ≥ 0"),
    (dict(z_loss=float("inf")), r"z_loss=inf must be a finite coefficient ≥ 0"),
    (dict(softcap=0.0), r"softcap=0.0 must be positive \(or None for no soft-capping\)"),
    (dict(softcap=-30.0), r"softcap=-30.0 must be positive"),
    (dict(chunk_size=0), r"chunk_size=0 must be a whole number of tokens ≥ 1"),
    (dict(chunk_size=2.5), r"chunk_size=2.5 must be a whole number of tokens ≥ 1"),
    (dict(num_items_in_batch=0), r"num_items_in_batch=0 must be positive: .*which holds 23 here"),
    (dict(num_items_in_batch=torch.tensor(-4)), r"num_items_in_batch=-4 must be positive"),
])
def test_bad_option_values_are_named_with_their_range(options, message):
    h, w, _, t = _inputs(29, 8, 41)
    options = {"score": "brier", **options}
    with pytest.raises(ValueError, match=message):
        linear_scoring_loss(h, w, t, **options)


def test_an_item_count_of_zero_is_accepted_where_nothing_is_scored():
    h, w, _, t = _inputs(29, 8, 41)
    loss = linear_scoring_loss(h, w, torch.full_like(t, -100), score="brier", num_items_in_batch=0)
    assert loss.item() == 0.0

"""The score registry: each family member fused equals its float64 definition on full logits (value and gradient),
the α = 2 members are today's Brier and spherical scores, α → 1 tends to the log score, every registered score
is strictly proper and stays inside its bounds."""

from __future__ import annotations

import pytest
import torch

from hypros_lm.scoring import ScoringOptions, fused_linear_score, naive_token_scores
from hypros_lm.scoring.scores import ALIASES, FAMILIES, REPORTED, bounded_score, smoothed_reference

ALPHAS = (1.5, 2.0, 3.0)
MEMBERS = [(family, alpha) for family in FAMILIES for alpha in ALPHAS]


def _inputs(n=45, d=6, v=37, *, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = (torch.randn(n, d, generator=g, dtype=torch.float64) * 1.3).requires_grad_()
    w = (torch.randn(v, d, generator=g, dtype=torch.float64) * 1.3).requires_grad_()
    b = (torch.randn(v, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    t[::6] = -100
    return h, w, b, t


def _full_logits(h, w, b, *, softcap=None):
    z = h @ w.T + b
    return z if softcap is None else softcap * torch.tanh(z / softcap)


@pytest.mark.parametrize(("family", "alpha"), MEMBERS)
@pytest.mark.parametrize("layout", ["one block", "blocks+softcap"])
def test_each_member_fused_equals_its_definition_on_full_logits(family, alpha, layout):
    h, w, b, t = _inputs()
    score = bounded_score(family, alpha)
    block, softcap = (None, None) if layout == "one block" else (10, 2.5)
    out = fused_linear_score(h, w, t, lam=1.0, bounded=family, alpha=alpha, bias=b, softcap=softcap,
                             options=ScoringOptions(chunk_size=16), vocab_block_size=block)
    got = torch.autograd.grad(out.loss, (h, w, b))

    valid = t != -100
    per_token = score.reference(_full_logits(h, w, b, softcap=softcap)[valid], t[valid])
    want_loss = per_token.mean()
    want = torch.autograd.grad(want_loss, (h, w, b))
    assert out.loss.item() == pytest.approx(want_loss.item(), rel=1e-10)
    assert out.scores[score.key].item() == pytest.approx(want_loss.item(), rel=1e-10)
    for g_fused, g_ref in zip(got, want, strict=True):
        torch.testing.assert_close(g_fused, g_ref, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(("family", "alpha"), [("power", 1.5), ("pseudo-spherical", 3.0)])
def test_the_fused_gradient_passes_gradcheck(family, alpha):
    h, w, b, t = _inputs(n=9, d=3, v=7, seed=1)

    def loss(h, w, b):
        return fused_linear_score(h, w, t, lam=0.6, bounded=family, alpha=alpha, bias=b, softcap=3.0,
                                  grad_in_forward=False).loss

    assert torch.autograd.gradcheck(loss, (h, w, b))


def test_the_order_2_members_are_brier_and_spherical():
    h, w, b, t = _inputs()
    logits = _full_logits(h, w, b).detach()[t != -100]
    targets = t[t != -100]
    literal = naive_token_scores(logits, targets)
    for name, (family, alpha) in ALIASES.items():
        assert bounded_score(family, alpha) == bounded_score(name) and bounded_score(name).key == name
        torch.testing.assert_close(FAMILIES[family](alpha).reference(logits, targets), literal[name], rtol=1e-12, atol=0)
        by_family = fused_linear_score(h, w, t, lam=0.4, bounded=family, alpha=alpha, bias=b)
        by_name = fused_linear_score(h, w, t, lam=0.4, bounded=name, bias=b)
        assert by_family.loss.item() == by_name.loss.item()  # the same member, the same numbers


FIRST_ORDER = {  # ℓ_α = L + (α − 1)·c + O((α − 1)²) per token, L = −log p_y, H the entropy
    "power": lambda L, H: L - L * L / 2 - H,
    "pseudo-spherical": lambda L, H: -L * L / 2 - H,
}


@pytest.mark.parametrize("family", FAMILIES)
def test_as_alpha_tends_to_1_each_family_tends_to_the_log_score(family):
    """(ℓ_α − log)/(α − 1) tends to the first-order coefficient of the expansion in α − 1."""
    h, w, b, t = _inputs()
    valid = t != -100
    tokens = naive_token_scores(_full_logits(h, w, b).detach()[valid], t[valid])
    coefficient = float(FIRST_ORDER[family](tokens["log"], tokens["entropy"]).mean())
    log = float(tokens["log"].mean())
    for alpha, tolerance in ((1.001, 2e-2), (1.0001, 2e-3)):
        value = fused_linear_score(h, w, t, lam=1.0, bounded=family, alpha=alpha, bias=b).loss.item()
        assert (value - log) / (alpha - 1) == pytest.approx(coefficient, rel=tolerance)


@pytest.mark.parametrize("score", [*REPORTED, *(FAMILIES[f](a) for f, a in MEMBERS)], ids=str)
def test_every_registered_score_is_strictly_proper_and_bounded(score):
    """For Dirichlet q, E_{y∼q} ℓ(p, y) is least at p = q: every perturbation of q scores worse."""
    g = torch.Generator().manual_seed(2)
    v = 6
    outcomes = torch.arange(v)
    for _ in range(20):
        q = torch.distributions.Dirichlet(torch.ones(v, dtype=torch.float64)).sample()

        def expected(p, q=q):
            logits = torch.log(p).expand(v, v)
            return float((score.reference(logits, outcomes) * q).sum())

        at_q = expected(q)
        for scale in (1e-3, 0.1, 1.0):
            p = torch.softmax(torch.log(q) + scale * torch.randn(v, generator=g, dtype=torch.float64), 0)
            assert expected(p) > at_q
    lo, hi = score.bounds
    logits = torch.randn(200, v, generator=g, dtype=torch.float64) * 4
    values = score.reference(logits, torch.randint(0, v, (200,), generator=g))
    assert lo <= float(values.min()) and float(values.max()) <= hi
    certain = torch.tensor([[400.0, 0, 0]], dtype=torch.float64)  # all mass on outcome 0
    assert float(score.reference(certain, torch.tensor([0]))) == pytest.approx(lo, abs=1e-12)
    assert float(score.reference(certain, torch.tensor([1]))) == pytest.approx(hi, rel=1e-9)


def test_a_bad_score_or_order_is_named_with_the_fix():
    with pytest.raises(ValueError, match=r"alpha=1.0: the pseudo-spherical score is strictly proper for every finite"):
        bounded_score("pseudo-spherical", 1)
    with pytest.raises(ValueError, match=r"bounded='spherical' is the pseudo-spherical score at α = 2; for α = 3"):
        fused_linear_score(*_inputs()[:2], _inputs()[3], lam=0.5, bounded="spherical", alpha=3)
    with pytest.raises(ValueError, match=r"bounded='logarithmic' is not a registered score"):
        bounded_score("logarithmic")


def _shao_smoothed(logits, targets, epsilon, rule):
    """Shao et al.'s score smoothing as their fairseq criterion writes it on full probabilities (their Brier and
    spherical losses lack our constant 1, added here)."""
    p = torch.softmax(logits, -1)
    v = p.shape[-1]
    p_y = p.gather(1, targets[:, None]).squeeze(1)
    penalty = -epsilon * (torch.log(p) * (p < epsilon / v)).mean(-1)
    if rule == "brier":
        quadratic = (p ** 2).sum(-1)
        scored, uniform = quadratic - 2 * p_y, quadratic - 2 * p.mean(-1)
    else:
        norm = p.norm(dim=-1)
        scored, uniform = -p_y / norm, -(1 / v) / norm
    return 1 + (1 - epsilon) * scored + epsilon * uniform + penalty


@pytest.mark.parametrize("rule", list(ALIASES))
@pytest.mark.parametrize("block", [None, 10])
def test_score_smoothing_is_shao_et_al_s_formula(rule, block):
    h, w, b, t = _inputs(v=40)
    epsilon = 0.4
    out = fused_linear_score(h, w, t, lam=1.0, bounded=rule, bias=b, vocab_block_size=block,
                             options=ScoringOptions(chunk_size=16, score_smoothing=epsilon))
    got = torch.autograd.grad(out.loss, (h, w, b))
    valid = t != -100
    logits = _full_logits(h, w, b)[valid]
    assert bool((torch.softmax(logits, -1) < epsilon / 40).any())  # the penalty is in play
    want_loss = _shao_smoothed(logits, t[valid], epsilon, rule).mean()
    want = torch.autograd.grad(want_loss, (h, w, b))
    assert out.loss.item() == pytest.approx(want_loss.item(), rel=1e-10)
    for g_fused, g_ref in zip(got, want, strict=True):
        torch.testing.assert_close(g_fused, g_ref, rtol=1e-10, atol=1e-13)
    unsmoothed = fused_linear_score(h, w, t, lam=1.0, bounded=rule, bias=b)
    assert out.scores[rule].item() == pytest.approx(unsmoothed.scores[rule].item(), rel=1e-12)  # reported as it is


@pytest.mark.parametrize(("family", "alpha"), [("power", 1.5), ("pseudo-spherical", 3.0)])
def test_score_smoothing_of_a_family_member_in_a_hybrid(family, alpha):
    """(1 − λ)·log + λ·smoothed ℓ_α against the smoothing's definition with every target's score."""
    h, w, b, t = _inputs(v=30)
    out = fused_linear_score(h, w, t, lam=0.6, bounded=family, alpha=alpha, bias=b, softcap=2.5,
                             options=ScoringOptions(chunk_size=16, score_smoothing=0.2), vocab_block_size=7)
    got = torch.autograd.grad(out.loss, (h, w, b))
    valid = t != -100
    logits = _full_logits(h, w, b, softcap=2.5)[valid]
    smoothed = smoothed_reference(bounded_score(family, alpha), logits, t[valid], 0.2)
    want_loss = (0.4 * torch.nn.functional.cross_entropy(logits, t[valid], reduction="none") + 0.6 * smoothed).mean()
    want = torch.autograd.grad(want_loss, (h, w, b))
    assert out.loss.item() == pytest.approx(want_loss.item(), rel=1e-10)
    for g_fused, g_ref in zip(got, want, strict=True):
        torch.testing.assert_close(g_fused, g_ref, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(("family", "alpha"), [("power", 1.5), ("power", 3.0), ("pseudo-spherical", 1.01)])
def test_float32_members_follow_their_float64_selves(family, alpha):
    """fp32 hidden states and weight (the CPU training dtype): the value to fp32 rounding, the gradients to 1e-5."""
    g = torch.Generator().manual_seed(3)
    h = (torch.randn(200, 32, generator=g) * 2).requires_grad_()
    w = (torch.randn(700, 32, generator=g) * 0.7).requires_grad_()
    t = torch.randint(0, 700, (200,), generator=g)
    options = ScoringOptions(chunk_size=64, score_smoothing=0.1)
    out = fused_linear_score(h, w, t, lam=0.8, bounded=family, alpha=alpha, options=options)
    got = torch.autograd.grad(out.loss, (h, w))
    h64, w64 = (x.detach().double().requires_grad_() for x in (h, w))
    ref = fused_linear_score(h64, w64, t, lam=0.8, bounded=family, alpha=alpha, options=options)
    want = torch.autograd.grad(ref.loss, (h64, w64))
    assert out.loss.item() == pytest.approx(ref.loss.item(), rel=1e-6)
    for g32, g64 in zip(got, want, strict=True):
        assert float((g32.double() - g64).norm() / g64.norm()) < 1e-5

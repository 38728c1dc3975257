"""The fused, chunked scoring kernel against the naive float64 reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hypros_lm.scoring import ScoringOptions, fused_linear_score, naive_linear_score

# (N, d, V, chunk_size, vocab_block_size): V divisible by the block and not, odd shapes, one block
SHAPES = [
    (37, 16, 53, 8, None),
    (252, 24, 507, 64, 123),
    (64, 8, 96, 16, 32),
]
LAMBDAS = [0.0, 0.3, 1.0]


def _inputs(n, d, v, dtype, ignore_every=5, scale=1.0):
    h = (torch.randn(n, d, dtype=torch.float64) * scale).to(dtype).requires_grad_()
    w = (torch.randn(v, d, dtype=torch.float64) * scale).to(dtype).requires_grad_()
    t = torch.randint(0, v, (n,))
    t[::ignore_every] = -100
    return h, w, t


def _reference(h, w, t, lam, bounded, **kw):
    h64 = h.detach().double().requires_grad_()
    w64 = w.detach().double().requires_grad_()
    ref = naive_linear_score(h64, w64, t, lam, bounded, dtype=torch.float64, **kw)
    gh, gw = torch.autograd.grad(ref["loss"], (h64, w64))
    return ref, gh, gw


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("lam", LAMBDAS)
@pytest.mark.parametrize("bounded", ["brier", "spherical"])
def test_float32_matches_float64_reference(shape, lam, bounded):
    n, d, v, chunk, block = shape
    h, w, t = _inputs(n, d, v, torch.float32)
    out = fused_linear_score(h, w, t, lam=lam, bounded=bounded, options=ScoringOptions(chunk_size=chunk), vocab_block_size=block)
    gh, gw = torch.autograd.grad(out.loss, (h, w))
    ref, rh, rw = _reference(h, w, t, lam, bounded)
    for key in ("log", "brier", "spherical", "entropy", "accuracy"):
        assert out.mean(key).double().item() == pytest.approx(ref[key].item(), abs=2e-5), key
    assert out.loss.item() == pytest.approx(ref["loss"].item(), abs=2e-5)
    torch.testing.assert_close(gh.double(), rh, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(gw.double(), rw, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("lam", LAMBDAS)
@pytest.mark.parametrize("bounded", ["brier", "spherical"])
def test_bfloat16_error_within_naive_bfloat16_error(lam, bounded):
    """bf16 inputs: error against the fp64 truth no worse than a naive bf16 computation's, plus slack."""
    n, d, v = 252, 32, 507
    h, w, t = _inputs(n, d, v, torch.bfloat16)
    out = fused_linear_score(h, w, t, lam=lam, bounded=bounded, options=ScoringOptions(chunk_size=64), vocab_block_size=123)
    gh, gw = torch.autograd.grad(out.loss, (h, w))
    assert gh.dtype == torch.bfloat16 and gw.dtype == torch.bfloat16
    ref, rh, rw = _reference(h, w, t, lam, bounded)
    naive = naive_linear_score(h, w, t, lam, bounded)
    nh, nw = torch.autograd.grad(naive["loss"], (h, w))
    loss_err = abs(out.loss.double().item() - ref["loss"].item())
    naive_err = abs(naive["loss"].double().item() - ref["loss"].item())
    assert loss_err <= naive_err + 1e-3
    for got, naive_g, truth in ((gh, nh, rh), (gw, nw, rw)):
        err = (got.double() - truth).abs().max().item()
        base = (naive_g.double() - truth).abs().max().item()
        assert err <= base + 1e-3 * truth.abs().max().item()


def test_gradcheck_float64():
    h, w, t = _inputs(11, 5, 13, torch.float64, ignore_every=4)
    for bounded in ("brier", "spherical"):
        for grad_in_forward in (True, False):
            def fn(h_, w_, bounded=bounded, gif=grad_in_forward):
                return fused_linear_score(
                    h_, w_, t, lam=0.3, bounded=bounded, options=ScoringOptions(chunk_size=4, label_smoothing=0.1),
                    vocab_block_size=5, grad_in_forward=gif,
                ).loss

            assert torch.autograd.gradcheck(fn, (h, w))


def test_recompute_in_backward_equals_grad_in_forward():
    h, w, t = _inputs(40, 12, 70, torch.float32)
    grads = []
    for gif in (True, False):
        out = fused_linear_score(h, w, t, lam=0.3, options=ScoringOptions(chunk_size=16), vocab_block_size=32, grad_in_forward=gif)
        grads.append(torch.autograd.grad(out.loss * 3.0, (h, w)))  # non-unit upstream gradient
    torch.testing.assert_close(grads[0], grads[1])


def test_tied_weights_gradients_accumulate_both_uses():
    """W is both the embedding table and the head: gradients from both paths must add up."""
    v, d, n = 50, 8, 30
    w = torch.randn(v, d, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, v, (n,))
    t = torch.randint(0, v, (n,))
    t[3] = -100
    h = torch.tanh(F.embedding(ids, w))
    out = fused_linear_score(h, w, t, lam=0.3, options=ScoringOptions(chunk_size=7), vocab_block_size=16)
    (g,) = torch.autograd.grad(out.loss, (w,))
    w2 = w.detach().clone().requires_grad_()
    ref = naive_linear_score(torch.tanh(F.embedding(ids, w2)), w2, t, 0.3)
    (rg,) = torch.autograd.grad(ref["loss"], (w2,))
    torch.testing.assert_close(g, rg)


def test_label_smoothing_matches_cross_entropy():
    h, w, t = _inputs(33, 8, 41, torch.float64)
    out = fused_linear_score(h, w, t, lam=0.0, options=ScoringOptions(label_smoothing=0.2, chunk_size=10), vocab_block_size=9)
    expected = F.cross_entropy(h @ w.T, t, ignore_index=-100, label_smoothing=0.2)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-12)
    # the reported log component stays the plain NLL
    assert out.log.item() == pytest.approx(F.cross_entropy(h @ w.T, t).item(), rel=1e-12)


def test_lambda_as_tensor_and_no_grad_path():
    h, w, t = _inputs(20, 8, 30, torch.float32)
    a = fused_linear_score(h, w, t, lam=torch.tensor(0.3))
    with torch.no_grad():
        b = fused_linear_score(h, w, t, lam=0.3)
    assert a.loss.item() == pytest.approx(b.loss.item(), rel=1e-6)
    assert not b.loss.requires_grad


@pytest.mark.parametrize(("lam", "z_loss"), [(0.3, 0.0), (0.8, 0.0), (0.0, 0.0), (1.0, 0.0), (0.3, 1e-2)])
def test_component_grad_norms_match_autograd(lam, z_loss):
    """Each component's ‖∂L/∂h‖ against autograd of that component alone: computed directly, derived from the total
    (λ on either side of ½, and at its ends), and both computed where a z-loss makes the total more than the two."""
    h, w, t = _inputs(30, 8, 40, torch.float64)
    out = fused_linear_score(h, w, t, lam=lam, bounded="spherical", vocab_block_size=16, component_grad_norms=True,
                             options=ScoringOptions(chunk_size=8, z_loss=z_loss))
    for lam, got in ((0.0, out.grad_norm_log), (1.0, out.grad_norm_bounded)):
        ref = naive_linear_score(h, w, t, lam, "spherical")
        (gh,) = torch.autograd.grad(ref["loss"], (h,))
        assert got.item() == pytest.approx(gh.norm().item(), rel=1e-10)


@pytest.mark.parametrize("bounded", ["brier", "spherical"])
def test_extreme_logits_stay_finite(bounded):
    n, d, v = 16, 4, 37
    h = torch.zeros(n, d)
    h[:, 0] = 1.0
    w = torch.zeros(v, d)
    w[:, 0] = torch.linspace(-1e4, 1e4, v)
    h.requires_grad_()
    w.requires_grad_()
    t = torch.randint(0, v, (n,))
    out = fused_linear_score(h, w, t, lam=0.5, bounded=bounded, options=ScoringOptions(chunk_size=5), vocab_block_size=8)
    gh, gw = torch.autograd.grad(out.loss, (h, w))
    for x in (out.loss, out.log, out.scores["brier"], out.scores["spherical"], out.entropy, gh, gw):
        assert torch.isfinite(x).all()
    ref = naive_linear_score(h.double(), w.double(), t, 0.5, bounded)
    assert out.loss.item() == pytest.approx(ref["loss"].item(), rel=1e-5)


def test_all_targets_ignored_gives_zero_loss_and_gradients():
    h, w, _ = _inputs(12, 4, 9, torch.float32)
    t = torch.full((12,), -100)
    out = fused_linear_score(h, w, t, lam=0.3)
    gh, gw = torch.autograd.grad(out.loss, (h, w))
    assert out.loss.item() == 0.0 and out.n_tokens.item() == 0
    assert gh.abs().max().item() == 0.0 and gw.abs().max().item() == 0.0


def test_target_outside_vocabulary_raises_clear_error():
    h, w, t = _inputs(8, 4, 9, torch.float32)
    t[2] = 9
    with pytest.raises(ValueError, match=r"target id 9 is outside the vocabulary \[0, 9\)"):
        fused_linear_score(h, w, t, lam=0.3)


def test_calibration_bins_on_a_pass_with_gradients_are_refused_not_dropped():
    h, w, t = _inputs(8, 4, 9, torch.float32)
    with pytest.raises(ValueError, match=r"calibration_bins=10 asks for calibration from a pass that computes gradients"):
        fused_linear_score(h.requires_grad_(), w, t, lam=0.3, calibration_bins=10)
    with torch.no_grad():
        assert fused_linear_score(h, w, t, lam=0.3, calibration_bins=10).calibration.shape == (3, 10)


def test_unknown_bounded_score_raises():
    h, w, t = _inputs(8, 4, 9, torch.float32)
    with pytest.raises(ValueError, match="log"):
        fused_linear_score(h, w, t, lam=0.3, bounded="log")


def test_token_scores_match_the_reference_per_token():
    from hypros_lm.scoring import naive_token_scores, token_scores

    h, w, t = _inputs(45, 8, 70, torch.float64)
    got = token_scores(h.detach(), w.detach(), t, chunk_size=16, vocab_block_size=32)
    valid = t != -100
    logits = h.detach() @ w.detach().T
    ref = naive_token_scores(logits[valid], t[valid])
    for key in ("log", "brier", "spherical", "entropy"):
        torch.testing.assert_close(got[key], ref[key])
    torch.testing.assert_close(got["correct"], ref["correct"])
    torch.testing.assert_close(got["confidence"], torch.softmax(logits[valid], -1).amax(-1))


@pytest.mark.requires_gpu
@pytest.mark.parametrize("bounded", ["brier", "spherical"])
def test_cuda_bfloat16_path_matches_reference(bounded):
    """The CUDA path (bf16 matmuls with fp32 outputs) within the naive bf16 error budget."""
    n, d, v = 1024, 64, 5000
    h = (torch.randn(n, d) * 0.5).to("cuda", torch.bfloat16).requires_grad_()
    w = (torch.randn(v, d) * 0.1).to("cuda", torch.bfloat16).requires_grad_()
    t = torch.randint(0, v, (n,), device="cuda")
    t[::7] = -100
    out = fused_linear_score(h, w, t, lam=0.3, bounded=bounded, options=ScoringOptions(chunk_size=256), vocab_block_size=2048)
    gh, gw = torch.autograd.grad(out.loss, (h, w))
    ref, rh, rw = _reference(h.cpu(), w.cpu(), t.cpu(), 0.3, bounded)
    assert out.loss.item() == pytest.approx(ref["loss"].item(), abs=2e-3)
    assert (gh.double().cpu() - rh).abs().max().item() <= 2e-2 * rh.abs().max().item() + 1e-6
    assert (gw.double().cpu() - rw).abs().max().item() <= 2e-2 * rw.abs().max().item() + 1e-6


@pytest.mark.parametrize("compile_tiles", ["never", "always"])
def test_accuracy_and_calibration_bins_follow_the_argmax_rule_at_ties(compile_tiles, monkeypatch):
    """A token is correct when its target is logits.argmax() (the first maximum): a collapsed model (every logit
    equal) is right only where the target is token 0, not everywhere; ties that straddle vocabulary blocks too."""
    from hypros_lm.scoring import token_scores

    monkeypatch.setenv("HYPROS_COMPILE_TILES", compile_tiles)
    n, d, v = 1000, 8, 300
    t = torch.randint(0, v, (n,))
    t[::9] = 0
    out = fused_linear_score(torch.zeros(n, d), torch.randn(v, d), t, lam=0.5,
                             options=ScoringOptions(chunk_size=128), vocab_block_size=64, calibration_bins=10)
    expected = (t == 0).double().mean().item()  # torch.zeros(n, v).argmax(-1) is 0 everywhere
    assert out.accuracy.item() == pytest.approx(expected) and expected < 0.2
    count, confidence, correct = out.calibration
    assert correct.sum().item() == pytest.approx(expected * n) and count.sum().item() == n
    assert confidence.sum().item() == pytest.approx(n / v, rel=1e-5)  # the top-1 probability of a uniform row

    # ties between two columns in different blocks (and the same block), the target at either
    h = torch.eye(4, dtype=torch.float64).repeat(4, 1)  # 16 tokens, one hot over d = 4
    w = torch.zeros(v, 4, dtype=torch.float64)
    w[[10, 200], 0] = 5.0  # row 0's maximum at 10 and 200 (blocks 0 and 3)
    w[[70, 71], 1] = 5.0  # row 1's at 70 and 71 (one block)
    w[299, 2] = 5.0  # row 2's at 299 alone; row 3 is all zeros: argmax 0
    t = torch.tensor([10, 70, 299, 0, 200, 71, 298, 1] * 2)
    logits = h @ w.T
    reference = (logits.argmax(-1) == t).double()
    assert reference.tolist()[:8] == [1, 1, 1, 1, 0, 0, 0, 0]
    got = fused_linear_score(h, w, t, lam=0.0, options=ScoringOptions(chunk_size=5), vocab_block_size=64)
    assert got.accuracy.item() == pytest.approx(reference.mean().item())
    per_token = token_scores(h, w, t, chunk_size=5, vocab_block_size=64)
    torch.testing.assert_close(per_token["correct"], reference)
    assert naive_linear_score(h, w, t, 0.0)["accuracy"].item() == pytest.approx(reference.mean().item())

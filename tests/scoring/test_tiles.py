"""The per-tile work of the fused head: compiled (torch.compile) and eager paths against each other and against the
float64 reference, the choice between them, the fallback when compiling fails, and bf16 at a 262k vocabulary."""

from __future__ import annotations

import warnings

import pytest
import torch

from hypros_lm.scoring import ScoringOptions, fused_linear_score, naive_linear_score
from hypros_lm.scoring import tiles as tiles_module
from hypros_lm.scoring.tiles import TILES

# every score and every option of the fused path, in as few compiled variants as cover them
CASES = {
    "log": dict(lam=0.0, bounded="brier"),
    "brier+z_loss+smoothing": dict(lam=1.0, bounded="brier", z_loss=1e-3, label_smoothing=0.1),
    "hypros+smoothing": dict(lam=0.3, bounded="brier", label_smoothing=0.1),
    "spherical+softcap+scale+bias": dict(lam=1.0, bounded="spherical", softcap=3.0, logit_scale=0.7, bias=True),
    "hypros-spherical+blocks+norms": dict(lam=0.3, bounded="spherical", vocab_block_size=97, component_grad_norms=True),
    "power-3+blocks+softcap+norms": dict(lam=0.6, bounded="power", alpha=3.0, vocab_block_size=97, softcap=3.0,
                                         component_grad_norms=True),
    "pseudo-spherical-1.5+bias": dict(lam=1.0, bounded="pseudo-spherical", alpha=1.5, bias=True),
}


def _inputs(*, n=150, d=24, v=389, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = (torch.randn(n, d, generator=g, dtype=torch.float64) * 1.5).to(dtype).requires_grad_()
    w = (torch.randn(v, d, generator=g, dtype=torch.float64) * 1.5).to(dtype).requires_grad_()
    b = (torch.randn(v, generator=g, dtype=torch.float64) * 0.5).to(dtype).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    t[::7] = -100
    return h, w, b, t


def _fused(case: dict, mode: str, monkeypatch) -> tuple:
    monkeypatch.setenv("HYPROS_COMPILE_TILES", mode)
    h, w, b, t = _inputs()
    kw = dict(case)
    bias = b if kw.pop("bias", False) else None
    options = ScoringOptions(chunk_size=64, z_loss=kw.pop("z_loss", 0.0), label_smoothing=kw.pop("label_smoothing", 0.0))
    out = fused_linear_score(h, w, t, bias=bias, options=options, **kw)
    params = (h, w) if bias is None else (h, w, bias)
    return out, torch.autograd.grad(out.loss, params)


@pytest.mark.parametrize("name", CASES)
def test_compiled_and_eager_tiles_agree_and_match_float64(name, monkeypatch):
    case = CASES[name]
    eager, eager_grads = _fused(case, "never", monkeypatch)
    compiled, compiled_grads = _fused(case, "always", monkeypatch)
    assert TILES.failed is None, TILES.failed
    assert {"statistics", "logit_grad"} <= set(TILES._compiled)  # the compiled path ran
    torch.testing.assert_close(compiled.loss, eager.loss, rtol=1e-5, atol=1e-6)
    assert compiled.components().keys() == eager.components().keys()
    for key, value in eager.components().items():
        torch.testing.assert_close(compiled.components()[key], value, rtol=1e-5, atol=1e-6, msg=key)
    for got, want in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)

    h, w, b, t = _inputs(dtype=torch.float64)
    kw = {k: v for k, v in case.items() if k not in ("bias", "vocab_block_size", "component_grad_norms")}
    bias = b if case.get("bias") else None
    ref = naive_linear_score(h, w, t, kw.pop("lam"), kw.pop("bounded"), bias=bias, **kw)  # alpha too, if any
    ref_grads = torch.autograd.grad(ref["loss"], (h, w) if bias is None else (h, w, bias))
    assert compiled.loss.item() == pytest.approx(ref["loss"].item(), abs=2e-5)
    for key in ("log", "brier", "spherical", "bounded", "entropy", "accuracy"):
        assert compiled.mean(key).item() == pytest.approx(ref[key].item(), abs=2e-5), key
    for got, want in zip(compiled_grads, ref_grads, strict=True):
        torch.testing.assert_close(got.double(), want, atol=1e-6, rtol=1e-4)


def test_tile_size_decides_compiling_and_a_failed_compile_falls_back_once(monkeypatch):
    calls = []

    def failing_compile(fn, **kwargs):
        def run(*args, **kw):
            calls.append(fn.__name__)
            raise RuntimeError("no C++ compiler found\nmore detail")
        return run

    monkeypatch.setattr(torch, "compile", failing_compile)
    monkeypatch.setattr(TILES, "_compiled", {})
    monkeypatch.setattr(TILES, "failed", None)
    monkeypatch.setenv("HYPROS_COMPILE_TILES", "auto")
    case = CASES["hypros+smoothing"]
    eager, eager_grads = _fused(case, "never", monkeypatch)

    monkeypatch.setenv("HYPROS_COMPILE_TILES", "auto")
    _fused(case, "auto", monkeypatch)  # 64 × 389 logits: far below the threshold, nothing is compiled
    assert calls == []

    monkeypatch.setattr(tiles_module, "COMPILE_MIN_ELEMENTS", 1)
    with pytest.warns(UserWarning, match="runs eagerly.*RuntimeError: no C\\+\\+ compiler found;") as said:
        out, grads = _fused(case, "auto", monkeypatch)
    assert len(said) == 1 and calls == ["statistics"]  # tried once, then eager for the rest of the process
    torch.testing.assert_close(out.loss, eager.loss, rtol=0, atol=0)
    for got, want in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _fused(case, "auto", monkeypatch)
    assert calls == ["statistics"]


def test_unknown_compile_mode_is_named(monkeypatch):
    monkeypatch.setenv("HYPROS_COMPILE_TILES", "yes")
    h, w, _, t = _inputs()
    with pytest.raises(ValueError, match="HYPROS_COMPILE_TILES='yes'; use one of auto, always, never"):
        fused_linear_score(h, w, t, lam=0.3)


@pytest.mark.parametrize("bounded,lam", [("brier", 0.0), ("brier", 1.0), ("spherical", 1.0)])
def test_bfloat16_inputs_at_a_262k_vocabulary_within_the_dtype_budget(bounded, lam):
    """Gemma-3's vocabulary (262,144) in bf16 with fp32 accumulation, against float64 from the same (rounded)
    inputs: the loss to fp32 rounding, each gradient entry within its one rounding to bf16 (2^-8 relative) plus the
    error of fp32 sums over V terms (√V·2^-24 ≈ 3e-5 of the largest entry; 1e-4 allowed)."""
    n, d, v = 12, 32, 262_144
    h, w, _, t = _inputs(n=n, d=d, v=v, dtype=torch.bfloat16, seed=1)
    with torch.no_grad():
        w.mul_(0.2)
    out = fused_linear_score(h, w, t, lam=lam, bounded=bounded, options=ScoringOptions(chunk_size=8))
    gh, gw = torch.autograd.grad(out.loss, (h, w))
    assert gh.dtype == torch.bfloat16 and gw.dtype == torch.bfloat16
    h64, w64 = (x.detach().double().requires_grad_() for x in (h, w))
    ref = naive_linear_score(h64, w64, t, lam, bounded)
    rh, rw = torch.autograd.grad(ref["loss"], (h64, w64))
    assert out.loss.item() == pytest.approx(ref["loss"].item(), rel=1e-5, abs=1e-6)
    for got, truth in ((gh, rh), (gw, rw)):
        err = (got.double() - truth).abs()
        budget = 2.0**-8 * truth.abs() + 1e-4 * truth.abs().max()
        assert bool((err <= budget).all()), (err - budget).max().item()

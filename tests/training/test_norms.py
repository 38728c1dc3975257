"""The norms the loop records each step: the ZeRO-0 gradient norm (telemetry.full_grad_norm) and the divergence
guard's parameter norm (divergence.squared_norm), against float64 references, in the dtypes each takes."""

from __future__ import annotations

import pytest
import torch

from hypros_lm.training.divergence import squared_norm
from hypros_lm.training.telemetry import full_grad_norm


def _model(dtype: torch.dtype) -> torch.nn.Module:
    """A model with a large and a small tensor, gradients of very different scales, one parameter without one."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(4096, 64), torch.nn.Linear(64, 8), torch.nn.Linear(8, 1)).to(dtype)
    for i, p in enumerate(model.parameters()):
        p.grad = (torch.randn(p.shape, dtype=torch.float64) * 10.0 ** -(i % 3)).to(dtype)
    model[2].bias.grad = None
    return model


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_the_gradient_norm_is_float64_s_to_fp32_rounding(dtype):
    model = _model(dtype)
    want = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters() if p.grad is not None))
    got = full_grad_norm(model)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want.item(), rel=1e-5)  # fp32 sums over 2.6e5 entries


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_guard_s_parameter_norm_takes_fp32_and_fp64(dtype):
    params = [p.detach() for p in _model(dtype).parameters()]
    want = sum((p.double() ** 2).sum() for p in params)
    assert squared_norm(params, torch.device("cpu")).item() == pytest.approx(want.item(), rel=1e-5)

"""The model-FLOPs formula against a count of the model's own matrix multiplies, and the initial weights."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry, mm_flop, register_flop_formula

from hypros_lm.models import ModelSettings, build_model, flops_per_token, initial_value, matmul_parameters
from hypros_lm.training.telemetry import device_peak_tflops
from tests.integrations.hf_models import small_config


@pytest.fixture(scope="module", autouse=True)
def _count_inplace_addmm():
    """The fused head accumulates its two gradient matmuls with the in-place addmm_, for which torch's
    FlopCounterMode has no formula: count it as addmm is counted (2·m·n·k)."""
    op = torch.ops.aten.addmm_
    if op not in flop_registry:
        register_flop_formula(op)(lambda acc_shape, a_shape, b_shape, **_: mm_flop(a_shape, b_shape))
    yield


@pytest.mark.parametrize(("name", "tied", "seq_len"), [("nano", False, 64), ("micro", True, 96)])
def test_flops_per_token_matches_a_count_of_one_forward_and_backward(name, tied, seq_len):
    # eager attention: its score and value matmuls are visible to FlopCounterMode (CPU SDPA's kernel is not)
    model = build_model(ModelSettings(name=name, attention="eager", tie_embeddings=tied), 1000)
    batch = 2
    x = torch.randint(0, 1000, (batch, seq_len))
    with FlopCounterMode(display=False) as counter:
        model(x, x, 0.3).loss.backward()
    expected = flops_per_token(model, seq_len) * batch * seq_len
    # the fused head adds one row-dot per token and vocabulary entry (2·V FLOPs) for its scores
    assert counter.get_total_flops() == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize(("model_type", "tied"), [("llama", False), ("gpt2", True), ("gpt_neox", False), ("qwen2", True)])
def test_flops_per_token_of_hf_architectures_match_a_count(model_type, tied, tmp_path):
    """hf: models (GPT-2's Conv1D and position table, GPT-NeoX's fused QKV, Qwen2's biases and grouped KV heads)
    count their matrices from the model itself."""
    small_config(model_type, vocab=1000, tie=tied).save_pretrained(tmp_path)
    model = build_model(ModelSettings(name=f"hf:{tmp_path}", attention="eager"), 1000)
    batch, seq_len = 2, 64
    x = torch.randint(0, 1000, (batch, seq_len))
    with FlopCounterMode(display=False) as counter:
        model(x, x, 0.3).loss.backward()
    assert counter.get_total_flops() == pytest.approx(flops_per_token(model, seq_len) * batch * seq_len, rel=0.03)


def test_matmul_parameters_leave_out_the_input_embedding_unless_tied():
    untied = build_model(ModelSettings(name="nano"), 1000)
    tied = build_model(ModelSettings(name="nano", tie_embeddings=True), 1000)
    norms = sum(p.numel() for n, p in untied.named_parameters() if p.ndim == 1)
    embed = untied.lm.model.embed_tokens.weight.numel()
    assert matmul_parameters(untied) == untied.num_parameters() - embed - norms
    assert matmul_parameters(tied) == tied.num_parameters() - norms


def test_initial_values_are_a_pure_function_of_seed_and_name():
    a = initial_value("body.layers.0.mlp.up_proj.weight", (176, 64), seed=7)
    assert torch.equal(a, initial_value("body.layers.0.mlp.up_proj.weight", (176, 64), seed=7))
    assert not torch.equal(a, initial_value("body.layers.1.mlp.up_proj.weight", (176, 64), seed=7))
    assert not torch.equal(a, initial_value("body.layers.0.mlp.up_proj.weight", (176, 64), seed=8))
    assert a.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.equal(initial_value("body.norm.weight", (64,), seed=7), torch.ones(64))
    assert torch.equal(initial_value("lm.transformer.h.0.attn.c_attn.bias", (96,), seed=7), torch.zeros(96))


def test_peak_tflops_only_from_a_setting_on_cpu():
    if torch.cuda.is_available():
        pytest.skip("the CPU case")
    assert device_peak_tflops("bf16")[0] is None
    assert device_peak_tflops("bf16", 12.5) == (12.5, "telemetry.peak_tflops")

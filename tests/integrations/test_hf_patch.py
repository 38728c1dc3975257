"""patch_causal_lm against the models' own loss (λ = 0) and a naive float64 reference (λ > 0)."""

from __future__ import annotations

import copy

import pytest
import torch

from hypros_lm.integrations.transformers import SUPPORTED_MODEL_TYPES, patch_causal_lm
from hypros_lm.scoring import naive_token_scores
from tests.integrations.hf_models import build, padded_batch

ARCHS = list(SUPPORTED_MODEL_TYPES)


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("num_items", [None, 97])
def test_lambda_zero_equals_the_models_own_loss_and_gradients(arch, num_items):
    model = build(arch)
    patched = patch_causal_lm(copy.deepcopy(model))
    batch = padded_batch(0, 4)
    extra = {} if num_items is None else {"num_items_in_batch": torch.tensor(num_items)}
    ref = model(**batch, **extra)
    out = patched(**batch, **extra)
    assert out.logits is None
    assert out.loss.item() == pytest.approx(ref.loss.item(), rel=1e-5)
    ref.loss.backward()
    out.loss.backward()
    g_ref, g_out = _grads(model), _grads(patched)
    assert g_ref.keys() == g_out.keys() and len(g_ref) > 5
    for name in g_ref:
        torch.testing.assert_close(g_out[name], g_ref[name], rtol=1e-4, atol=1e-6, msg=name)


def _reference_loss(model, batch, *, lam, bounded, z_loss=0.0):
    """The mean over shifted labels of (1 − λ)·log + λ·bounded (+ z·lse²) from the model's own logits."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = torch.nn.functional.pad(batch["labels"], (0, 1), value=-100)[..., 1:].reshape(-1)
    logits = logits.reshape(-1, logits.shape[-1])
    valid = targets != -100
    s = naive_token_scores(logits[valid], targets[valid])
    per_token = (1 - lam) * s["log"] + lam * s[bounded] + z_loss * torch.logsumexp(logits[valid], -1) ** 2
    return per_token.mean(), per_token


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("lam", "bounded"), [(1.0, "brier"), (1.0, "spherical"), (0.4, "brier")])
def test_scores_and_gradients_equal_a_float64_reference(arch, lam, bounded):
    model = build(arch, dtype=torch.float64)
    patched = patch_causal_lm(copy.deepcopy(model), lam=lam, bounded=bounded)
    batch = padded_batch(8, 3)
    ref, _ = _reference_loss(model, batch, lam=lam, bounded=bounded)
    out = patched(**batch)
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-10)
    ref.backward()
    out.loss.backward()
    g_ref, g_out = _grads(model), _grads(patched)
    for name in g_ref:
        torch.testing.assert_close(g_out[name], g_ref[name], rtol=1e-8, atol=1e-12, msg=name)


def test_head_bias_and_z_loss_follow_the_reference():
    """A Llama whose head has a bias (replaced here), with z-loss: the fused score adds both."""
    model = build("llama", dtype=torch.float64)
    old = model.lm_head
    model.lm_head = torch.nn.Linear(old.in_features, old.out_features, bias=True, dtype=torch.float64)
    with torch.no_grad():
        model.lm_head.weight.copy_(old.weight)
        model.lm_head.bias.normal_(0, 0.5)
    patched = patch_causal_lm(copy.deepcopy(model), lam=0.3, z_loss=1e-2)
    batch = padded_batch(16, 3)
    ref, _ = _reference_loss(model, batch, lam=0.3, bounded="brier", z_loss=1e-2)
    out = patched(**batch)
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-10)
    ref.backward()
    out.loss.backward()
    torch.testing.assert_close(patched.lm_head.bias.grad, model.lm_head.bias.grad, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(patched.lm_head.weight.grad, model.lm_head.weight.grad, rtol=1e-8, atol=1e-12)


def test_tied_embeddings_gradient_adds_both_uses():
    model = build("llama", dtype=torch.float64, tie=True)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    patched = patch_causal_lm(copy.deepcopy(model), lam=0.5)
    assert patched.lm_head.weight is patched.model.embed_tokens.weight
    batch = padded_batch(20, 2)
    ref, _ = _reference_loss(model, batch, lam=0.5, bounded="brier")
    ref.backward()
    patched(**batch).loss.backward()
    torch.testing.assert_close(patched.lm_head.weight.grad, model.lm_head.weight.grad, rtol=1e-8, atol=1e-12)


def test_shift_labels_and_forward_without_labels_are_the_models_own():
    model = build("qwen2")
    patched = patch_causal_lm(copy.deepcopy(model), lam=0.0)
    batch = padded_batch(4, 2)
    shifted = torch.nn.functional.pad(batch["labels"], (0, 1), value=-100)[..., 1:]
    a = patched(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    b = patched(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], shift_labels=shifted).loss
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(patched(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, plain)
    prompt = batch["input_ids"][:1, :5]
    torch.testing.assert_close(patched.generate(prompt, max_new_tokens=4, do_sample=False),
                               model.generate(prompt, max_new_tokens=4, do_sample=False))


def test_unsupported_architecture_is_refused_with_the_supported_list():
    import transformers as tf

    model = tf.AutoModelForCausalLM.from_config(tf.OPTConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                                                             num_attention_heads=2, ffn_dim=32, word_embed_proj_dim=16))
    with pytest.raises(ValueError, match="supports llama, mistral, qwen2, gpt2, gpt_neox, gemma2"):
        patch_causal_lm(model)

"""patch_causal_lm against the models' own loss (λ = 0) and a naive float64 reference (λ > 0), on every tested
architecture; the probe that refuses a head the fused score would not reproduce; bad option values."""

from __future__ import annotations

import copy

import pytest
import torch

from hypros_lm.integrations.transformers import check_patch, patch_causal_lm
from hypros_lm.scoring import naive_token_scores
from hypros_lm.scoring.scores import from_key
from tests.integrations.hf_models import ARCHITECTURES, build, padded_batch

ARCHS = list(ARCHITECTURES)


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
    """The mean over shifted labels of (1 − λ)·log + λ·bounded (+ z·lse²) from the model's own logits (plus a
    mixture of experts' load-balancing term, as its own forward adds it)."""
    own = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    logits = own.logits
    targets = torch.nn.functional.pad(batch["labels"], (0, 1), value=-100)[..., 1:].reshape(-1)
    logits = logits.reshape(-1, logits.shape[-1])
    valid = targets != -100
    s = naive_token_scores(logits[valid], targets[valid])
    partner = s[bounded] if bounded in s else from_key(bounded).reference(logits[valid], targets[valid])
    per_token = (1 - lam) * s["log"] + lam * partner + z_loss * torch.logsumexp(logits[valid], -1) ** 2
    aux = getattr(own, "aux_loss", None)
    return per_token.mean() + (0.0 if aux is None else model.router_aux_loss_coef * aux), per_token


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("lam", "bounded"), [(1.0, "brier"), (1.0, "spherical"), (0.4, "brier"), (0.6, "power-3"),
                                             (1.0, "pseudo-spherical-1.5")])
def test_scores_and_gradients_equal_a_float64_reference(arch, lam, bounded):
    model = build(arch, dtype=torch.float64)
    patched = patch_causal_lm(copy.deepcopy(model), lam=lam, bounded=from_key(bounded))
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


def test_a_mixture_of_experts_loss_includes_its_load_balancing_term():
    """Mixtral with output_router_logits: the patched loss carries the router's auxiliary loss as the model's own does
    (the λ = 0 test above compares the router's gradients too); without it the losses differ by coef × aux."""
    model = build("mixtral")
    batch = padded_batch(0, 3)
    out = patch_causal_lm(copy.deepcopy(model))(**batch)
    assert out.aux_loss is not None and out.aux_loss.item() > 0
    model.config.output_router_logits = False
    plain = model(**batch).loss
    assert out.loss.item() == pytest.approx(plain.item() + 0.02 * out.aux_loss.item(), rel=1e-5)


def _undeclared_transform(arch):
    """A model class of ``arch`` whose forward adds to the logits something its config does not declare."""
    base = type(build(arch))

    class Shifted(base):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **{k: v for k, v in kwargs.items() if k != "labels"})
            out.logits = out.logits * 1.5 + 0.25
            labels = kwargs.get("labels")
            if labels is not None:
                out.loss = self.loss_function(out.logits, labels, self.config.vocab_size)
            return out

    torch.manual_seed(0)
    return Shifted(build(arch).config)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_a_logit_transform_the_config_does_not_declare_is_refused(arch):
    model = _undeclared_transform(arch)
    with pytest.raises(ValueError, match=r"refuses Shifted .*logits differ from the model's own by up to .*λ = 0 loss is"):
        patch_causal_lm(model)
    batch = padded_batch(0, 2)  # refused, the model is left unpatched: its forward is its own again
    assert not hasattr(model, "hypros") and model(**batch).logits is not None


def test_a_wrong_declaration_is_refused_too():
    """Granite divides its logits by logits_scaling; a config that names another scale than the forward uses is caught."""
    model = build("granite")
    model.config.logits_scaling = 4.0
    patch_causal_lm(copy.deepcopy(model))  # as declared: accepted
    odd = copy.deepcopy(model)
    odd.config.logit_scale = 3.0  # now read first, but the forward still divides by 4
    with pytest.raises(ValueError, match=r"logit scale 3"):
        patch_causal_lm(odd)


def test_weights_not_materialised_say_what_the_patch_relies_on():
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(build("gemma2").config)
    with pytest.warns(UserWarning, match=r"not materialised.*relies on.*soft-cap 5.0.*check_patch"):
        patch_causal_lm(model)
    assert check_patch(model)[0] is False
    verified, note = check_patch(patch_causal_lm(build("gemma2")))
    assert verified and "probe" in note


def test_a_model_with_no_linear_head_is_refused():
    model = build("llama")
    model.lm_head = torch.nn.Sequential(model.lm_head)
    with pytest.raises(ValueError, match="output embedding is a Sequential, not nn.Linear"):
        patch_causal_lm(model)


@pytest.mark.parametrize(("options", "message"), [
    ({"lam": -0.2}, r"lam=-0.2 must lie in \[0, 1\]"),
    ({"lam": 1.5}, r"lam=1.5 must lie in \[0, 1\]"),
    ({"z_loss": -1e-4}, r"z_loss=-0.0001 must be a finite coefficient ≥ 0"),
    ({"chunk_size": 0}, r"chunk_size=0 must be a whole number of tokens ≥ 1"),
    ({"bounded": "log"}, r"bounded='log' is not a registered score; use one of \['brier', 'power', "),
    ({"bounded": "power", "alpha": 0.5}, r"alpha=0.5: the power score is strictly proper for every finite α > 1"),
    ({"score_smoothing": -0.1}, r"score_smoothing=-0.1 must lie in \[0, 1\)"),
    ({"label_smoothing": 1.0}, r"label_smoothing=1.0 must lie in \[0, 1\)"),
])
def test_bad_patch_options_are_refused_with_the_value_and_range(options, message):
    with pytest.raises(ValueError, match=message):
        patch_causal_lm(build("llama"), **options)


def test_a_state_lambda_out_of_range_is_refused_at_the_forward():
    model = patch_causal_lm(build("llama"))
    model.hypros.lam = 3.0
    with pytest.raises(ValueError, match=r"lam=3 must lie in \[0, 1\]"):
        model(**padded_batch(0, 2))


def test_a_copy_of_a_patched_model_scores_with_its_own_weights():
    """copy.deepcopy of a patched model (an EMA or a reference model): its head is its own, not the original's."""
    model = patch_causal_lm(build("llama"), lam=0.5)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.lm_head.weight.mul_(2.0)
    batch = padded_batch(0, 2)
    assert twin(**batch).loss.item() != pytest.approx(model(**batch).loss.item(), rel=1e-3)
    twin(**batch).loss.backward()
    assert twin.lm_head.weight.grad is not None and model.lm_head.weight.grad is None


def test_a_diverged_model_is_named_by_the_head_and_stops_the_trainer():
    """Weights gone to nan: the patched head's logged components warn, and HyProSCallback stops the Trainer at its log."""
    from transformers import TrainerControl, TrainerState

    from hypros_lm.integrations.transformers import HyProSCallback

    model = patch_causal_lm(build("llama"), lam=0.5)
    batch = padded_batch(0, 2)
    model.train()
    model(**batch).loss.backward()
    state = model.hypros
    assert all(torch.isfinite(torch.tensor(list(state.pop_components().values()))))
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    model(**batch)
    control, callback = TrainerControl(), HyProSCallback("hypros")
    with pytest.warns(UserWarning, match=r"the fused head scored non-finite \{'log': nan.*the model diverged"):
        callback.on_log(None, TrainerState(global_step=3), control, logs={"loss": float("nan")}, model=model)
    assert control.should_training_stop


def test_a_body_under_an_unusual_name_is_found_and_an_ambiguous_one_refused():
    """The body is the module the head reads, whatever the class calls it: a subclass whose base_model_prefix names
    nothing and whose body sits under another attribute is patched exactly; with two candidate bodies it is refused
    with a message, never a shape error."""
    from transformers import LlamaForCausalLM, LlamaModel

    class Renamed(LlamaForCausalLM):
        base_model_prefix = "backbone"  # absent: base_model falls back to the model itself

        def __init__(self, config):
            super().__init__(config)
            self.trunk = self.model
            del self.model

        @property
        def model(self):  # the class's own forward still reads self.model; the patch must not rely on it
            return self.trunk

    config = build("llama").config
    torch.manual_seed(0)
    odd = Renamed(config)
    assert odd.base_model is odd
    batch = padded_batch(0, 3)
    own = odd(**batch).loss
    patched = patch_causal_lm(copy.deepcopy(odd))
    assert patched(**batch).loss.item() == pytest.approx(own.item(), rel=1e-5)

    class TwoBodies(LlamaForCausalLM):
        base_model_prefix = "backbone"

        def __init__(self, config):
            super().__init__(config)
            self.trunk, self.draft = self.model, LlamaModel(config)
            del self.model  # no 'model' attribute to go by

        def get_input_embeddings(self):
            return self.trunk.embed_tokens

    refusal = r"cannot tell TwoBodies's body: .* 2 of its children are PreTrainedModels \(\['trunk', 'draft'\]\)"
    with pytest.raises(ValueError, match=refusal):
        patch_causal_lm(TwoBodies(config))


def test_a_probe_that_fails_is_refused_saying_what_failed():
    model = build("llama")
    model.model.forward = lambda **_: (_ for _ in ()).throw(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    with pytest.raises(ValueError, match=r"refuses LlamaForCausalLM .*its probe of 2 × 16 tokens failed \(RuntimeError: mat1 "
                                         r"and mat2 shapes cannot be multiplied\) with the body LlamaModel"):
        patch_causal_lm(model)
    assert getattr(model, "hypros", None) is None  # left as it was given


def test_labels_of_another_shape_than_the_input_ids_are_named_as_such():
    model = patch_causal_lm(build("llama"))
    batch = padded_batch(0, 3)
    with pytest.raises(ValueError, match=r"^labels of shape \(3, 36\) for input_ids of shape \(3, 40\): a causal LM takes one "
                                         r"label per input token"):
        model(input_ids=batch["input_ids"], labels=batch["labels"][:, :-4])

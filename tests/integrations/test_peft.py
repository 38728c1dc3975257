"""PEFT in either order: LoRA over a patched model and a patch over a LoRA model score as a float64 reference over the
LoRA model's full logits, with the same adapter gradients; Trainer trains only the adapter."""

from __future__ import annotations

import pytest
import torch

from hypros_lm.integrations.transformers import add_hypros_callback, patch_causal_lm
from tests.integrations.hf_models import COVERAGE, build, padded_batch
from tests.integrations.test_hf_patch import _reference_loss

peft = pytest.importorskip("peft")

LAM = 0.4


def _lora(model):
    """A LoRA adapter on the attention projections, initialised off zero so that it changes the outputs."""
    torch.manual_seed(1)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    return peft.get_peft_model(model, config)


def _adapter_grads(model) -> dict[str, torch.Tensor]:
    grads = {n.replace(".base_model.model", ""): p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    assert grads and all("lora_" in n for n in grads)
    return grads


@pytest.mark.parametrize("arch", COVERAGE["PEFT"])
@pytest.mark.parametrize("order", ["patch-then-lora", "lora-then-patch"])
def test_either_order_scores_as_the_float64_reference(order, arch):
    batch = padded_batch(4, 3)
    reference = _lora(build(arch, dtype=torch.float64))
    ref, _ = _reference_loss(reference, batch, lam=LAM, bounded="brier")
    ref.backward()
    if order == "patch-then-lora":
        model = _lora(patch_causal_lm(build(arch, dtype=torch.float64), lam=LAM))
    else:
        model = patch_causal_lm(_lora(build(arch, dtype=torch.float64)), lam=LAM)
    out = model(**batch)
    assert out.logits is None
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-10)
    out.loss.backward()
    expected, got = _adapter_grads(reference), _adapter_grads(model)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-8, atol=1e-12, msg=name)


def test_an_adapter_on_the_head_after_patching_is_named():
    model = patch_causal_lm(build("llama"))
    model = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["lm_head"]))
    with pytest.raises(RuntimeError, match=r"output embedding is now a .*replaced after patching .*PEFT adapter"):
        model(**padded_batch(0, 2))


def test_trainer_trains_only_the_adapter(tmp_path):
    from transformers import Trainer, TrainingArguments

    from tests.integrations.test_hf_trainer import _collate, _Rows

    model = patch_causal_lm(_lora(build("llama")))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = TrainingArguments(output_dir=str(tmp_path / "lora"), per_device_train_batch_size=4, max_steps=3,
                             learning_rate=1e-2, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=0,
                             disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=_Rows(), data_collator=_collate)
    add_hypros_callback(trainer, "hypros")
    trainer.train()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    adapters = {n for n in before if "lora_" in n}
    assert changed == adapters and len(adapters) == 8
    assert all("hypros/brier" in r for r in trainer.state.log_history if "loss" in r)

"""`--model hf:` takes every architecture the drop-in patch does: each tested architecture's config, built by the stack
and given its per-name initial weights as a run gives them, passes the patch's probe and scores through the stack's
call as its own λ = 0 loss (a mixture of experts' load-balancing term included); its per-token scores average to
that loss's log term and its logits are the model's own."""

from __future__ import annotations

import pytest
import torch

from hypros_lm.models import ModelSettings, build_model
from hypros_lm.models.lm import initial_value
from hypros_lm.scoring import ScoreOutput
from hypros_lm.training.engine import assign_parameters
from tests.integrations.hf_models import COVERAGE, padded_batch, small_config


@pytest.mark.parametrize("arch", COVERAGE["stack (hf:)"])
def test_the_stack_builds_verifies_and_scores_every_tested_architecture(arch, tmp_path):
    small_config(arch).save_pretrained(tmp_path / arch)
    model = build_model(ModelSettings(name=f"hf:{tmp_path / arch}"), 512, attention="eager")
    assign_parameters(model, lambda name, shape: initial_value(model.initial_name(name), shape, 0), rank=0)
    assert model.check_head().startswith("verified on a 2 × 16-token probe")
    batch = padded_batch(0, 3)
    targets = torch.nn.functional.pad(batch["labels"], (0, 1), value=-100)[..., 1:]
    out = model(batch["input_ids"], targets, 0.0)
    own = model.lm(input_ids=batch["input_ids"], labels=batch["labels"], use_cache=False)
    assert out.loss.item() == pytest.approx(own.loss.item(), rel=1e-5)
    assert isinstance(out, ScoreOutput)
    tokens = model(batch["input_ids"], targets, mode="tokens")  # evaluation's per-token scores
    assert set(tokens) >= {"log", "brier", "spherical", "confidence", "correct"}
    assert tokens["log"].double().mean().item() == pytest.approx(out.log.item(), rel=1e-5)
    logits = model(batch["input_ids"], mode="logits")  # the head's transform, as the model's own forward
    own_logits = model.lm(input_ids=batch["input_ids"], use_cache=False).logits  # no labels: the model's own head
    torch.testing.assert_close(logits, own_logits, rtol=1e-4, atol=1e-4 * float(own_logits.abs().max()))
    with pytest.raises(ValueError, match="none were given: pass targets, or mode='logits'"):
        model(batch["input_ids"])

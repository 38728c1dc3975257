"""Hugging Face Trainer with a patched model: gradient accumulation gives one large batch's update,
and the callback drives λ and logs each component through the Trainer's own logging."""

from __future__ import annotations

import types

import pytest
import torch

from hypros_lm import LambdaSchedule
from hypros_lm.integrations.transformers import add_hypros_callback, patch_causal_lm
from hypros_lm.scoring.scores import bounded_score
from tests.integrations.hf_models import COVERAGE, build, padded_batch


class _Rows(torch.utils.data.Dataset):
    """24 real WikiText-2 lines of unequal lengths (padded per batch by the collator)."""

    def __init__(self):
        batch = padded_batch(0, 24)
        lengths = batch["attention_mask"].sum(1)
        self.rows = [batch["input_ids"][i, : lengths[i]] for i in range(24)]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return {"input_ids": self.rows[i]}


def _collate(rows):
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = r["input_ids"], r["input_ids"], 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _train(tmp_path, arch: str, *, micro: int, accumulation: int):
    from transformers import Trainer, TrainerCallback, TrainingArguments

    seen: list[dict] = []

    class Reporter(TrainerCallback):  # stands for wandb/TensorBoard: a callback given to the Trainer
        def on_log(self, args, state, control, logs=None, **kwargs):
            seen.append(dict(logs))

    model = patch_causal_lm(build(arch))
    args = TrainingArguments(
        output_dir=str(tmp_path / f"{arch}m{micro}a{accumulation}"), per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulation, max_steps=3, learning_rate=0.5, optim="sgd",
        lr_scheduler_type="constant", max_grad_norm=0.0, logging_steps=1, save_strategy="no", report_to=[],
        use_cpu=True, seed=0, dataloader_drop_last=True, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=_Rows(), data_collator=_collate, callbacks=[Reporter()])
    add_hypros_callback(trainer, "hypros", t0=0.3, tau=0.1)
    trainer.train()
    return model, trainer.state.log_history, seen


@pytest.mark.parametrize("arch", COVERAGE["Trainer"])
def test_accumulation_4x2_equals_one_batch_of_8(tmp_path, arch):
    big, logs_big, _ = _train(tmp_path, arch, micro=8, accumulation=1)
    small, logs_small, seen = _train(tmp_path, arch, micro=2, accumulation=4)
    for (name, p), q in zip(big.named_parameters(), small.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)
    initial = build(arch)
    assert any((p - q).abs().max() > 1e-3 for p, q in zip(big.parameters(), initial.parameters(), strict=True))

    train_logs = [r for r in logs_small if "loss" in r]
    schedule = LambdaSchedule("hypros", total_steps=3)
    assert [r["hypros/lambda"] for r in train_logs] == pytest.approx([schedule(s) for s in range(3)])
    for r in train_logs:
        assert {"hypros/log", "hypros/brier", "hypros/spherical", "hypros/entropy", "hypros/accuracy"} <= set(r)
        assert 0 < r["hypros/brier"] < 2 and r["hypros/log"] > 1
    # a reporting callback given to the Trainer sees the same fields
    assert [r["hypros/lambda"] for r in seen if "loss" in r] == [r["hypros/lambda"] for r in train_logs]


def test_evaluate_logs_brier_spherical_and_ece_from_the_fused_pass(tmp_path):
    """Trainer.evaluate on a patched model: the token Brier, spherical score and 10-bin ECE beside eval_loss equal the
    same metrics over the model's full logits on the same evaluation batches."""
    import copy

    from transformers import Trainer, TrainingArguments

    from hypros_lm.metrics import expected_calibration_error
    from hypros_lm.scoring import naive_token_scores

    reference = build("llama")
    model = patch_causal_lm(copy.deepcopy(reference), bounded="pseudo-spherical", alpha=1.5)
    args = TrainingArguments(output_dir=str(tmp_path / "eval"), per_device_eval_batch_size=5, report_to=[], use_cpu=True,
                             disable_tqdm=True)
    trainer = Trainer(model=model, args=args, eval_dataset=_Rows(), data_collator=_collate)
    add_hypros_callback(trainer, "hypros")
    metrics = trainer.evaluate()
    logits, targets = [], []
    with torch.no_grad():
        for batch in trainer.get_eval_dataloader():
            out = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            shifted = torch.nn.functional.pad(batch["labels"], (0, 1), value=-100)[..., 1:]
            logits.append(out.reshape(-1, out.shape[-1])[shifted.reshape(-1) != -100].double())
            targets.append(shifted.reshape(-1)[shifted.reshape(-1) != -100])
    logits, targets = torch.cat(logits), torch.cat(targets)
    scores = naive_token_scores(logits, targets)
    p = torch.softmax(logits, -1)
    ece = expected_calibration_error(p.max(-1).values, (p.argmax(-1) == targets).double(), 10)
    assert metrics["eval_brier"] == pytest.approx(float(scores["brier"].mean()), abs=1e-6)
    assert metrics["eval_spherical"] == pytest.approx(float(scores["spherical"].mean()), abs=1e-6)
    pseudo = float(bounded_score("pseudo-spherical", 1.5).reference(logits, targets).mean())  # the patch's own
    assert metrics["eval_pseudo-spherical-1.5"] == pytest.approx(pseudo, abs=1e-6)
    assert metrics["eval_ece"] == pytest.approx(ece, abs=1e-6) and metrics["eval_ece"] > 0
    assert metrics["eval_log"] == pytest.approx(float(scores["log"].mean()), abs=1e-6)  # a token mean, as the scores
    assert abs(metrics["eval_loss"] - float(scores["log"].mean())) < 1e-3  # λ = 0; Trainer averages it per batch
    assert trainer.state.log_history[-1]["eval_ece"] == metrics["eval_ece"]


def test_the_callback_mixes_in_the_patched_bounded_score_unless_it_names_one():
    from hypros_lm.integrations.transformers import HyProSCallback

    model = patch_causal_lm(build("llama"), bounded="power", alpha=3.0)
    state = types.SimpleNamespace(max_steps=10, global_step=0)
    for callback, partner in ((HyProSCallback("hypros"), "power-3"), (HyProSCallback("log"), "power-3"),
                              (HyProSCallback("hypros", bounded="spherical"), "spherical"),
                              (HyProSCallback("hypros", bounded="pseudo-spherical", alpha=1.5), "pseudo-spherical-1.5"),
                              (HyProSCallback("brier"), "brier")):
        callback.on_train_begin(None, state, None, model=model)
        assert model.hypros.bounded.key == partner

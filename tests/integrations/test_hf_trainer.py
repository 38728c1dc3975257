"""Hugging Face Trainer with a patched model: gradient accumulation gives one large batch's update,
and the callback drives λ and logs each component through the Trainer's own logging."""

from __future__ import annotations

import pytest
import torch

from hypros_lm import LambdaSchedule
from hypros_lm.integrations.transformers import add_hypros_callback, patch_causal_lm
from tests.integrations.hf_models import build, padded_batch


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


def _train(tmp_path, *, micro: int, accumulation: int):
    from transformers import Trainer, TrainerCallback, TrainingArguments

    seen: list[dict] = []

    class Reporter(TrainerCallback):  # stands for wandb/TensorBoard: a callback given to the Trainer
        def on_log(self, args, state, control, logs=None, **kwargs):
            seen.append(dict(logs))

    model = patch_causal_lm(build("llama"))
    args = TrainingArguments(
        output_dir=str(tmp_path / f"m{micro}a{accumulation}"), per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulation, max_steps=3, learning_rate=0.5, optim="sgd",
        lr_scheduler_type="constant", max_grad_norm=0.0, logging_steps=1, save_strategy="no", report_to=[],
        use_cpu=True, seed=0, dataloader_drop_last=True, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=_Rows(), data_collator=_collate, callbacks=[Reporter()])
    add_hypros_callback(trainer, "hypros", t0=0.3, tau=0.1)
    trainer.train()
    return model, trainer.state.log_history, seen


def test_accumulation_4x2_equals_one_batch_of_8(tmp_path):
    big, logs_big, _ = _train(tmp_path, micro=8, accumulation=1)
    small, logs_small, seen = _train(tmp_path, micro=2, accumulation=4)
    for (name, p), q in zip(big.named_parameters(), small.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)
    initial = build("llama")
    assert any((p - q).abs().max() > 1e-3 for p, q in zip(big.parameters(), initial.parameters(), strict=True))

    train_logs = [r for r in logs_small if "loss" in r]
    schedule = LambdaSchedule("hypros", total_steps=3)
    assert [r["hypros/lambda"] for r in train_logs] == pytest.approx([schedule(s) for s in range(3)])
    for r in train_logs:
        assert {"hypros/log", "hypros/brier", "hypros/spherical", "hypros/entropy", "hypros/accuracy"} <= set(r)
        assert 0 < r["hypros/brier"] < 2 and r["hypros/log"] > 1
    # a reporting callback given to the Trainer sees the same fields
    assert [r["hypros/lambda"] for r in seen if "loss" in r] == [r["hypros/lambda"] for r in train_logs]

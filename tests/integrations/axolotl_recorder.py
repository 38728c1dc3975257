"""A test-only Axolotl plugin that records what a run did, for tests/integrations/test_axolotl.py to check against
independent references: every parameter before and after training (and which were trainable), each training step's
batch as the trainer received it, the trainer's log history, and whether the model was patched.

Listed in a test's config (``plugins: [tests.integrations.axolotl_recorder.Recorder]``, the checkout on PYTHONPATH);
it writes ``torch.save`` of that record to $HYPROS_AXOLOTL_RECORD when training ends. It only observes.
"""

from __future__ import annotations

import os

import torch
from axolotl.integrations.base import BasePlugin


class Recorder(BasePlugin):
    def post_trainer_create(self, cfg, trainer):
        model = trainer.model
        self.trainer = trainer
        self.before = {name: p.detach().clone() for name, p in model.named_parameters()}
        self.trainable = sorted(name for name, p in model.named_parameters() if p.requires_grad)
        self.batches: list[dict[str, torch.Tensor]] = []
        step = trainer.training_step

        def training_step(model, inputs, *args, **kwargs):
            self.batches.append({k: v.detach().cpu().clone() for k, v in inputs.items() if torch.is_tensor(v)})
            return step(model, inputs, *args, **kwargs)

        trainer.training_step = training_step

    def post_train(self, cfg, model):
        trained = self.trainer.model
        torch.save({
            "before": self.before,
            "after": {name: p.detach().clone() for name, p in trained.named_parameters()},
            "trainable": self.trainable,
            "batches": self.batches,
            "log_history": self.trainer.state.log_history,
            "patched": any(getattr(m, "hypros", None) is not None for m in trained.modules()),
        }, os.environ["HYPROS_AXOLOTL_RECORD"])

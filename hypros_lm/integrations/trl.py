"""HyProS in TRL's ``SFTTrainer``: [`HyProSSFTTrainer`][hypros_lm.integrations.trl.HyProSSFTTrainer] trains the fused
objective where TRL trains −log p.

    from hypros_lm.integrations.trl import HyProSSFTTrainer

    trainer = HyProSSFTTrainer(model=model, args=SFTConfig(...), train_dataset=data, loss="hypros")
    trainer.train()

TRL (≥ 1.x) installs its own chunked log-prob head on the model it trains and computes the loss from it,
so a model patched with [`patch_causal_lm()`][hypros_lm.integrations.transformers.patch_causal_lm] and handed to a plain
``SFTTrainer`` is trained on NLL ([`HyProSCallback`][hypros_lm.integrations.transformers.HyProSCallback] stops such a
run at its first step). This trainer keeps all of TRL's own behaviour — data preparation, completion-only and
assistant-only loss masks, packing and padding-free batches, ``num_items_in_batch`` — and takes the loss,
the logged ``entropy`` and ``mean_token_accuracy`` from the patched head's fused pass (no logits). A mixture
of experts' load-balancing term is added as the model's own forward adds it.
"""

from __future__ import annotations

from typing import Any

from hypros_lm.errors import InvalidValue, MissingPackage
from hypros_lm.integrations.transformers import add_hypros_callback, find_state, patch_causal_lm


def _sft_trainer():
    try:
        from trl import SFTTrainer
    except ImportError as err:
        raise MissingPackage("hypros_lm.integrations.trl needs TRL: pip install 'trl>=1,<2' (or the checkout's [trl] "
                             "extra: pip install './hypros-lm[trl]')") from err
    return SFTTrainer


class HyProSSFTTrainer(_sft_trainer()):
    """TRL's ``SFTTrainer`` whose training loss is the patched head's ``(1 − λ)·log + λ·bounded``, λ following
    the schedule of ``loss`` (an objective of ``--loss``, ``loss_params`` its parameters) through a
    [`HyProSCallback`][hypros_lm.integrations.transformers.HyProSCallback]. A model not yet patched is patched with
    ``patch_options`` (``z_loss``, ``label_smoothing``, ``chunk_size``, ...); TRL's own ``loss_type="dft"``,
    ``compute_loss_func`` and ``label_smoothing_factor`` would replace the objective and are refused."""

    def __init__(self, *args: Any, loss: str = "hypros", loss_params: dict[str, float] | None = None,
                 patch_options: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        replaced = [name for name, on in (("loss_type='dft'", self.args.loss_type != "nll"),
                                          ("compute_loss_func", self.compute_loss_func is not None),
                                          ("label_smoothing_factor", self.args.label_smoothing_factor > 0)) if on]
        if replaced:
            raise InvalidValue(f"HyProSSFTTrainer trains the patched head's objective; {', '.join(replaced)} would train "
                               "another (label smoothing: patch_options={'label_smoothing': ε})")
        if find_state(self.model) is None:
            patch_causal_lm(self.model, **(patch_options or {}))
        elif patch_options:
            raise InvalidValue("the model is patched already: give its options to patch_causal_lm, not patch_options")
        self.hypros_callback = add_hypros_callback(self, loss, **(loss_params or {}))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        inputs = {**inputs, "use_cache": False}
        if num_items_in_batch is not None:
            inputs["num_items_in_batch"] = num_items_in_batch
        outputs = model(**inputs)  # the patched forward: the fused score of the shifted labels
        loss = outputs.loss
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:  # as TRL: DDP averages ranks
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        self._log_fused_metrics(mode, inputs)
        return (loss, outputs) if return_outputs else loss

    def _log_fused_metrics(self, mode: str, inputs: dict[str, Any]) -> None:
        """TRL's per-batch ``entropy``, ``mean_token_accuracy`` and ``num_tokens``, from the fused pass's components."""
        scored = find_state(self.model).last
        gather = self.accelerator.gather_for_metrics
        n = gather(scored.n_tokens.float()).sum()
        entropy, correct = (gather(value * scored.n_tokens).sum() for value in (scored.entropy, scored.accuracy))
        self._metrics[mode]["entropy"].append((entropy / n).item() if n > 0 else 0.0)
        self._metrics[mode]["mean_token_accuracy"].append((correct / n).item() if n > 0 else 0.0)
        if mode == "train":
            mask = inputs.get("attention_mask")
            local = mask.sum() if mask is not None else inputs["position_ids"].new_tensor(inputs["position_ids"].size(1))
            self._total_train_tokens += gather(local).sum().item() // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]


__all__ = ["HyProSSFTTrainer"]

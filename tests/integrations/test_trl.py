"""TRL's SFTTrainer: HyProSSFTTrainer trains the fused objective (checked against the model's full logits over the
very batches it trained on), equals TRL's own loss at λ = 0, accumulates exactly, keeps TRL's completion-only mask and
packing; a patched model in a plain SFTTrainer is stopped before its first log."""

from __future__ import annotations

import copy
from functools import lru_cache

import pytest
import torch

from hypros_lm.integrations.transformers import add_hypros_callback, patch_causal_lm
from hypros_lm.scoring import naive_token_scores
from hypros_lm.scoring.scores import bounded_score
from tests.integrations.hf_models import COVERAGE, REPO, VOCAB, build, padded_batch, tokenizer, wikitext_lines

pytest.importorskip("trl")


@lru_cache(maxsize=4)
def _warm_state(arch: str = "qwen2") -> dict[str, torch.Tensor]:
    """The model after 30 Adam steps of NLL on real WikiText-2 batches: it predicts some tokens right (a top-1 accuracy
    above 0 for the accuracy checks to compare), where a fresh initialisation predicts none."""
    model = build(arch)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(30):
        model(**padded_batch(8 * (step % 10), 8)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _start(arch: str = "qwen2"):
    model = build(arch)
    model.load_state_dict(_warm_state(arch))
    return model


# A chat template with TRL's {% generation %} markers: what assistant_only_loss masks by
CHAT_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] + eos_token }}"
                 "{% endgeneration %}{% else %}{{ m['content'] + ' =' }}{% endif %}{% endfor %}")


def _hf_tokenizer():
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=tokenizer(VOCAB), eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _dataset(kind: str):
    """Real text: WikiText-2 lines, or Multi30k English → German pairs as prompt and completion."""
    from datasets import Dataset

    if kind == "text":
        return Dataset.from_dict({"text": wikitext_lines()[:24]})
    folder = REPO.parent / "shared" / "data" / "multi30k"
    english, german = ((folder / f"val.{lang}").read_text(encoding="utf-8").splitlines()[:24] for lang in ("en", "de"))
    if kind == "conversation":  # the user asks in English, the assistant answers in German
        return Dataset.from_dict({"messages": [[{"role": "user", "content": e}, {"role": "assistant", "content": " " + g}]
                                               for e, g in zip(english, german, strict=True)]})
    return Dataset.from_dict({"prompt": [e + " =" for e in english], "completion": [" " + g for g in german]})


def _config(tmp_path, name: str, *, micro: int = 4, accumulation: int = 1, packing: bool = False, steps: int = 3,
            **options):
    from trl import SFTConfig

    return SFTConfig(output_dir=str(tmp_path / name), per_device_train_batch_size=micro,
                     gradient_accumulation_steps=accumulation, max_steps=steps, learning_rate=0.5, optim="sgd",
                     lr_scheduler_type="constant", max_grad_norm=0.0, logging_steps=1, save_strategy="no", report_to=[],
                     use_cpu=True, seed=0, max_length=40, packing=packing, bf16=False, disable_tqdm=True,
                     dataloader_drop_last=True, **options)


def _recording(base):
    """``base`` with each training batch and the parameters it was scored with kept (instrumentation only)."""

    class Recording(base):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                self.seen.append(({k: v.clone() if torch.is_tensor(v) else v for k, v in inputs.items()},
                                  {k: v.detach().clone() for k, v in model.state_dict().items()}))
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    Recording.seen = None
    return Recording


def _train(tmp_path, name, *, trainer_class=None, kind="text", patched=False, arch="qwen2", zero_head=False, **options):
    from hypros_lm.integrations.trl import HyProSSFTTrainer

    loss = options.pop("loss", None)
    base = trainer_class or HyProSSFTTrainer
    model = _start(arch)
    if zero_head:  # every logit equal: a collapsed model, all ties
        torch.nn.init.zeros_(model.lm_head.weight)
    if patched:
        model = patch_causal_lm(model)
    extra = {} if loss is None else {"loss": loss}
    trainer = _recording(base)(model=model, args=_config(tmp_path, name, **options), train_dataset=_dataset(kind),
                               processing_class=_hf_tokenizer(), **extra)
    trainer.seen = []
    trainer.train()
    return trainer


def _full_logits_scores(batch, state):
    """Brier, NLL, entropy and top-1 accuracy of one batch from the reference model's full logits."""
    model = build("qwen2")
    model.load_state_dict(state)
    inputs = {k: v for k, v in batch.items() if k != "labels"}  # padding-free batches: sequence lengths too
    with torch.no_grad():
        logits = model(**inputs, use_cache=False).logits.double()  # as TRL: packed rows need no cache to be split
    targets = torch.nn.functional.pad(batch["labels"], (0, 1), value=-100)[..., 1:].reshape(-1)
    logits = logits.reshape(-1, logits.shape[-1])
    valid = targets != -100
    scores = naive_token_scores(logits[valid], targets[valid])
    p = torch.softmax(logits[valid], -1)
    entropy = -(p * torch.log(p)).sum(-1)
    accuracy = (logits[valid].argmax(-1) == targets[valid]).double()
    return {"brier": scores["brier"].mean(), "log": scores["log"].mean(), "entropy": entropy.mean(),
            "accuracy": accuracy.mean(), "n": int(valid.sum()), "width": int(batch["input_ids"].numel())}


@pytest.mark.parametrize(("kind", "packing"), [("text", False), ("prompt-completion", False), ("conversation", False),
                                             ("text", True)])
def test_lambda_one_trains_the_brier_score_of_the_batches_it_saw(tmp_path, kind, packing):
    options = {"assistant_only_loss": True} if kind == "conversation" else {}
    trainer = _train(tmp_path, f"brier-{kind}-{packing}", kind=kind, packing=packing, loss="brier", **options)
    logs = [r for r in trainer.state.log_history if "loss" in r]
    assert len(logs) == len(trainer.seen) == 3
    assert max(r["mean_token_accuracy"] for r in logs) > 0.02
    for record, (batch, state) in zip(logs, trainer.seen, strict=True):
        ref = _full_logits_scores(batch, state)
        assert record["loss"] == pytest.approx(float(ref["brier"]), rel=1e-5)
        assert record["loss"] < 0.5 * float(ref["log"])  # not the NLL TRL's own head would have trained
        assert record["entropy"] == pytest.approx(float(ref["entropy"]), rel=1e-5)
        assert record["mean_token_accuracy"] == pytest.approx(float(ref["accuracy"]), abs=1e-6)
        assert record["hypros/lambda"] == 1.0
        if kind in ("prompt-completion", "conversation"):  # TRL's completion-only and assistant-only masks: the
            # English prompt is not scored
            assert ref["n"] < int(batch["attention_mask"].sum()) - 4 * len(batch["input_ids"])
        if packing:  # TRL's padding-free packing: one row, position ids restarting per document
            assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
            assert int((batch["position_ids"] == 0).sum()) > 1


def test_mean_token_accuracy_is_the_argmax_rule_at_ties(tmp_path):
    """All logits equal (a zero head): argmax is token 0, so only targets of id 0 count as correct, not every token."""
    trainer = _train(tmp_path, "ties", loss="hypros", zero_head=True, steps=1)
    (record,), ((batch, state),) = [r for r in trainer.state.log_history if "loss" in r], trainer.seen
    assert float(state["lm_head.weight"].abs().max()) == 0.0
    targets = torch.nn.functional.pad(batch["labels"], (0, 1), value=-100)[..., 1:]
    first_maximum = float((targets[targets != -100] == 0).double().mean())  # torch.argmax of equal logits: 0
    assert first_maximum < 0.5  # where "the target is among the maxima" counts every token: 1.0
    assert record["mean_token_accuracy"] == pytest.approx(first_maximum, abs=1e-6)
    assert record["mean_token_accuracy"] == pytest.approx(float(_full_logits_scores(batch, state)["accuracy"]), abs=1e-6)


@pytest.mark.parametrize("arch", COVERAGE["TRL SFT"])
def test_lambda_zero_equals_trls_own_loss(tmp_path, arch):
    from trl import SFTTrainer

    ours = _train(tmp_path, "ours", loss="log", arch=arch)
    theirs = _train(tmp_path, "theirs", trainer_class=SFTTrainer, arch=arch)
    ours_logs, their_logs = ([r for r in t.state.log_history if "loss" in r] for t in (ours, theirs))
    for a, b in zip(ours_logs, their_logs, strict=True):
        for key in ("loss", "entropy", "mean_token_accuracy", "num_tokens"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), key
    for (name, p), q in zip(ours.model.named_parameters(), theirs.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def test_accumulation_2x4_ends_with_the_parameters_of_8x1(tmp_path):
    big = _train(tmp_path, "8x1", micro=8, accumulation=1, loss="hypros")
    small = _train(tmp_path, "2x4", micro=2, accumulation=4, loss="hypros")
    assert len(small.seen) == 4 * len(big.seen)
    initial = _start()
    moved = [(p - q).abs().max() for p, q in zip(big.model.parameters(), initial.parameters(), strict=True)]
    assert max(moved) > 1e-3
    for (name, p), q in zip(big.model.named_parameters(), small.model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)


def test_a_patched_model_in_a_plain_sft_trainer_is_stopped_before_its_first_log(tmp_path):
    """TRL's own head would train −log p while λ is logged: the callback names it and stops the run."""
    from trl import SFTTrainer

    model = patch_causal_lm(_start())
    trainer = SFTTrainer(model=model, args=_config(tmp_path, "plain"), train_dataset=_dataset("text"),
                         processing_class=_hf_tokenizer())
    add_hypros_callback(trainer, "hypros")
    with pytest.raises(RuntimeError, match=r"scored 0 of the 1 training forwards of step 1.*`_fused_forward` "
                                           r"\(.*trl.*utils\.py.*HyProSSFTTrainer"):
        trainer.train()
    assert not [r for r in trainer.state.log_history if "loss" in r]


def test_objective_replacing_options_are_refused(tmp_path):
    from hypros_lm.integrations.trl import HyProSSFTTrainer

    args = _config(tmp_path, "dft")
    args.loss_type = "dft"
    with pytest.raises(ValueError, match=r"loss_type='dft' would train another"):
        HyProSSFTTrainer(model=copy.deepcopy(build("qwen2")), args=args, train_dataset=_dataset("text"),
                         processing_class=_hf_tokenizer())


def test_trls_evaluation_logs_the_fused_calibration_beside_its_own_metrics(tmp_path):
    """HyProSSFTTrainer.evaluate: TRL's eval_entropy and eval_mean_token_accuracy, and the callback's eval_brier,
    eval_spherical, eval_power-3 (the patch's bounded score) and eval_ece, equal the same metrics over the model's
    full logits on the evaluation batches."""
    from hypros_lm.integrations.trl import HyProSSFTTrainer
    from hypros_lm.metrics import expected_calibration_error

    trainer = HyProSSFTTrainer(model=_start(), args=_config(tmp_path, "eval", per_device_eval_batch_size=6),
                               train_dataset=_dataset("text"), eval_dataset=_dataset("prompt-completion"),
                               processing_class=_hf_tokenizer(), patch_options={"bounded": "power", "alpha": 3.0})
    metrics = trainer.evaluate()
    state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    logits, targets = [], []
    for batch in trainer.get_eval_dataloader():
        model = build("qwen2")
        model.load_state_dict(state)
        with torch.no_grad():
            out = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits
        shifted = torch.nn.functional.pad(batch["labels"], (0, 1), value=-100)[..., 1:].reshape(-1)
        logits.append(out.reshape(-1, out.shape[-1])[shifted != -100].double())
        targets.append(shifted[shifted != -100])
    logits, targets = torch.cat(logits), torch.cat(targets)
    p = torch.softmax(logits, -1)
    scores = naive_token_scores(logits, targets)
    assert metrics["eval_brier"] == pytest.approx(float(scores["brier"].mean()), abs=1e-6)
    assert metrics["eval_spherical"] == pytest.approx(float(scores["spherical"].mean()), abs=1e-6)
    power = float(bounded_score("power", 3.0).reference(logits, targets).mean())  # the patched head's own bounded score
    assert metrics["eval_power-3"] == pytest.approx(power, abs=1e-6)
    ece = expected_calibration_error(p.max(-1).values, (p.argmax(-1) == targets).double(), 10)
    assert metrics["eval_ece"] == pytest.approx(ece, abs=1e-6)
    assert {"eval_entropy", "eval_mean_token_accuracy", "eval_loss"} <= set(metrics)

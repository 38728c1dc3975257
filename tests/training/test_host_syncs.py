"""No host-device synchronisation where a training step needs none: the patched Hugging Face model's forward and
backward with labels, the loss API, and a step of the loop that logs, evaluates and saves nothing (what DeepSpeed's
engine issues there is counted apart, by call site). Counted on CPU with a TorchDispatchMode (tests/sync_counter.py):
the same operations stall the stream on a GPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import tests.helpers as helpers
from hypros_lm import linear_scoring_loss
from hypros_lm.data.sources import iter_documents, resolve_source
from hypros_lm.errors import InvalidValue
from hypros_lm.integrations.transformers import patch_causal_lm
from tests.helpers import REPO, TINY_RUN, free_port
from tests.sync_counter import SyncCounter


def _wikitext_bytes(n: int) -> torch.Tensor:
    text = next(iter_documents(resolve_source("wikitext-2-v1", "train")))
    return torch.tensor([list(text.encode()[:n])])


def test_the_patched_model_trains_a_batch_without_reading_the_device_where_its_own_loss_does_not():
    """The patch adds no read-back to a training forward and backward with labels: its own are none, and what
    transformers' body issues (the packed-sequence check of a forward without a cache) is the same as without it."""
    import copy

    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    own = LlamaForCausalLM(LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4))
    patched = patch_causal_lm(copy.deepcopy(own), lam=0.3)  # the probe reads the device once, here, not per step
    ids = _wikitext_bytes(64)
    counts = {}
    for name, model in (("own", own), ("patched", patched)):
        with SyncCounter() as counter:
            out = model(input_ids=ids, labels=ids, use_cache=False, num_items_in_batch=torch.tensor(63))
            out.loss.backward()
        counts[name] = counter
        assert torch.isfinite(out.loss) and model.lm_head.weight.grad is not None
    assert "hypros_lm" not in counts["patched"].by_package, counts["patched"].sites
    assert counts["patched"].by_package == counts["own"].by_package, (counts["patched"].sites, counts["own"].sites)


def test_the_loss_api_reads_nothing_back_and_still_refuses_a_bad_target():
    torch.manual_seed(0)
    ids = _wikitext_bytes(129)[0]
    hidden = torch.randn(128, 16, requires_grad=True)
    weight = torch.randn(256, 16, requires_grad=True)
    targets = ids[1:].clone()
    targets[::7] = -100
    with SyncCounter() as counter:
        loss = linear_scoring_loss(hidden, weight, targets, score="hypros", lam=0.4)
        loss.backward()
    assert counter.sites == {}, counter.sites
    targets[3] = 256  # outside the vocabulary: refused by the device-side check, named on the CPU
    with pytest.raises(InvalidValue, match=r"target id 256 is outside the vocabulary \[0, 256\)"):
        linear_scoring_loss(hidden, weight, targets, score="hypros", lam=0.4)


@pytest.mark.slow
def test_a_step_of_the_loop_that_logs_nothing_waits_on_nothing_of_the_project_s(cache_dir, tmp_path):
    env = {**helpers.test_env(cache_dir), "MASTER_PORT": str(free_port())}
    args = [*TINY_RUN, "--loss", "hypros", "--max-steps", "10", "--train.log_every", "3", "--train.eval_every", "0",
            "--train.save_every", "0", "--train.component_grad_every", "0", "--ds-config", "zero0",
            "--out", str(tmp_path / "run")]
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "training" / "count_step_syncs.py"), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    # torch's AdamW under DeepSpeed's step reads each parameter's step count (not capturable), transformers' body
    # checks for packed sequences: theirs, by site, are in counts["sites"]; the project's own are none
    assert counts["by_package"].get("hypros_lm", 0) == 0 and counts["by_package"].get("tests", 0) == 0, counts["sites"]
    assert set(counts["by_package"]) <= {"deepspeed", "transformers", "torch"}, counts["sites"]

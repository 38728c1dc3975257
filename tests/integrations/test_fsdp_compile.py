"""A patched model under FSDP2 (``fully_shard``, 2 CPU ranks over gloo) gives the single-process loss and gradients; under
``torch.compile`` it gives the eager loss and gradients with ignored rows present."""

from __future__ import annotations

import copy

import pytest
import torch

from hypros_lm.integrations.transformers import patch_causal_lm
from tests.integrations.hf_models import COVERAGE, build, padded_batch

LAM = 0.6


def _fsdp_worker(rank: int, world: int, store: str, arch: str) -> None:
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        single = patch_causal_lm(build(arch), lam=LAM)
        sharded = copy.deepcopy(single)
        batch = padded_batch(0, 4)
        single(**batch).loss.backward()
        for layer in sharded.model.layers:
            fully_shard(layer)
        fully_shard(sharded.lm_head)
        fully_shard(sharded)
        assert type(sharded.lm_head.weight).__name__ == "DTensor"  # the head is sharded outside its forward
        loss = sharded(**batch).loss  # both ranks score the same batch: FSDP's mean of the gradients is the batch's
        loss.backward()
        assert loss.item() == pytest.approx(single(**batch).loss.item(), rel=1e-6)
        expected = dict(single.named_parameters())
        missing = [n for n, p in sharded.named_parameters() if p.grad is None]
        assert not missing, missing
        for name, param in sharded.named_parameters():
            torch.testing.assert_close(param.grad.full_tensor(), expected[name].grad, rtol=1e-5, atol=1e-7, msg=name)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("arch", COVERAGE["FSDP2"])
def test_fully_shard_on_two_cpu_ranks_gives_the_single_process_loss_and_gradients(tmp_path, arch):
    torch.multiprocessing.spawn(_fsdp_worker, args=(2, str(tmp_path / "store"), arch), nprocs=2, join=True)


@pytest.mark.parametrize("arch", COVERAGE["torch.compile"])
def test_torch_compile_of_a_patched_model_equals_eager_with_ignored_rows(arch):
    eager = patch_causal_lm(build(arch), lam=LAM)
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, backend="aot_eager")  # dynamo and AOTAutograd; inductor adds 70 s of C++
    batch = padded_batch(8, 4)
    batch["labels"][1, :] = -100  # a row with nothing to score, beside padded ones
    expected = eager(**batch).loss
    got = compiled(**batch).loss
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    expected.backward()
    got.backward()
    grads = dict(eager.named_parameters())
    for name, param in compiled_model.named_parameters():
        torch.testing.assert_close(param.grad, grads[name].grad, rtol=1e-5, atol=1e-7, msg=name)

"""A ladder rung is a transformers LlamaForCausalLM in the one model class: it trains to the losses the release
before the change recorded, starts from the weights drawn under the names rungs were released with, and a run
folder in the released layout (``body.*`` / ``head.weight``) loads, resumes, exports and evaluates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from hypros_lm.evaluation.lm import evaluate_blocks
from hypros_lm.files import write_atomic
from hypros_lm.models import HFCausalLM, ModelSettings, build_model, initial_value
from hypros_lm.runs import LATEST, META, RunFolder, export_hf, load_run
from hypros_lm.training.engine import assign_parameters
from tests.helpers import TINY_RUN, read_metrics, run_python

# 5 HyProS steps of 4 × 64 tokens of WikiText-2, ZeRO-2, one process; a checkpoint at steps 3 and 5
RUN = [*TINY_RUN, "--loss", "hypros", "--max-steps", "5", "--ds-config", "zero2", "--train.save_every", "3"]
# what this run logged at commit 6eb2134, when a rung was its own module (DecoderLM: a Llama body and a ScoringHead)
RECORDED = {
    "loss": [7.307374477386475, 5.828484058380127, 2.75199031829834, 1.30650794506073, 1.0425537824630737],
    "loss_log": [7.621423721313477, 7.604970455169678, 7.516080379486084, 7.476329326629639, 7.463787078857422],
    "loss_brier": [0.9995073080062866, 0.9994915127754211, 0.9993793964385986, 0.9993305206298828,
                   0.9992878437042236],
    "grad_norm": [0.844071090221405, 0.708306074142456, 0.38335639238357544, 0.06695342808961868,
                  0.009316567331552505],
}
RECORDED_VAL_LOG = [7.491277363151312, 7.41560934856534]
RECORDED_FLOPS_PER_TOKEN = 1486848
RELEASED_NAMES = {"model.": "body.", "lm_head.weight": "head.weight"}  # LlamaForCausalLM → a rung's names in 0.1


@pytest.fixture(scope="module")
def rung_run(cache_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nano")
    run_python([*RUN, "--out", str(out)], cache_dir)
    return out


def test_a_rung_trains_to_the_losses_recorded_before_it_was_a_llama_for_causal_lm(rung_run):
    records = read_metrics(rung_run)
    for key, values in RECORDED.items():
        assert [r[key] for r in records] == pytest.approx(values, rel=1e-5), key
    assert [r["loss_log"] for r in read_metrics(rung_run, "val")] == pytest.approx(RECORDED_VAL_LOG, rel=1e-5)
    assert records[0]["flops_per_token"] == RECORDED_FLOPS_PER_TOKEN


@pytest.mark.parametrize("tied", [False, True])
def test_a_rung_starts_from_the_values_drawn_under_its_released_names(tied):
    model = build_model(ModelSettings(name="nano", tie_embeddings=tied), 1000)
    assert type(model) is HFCausalLM and type(model.lm).__name__ == "LlamaForCausalLM"
    assign_parameters(model, lambda name, shape: initial_value(model.initial_name(name), shape, 3), rank=0)
    state = model.lm.state_dict()
    shared = state["lm_head.weight"].data_ptr() == state["model.embed_tokens.weight"].data_ptr()
    assert shared == tied
    for name, value in state.items():
        drawn_as = "model.embed_tokens.weight" if tied and name == "lm_head.weight" else name
        torch.testing.assert_close(value, initial_value(_released(drawn_as), tuple(value.shape), 3), rtol=0, atol=0)


def _released(name: str) -> str:
    for new, old in RELEASED_NAMES.items():
        if name.startswith(new):
            return old + name[len(new):]
    raise AssertionError(f"{name} has no released name")


def _as_released_layout(run: Path, to: Path, *, step: int) -> Path:
    """A copy of ``run`` cut at ``step`` with its checkpoint in the layout 0.1 wrote: DeepSpeed's model states and
    optimizer fragments under the rung's ``body.*`` / ``head.weight`` names (everything else as saved)."""
    shutil.copytree(run, to)
    folder = RunFolder(to)
    keep = folder.checkpoint(step)
    for other in folder.checkpoints.iterdir():
        if other.is_dir() and other != keep:
            shutil.rmtree(other)
    write_atomic(folder.checkpoints / LATEST, keep.name)

    def old(name: str) -> str:
        return _released(name.removeprefix("lm."))

    states_file = keep / "mp_rank_00_model_states.pt"
    states = torch.load(states_file, weights_only=False)
    states["module"] = {old(k): v for k, v in states["module"].items()}
    states["param_shapes"] = [{old(k): v for k, v in group.items()} for group in states["param_shapes"]]
    states["shared_params"] = {old(k): old(v) for k, v in states["shared_params"].items()}
    torch.save(states, states_file)
    for optim_file in keep.glob("*optim_states.pt"):
        optim = torch.load(optim_file, weights_only=False)
        mappings = optim["optimizer_state_dict"]["param_slice_mappings"]
        optim["optimizer_state_dict"]["param_slice_mappings"] = [{old(k): v for k, v in m.items()} for m in mappings]
        torch.save(optim, optim_file)
    meta = json.loads((keep / META).read_text())
    del meta["checksums"]  # 0.1 recorded none (it loads with a note)
    (keep / META).write_text(json.dumps(meta))
    return to


@pytest.fixture(scope="module")
def released_run(rung_run, tmp_path_factory) -> Path:
    folder = _as_released_layout(rung_run, tmp_path_factory.mktemp("released") / "run", step=3)
    names = torch.load(RunFolder(folder).checkpoint(3) / "mp_rank_00_model_states.pt", weights_only=False)
    assert "head.weight" in names["module"] and all(k.startswith(("body.", "head.")) for k in names["module"])
    return folder


def test_a_released_run_folder_loads_with_the_weights_it_saved(released_run, rung_run):
    released, current = load_run(released_run), load_run(rung_run, step=3)
    assert type(released.model.lm).__name__ == "LlamaForCausalLM"
    saved = current.model.state_dict()
    assert list(released.model.state_dict()) == list(saved)
    for name, value in released.model.state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0)


def test_a_released_run_folder_resumes_to_the_uninterrupted_losses(released_run, rung_run, cache_dir, tmp_path):
    resumed = tmp_path / "resumed"
    shutil.copytree(released_run, resumed)
    run_python([*RUN, "--out", str(resumed), "--resume"], cache_dir)
    assert read_metrics(resumed)[:3] == read_metrics(rung_run)[:3]  # resumed at step 3: the records up to it kept
    assert [r["step"] for r in read_metrics(resumed)] == [1, 2, 3, 4, 5]
    assert [r["loss"] for r in read_metrics(resumed)] == pytest.approx([r["loss"] for r in read_metrics(rung_run)],
                                                                       rel=1e-6)


def test_a_released_run_folder_exports_and_evaluates_to_its_validation_loss(released_run, tmp_path):
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    loaded = load_run(released_run)
    exported = AutoModelForCausalLM.from_pretrained(export_hf(released_run, tmp_path / "hf"), dtype=torch.float32)
    assert type(exported) is LlamaForCausalLM
    logged = read_metrics(released_run, "val")[0]
    assert logged["step"] == 3
    for model in (loaded.model, HFCausalLM(exported)):  # what eval/lm.py scores: the run folder, and --hf-dir
        scores = evaluate_blocks(model, _val(loaded), 2, loaded.settings.train.micro_batch_size)
        assert scores["loss_log"] == pytest.approx(logged["loss_log"], rel=1e-5)


def _val(loaded):
    from hypros_lm.data import prepare_data

    return prepare_data(loaded.settings.data).val

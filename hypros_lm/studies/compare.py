"""Blinded side-by-side comparison pages for human raters.

Two runs generate for the same seeded sample of a task's inputs. Each item shows the source (and the
reference, folded) with the two outputs as "A" and "B" in an order drawn per item, so the rater cannot
tell which run wrote which. The page is one self-contained HTML file (no server; it works from a file):
ratings are kept in the browser's localStorage as they are made (a reload loses nothing) and saved as
JSON by a button. The key that unblinds the order is written beside the page, never into it.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypros_lm.errors import InvalidValue, MissingFile
from hypros_lm.evaluation.device import choose_device
from hypros_lm.runs import RunFolder, load_run, to_hf
from hypros_lm.tasks.seq2seq import check_splits, generate_for_task, get_task, load_pairs, usable_pairs

PAGE_TEMPLATE = Path(__file__).with_name("compare_page.html")
SCALES = {"translation": ("adequacy", "fluency"), "summarization": ("faithfulness",)}
"""1–5 scales rated for each output, by task kind, beside the A / B / tie choice."""


@dataclass
class Item:
    id: str
    index: int  # position in the task split
    source: str
    reference: str
    outputs: tuple[str, str]  # (run A's, run B's): the command line's order, before blinding


def sample_indices(total: int, n: int, seed: int) -> list[int]:
    """n distinct positions of a split, drawn with a seeded generator, in split order."""
    if n < 1:
        raise InvalidValue(f"--n={n}: ask for at least one item")
    if n > total:
        raise InvalidValue(f"--n={n} exceeds the {total} usable examples of the split; lower --n")
    return sorted(random.Random(seed).sample(range(total), n))


def blind(items: list[Item], seed: int) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """Page items with the outputs as A/B in a seeded random order per item, and the key: for each item,
    the run (0: first on the command line, 1: second) behind A and behind B."""
    rng = random.Random(f"blind-{seed}")
    shown, key = [], {}
    for item in items:
        first = rng.randrange(2)  # the run shown as A
        shown.append({"id": item.id, "source": item.source, "reference": item.reference,
                      "A": item.outputs[first], "B": item.outputs[1 - first]})
        key[item.id] = {"A": first, "B": 1 - first}
    return shown, key


def page_id(shown: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()[:12]


def write_page(items: list[Item], out: Path, *, title: str, kind: str, runs: tuple[str, str],
               seed: int, about: dict[str, Any]) -> tuple[Path, Path]:
    """Write compare.html (what raters open) and key.json (kept by whoever unblinds) into ``out``."""
    shown, key = blind(items, seed)
    pid = page_id(shown)
    data = {"page": pid, "title": title, "scales": list(SCALES.get(kind, ())), "items": shown}
    embedded = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")  # no early </script>
    html = PAGE_TEMPLATE.read_text().replace("__TITLE__", _html_text(title)).replace("__DATA__", embedded)
    out.mkdir(parents=True, exist_ok=True)
    page, key_file = out / "compare.html", out / "key.json"
    page.write_text(html, encoding="utf-8")
    key_file.write_text(json.dumps({"page": pid, "runs": list(runs), "seed": seed, **about,
                                    "items": {i.id: {**key[i.id], "index": i.index} for i in items}}, indent=2))
    return page, key_file


def _html_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_comparison(run_a: str, run_b: str, *, task_name: str, split: str, n: int, seed: int, out: Path,
                     beams: int = 1, max_new_tokens: int = 64, batch_size: int = 16, device: str = "auto",
                     precision: str = "auto", log=print) -> tuple[Path, Path]:
    """Sample n inputs of a task split (seeded), generate from both runs, write the blinded page and key."""
    task = get_task(task_name)
    check_splits(task, [split])
    for run in (run_a, run_b):
        if not RunFolder(run).is_run():
            raise MissingFile(f"{run} is not a run folder (no {RunFolder(run).settings_file.name}); pass two "
                              f"training run folders")
    sources, references, where = load_pairs(task, split)
    usable = usable_pairs(sources, references)
    picked = [usable[k] for k in sample_indices(len(usable), n, seed)]
    srcs, refs = [sources[i] for i in picked], [references[i] for i in picked]
    outputs = []
    for run in (run_a, run_b):
        loaded = load_run(run)
        where_to, dtype = choose_device(device, run_precision=loaded.settings.train.precision, precision=precision)
        hf, _ = to_hf(loaded)
        hyps, _ = generate_for_task(hf.to(device=where_to, dtype=dtype), loaded.tokenizer, task, srcs, refs,
                                    seq_len=loaded.settings.data.seq_len, max_target=loaded.settings.task.max_target_tokens,
                                    beams=beams, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=False)
        outputs.append(hyps)
        log(f"generated {len(hyps)} outputs with {run} ({loaded.checkpoint.name})")
    items = [Item(f"{task.name}-{split}-{i}", i, s, r, (a, b))
             for i, s, r, a, b in zip(picked, srcs, refs, outputs[0], outputs[1], strict=True)]
    return write_page(items, out, title=f"{task.name} ({split}): {n} items", kind=task.kind, runs=(run_a, run_b),
                      seed=seed, about={"task": task.name, "split": split, "data": where, "beams": beams,
                                        "max_new_tokens": max_new_tokens})

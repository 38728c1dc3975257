"""What the checkpoint checksums cost a save: each rung's real DeepSpeed checkpoint (ZeRO-2, fp32, one process, the
product's own save_checkpoint), the save timed whole, and the checksum pass over the same files timed alone, with
xxHash's XXH3-128 (what the save records) beside SHA-256 (what it would cost instead).

    python benchmarks/checksums.py                       # micro, tiny, small; 3 saves each
    python benchmarks/checksums.py --models base --repeats 5

Every save is written to the page cache as the run's would be (no fsync, as DeepSpeed's torch.save), so the save
times here are the fastest a disk allows and the checksums' share the largest it will be; on a network or local
file system that writes at 1-2 GB/s the share falls further. Median of the repeats.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mdtable import print_table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _sha256(folder: Path) -> None:
    for path in sorted(folder.iterdir()):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)


def measure(model_name: str, repeats: int) -> list[str]:
    import torch.distributed as dist

    from hypros_lm.config import OptimSettings, TrainSettings
    from hypros_lm.models import ModelSettings, build_model
    from hypros_lm.runs import META, _checksums, save_checkpoint
    from hypros_lm.training.engine import build_engine, load_ds_config

    model = build_model(ModelSettings(name=model_name), 8192, attention="sdpa")
    ds = load_ds_config(TrainSettings(ds_config="zero2", micro_batch_size=1), OptimSettings(), 1,
                        hidden_size=model.lm.config.hidden_size)
    engine = build_engine(model, ds, OptimSettings())
    saves, xxh, sha = [], [], []
    with tempfile.TemporaryDirectory(dir=REPO / "runs" if (REPO / "runs").is_dir() else None) as tmp:
        for step in range(1, repeats + 1):
            start = time.perf_counter()
            folder = save_checkpoint(engine, Path(tmp), step, {}, keep=1)
            saves.append(time.perf_counter() - start)
            (folder / META).rename(folder.parent / "meta.aside")  # the checksum pass sees the files it saw in the save
            start = time.perf_counter()
            _checksums(folder, dist.get_rank(), dist.get_world_size())
            xxh.append(time.perf_counter() - start)
            start = time.perf_counter()
            _sha256(folder)
            sha.append(time.perf_counter() - start)
            (folder.parent / "meta.aside").rename(folder / META)
        size = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
    save, x, s = (statistics.median(v) for v in (saves, xxh, sha))
    params = model.num_parameters() / 1e6
    return [model_name, f"{params:.1f}M", f"{size:,.0f}", f"{save:.3f}", f"{x:.3f}", f"{100 * x / (save - x):.1f} %",
            f"{s:.3f}", f"{100 * s / (save - x):.1f} %"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["micro", "tiny", "small"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import deepspeed

    os.environ.setdefault("MASTER_PORT", "29533")
    deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)
    rows = [measure(name, args.repeats) for name in args.models]
    print_table(["rung", "parameters", "checkpoint MiB", "save s (checksums included)", "xxh3_128 s",
                 "xxh3_128 / save without", "sha256 s", "sha256 / save without"], rows)


if __name__ == "__main__":
    main()

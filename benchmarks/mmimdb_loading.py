"""Benchmark MM-IMDb training loops: in-memory tensors against per-sample HDF5 reads.

    python benchmarks/mmimdb_loading.py [--path FILE] [--epochs 1] [--device auto]

Without ``--path``, the script writes a full-size synthetic file with the release's shapes
to a temporary folder: 25,959 rows, 300 + 4,096 features and 23 genres, without images. Both loops
train the same fused model (Joint-global, AdamW 1e-3, batch 128, binary cross-entropy) on
the training split and are timed side by side in one run:

- ``in-memory``: ``load_mmimdb`` reads the file once into tensors on the device, then
  batches are tensor slices (the library's loop).
- ``per-sample HDF5``: an ``HDF5GenreDataset`` behind a shuffling ``DataLoader``
  (``--workers`` processes), reading one row per sample, as public multimodal toolkits do.

Each loop is also timed without the model (loading only). Results are printed and written
to ``benchmarks/results/mmimdb_loading-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from mslr_utils.data.mmimdb import RELEASE_SPLITS, HDF5GenreDataset, load_mmimdb, write_fixture
from mslr_utils.tasks import mmimdb_model_factory
from mslr_utils.utils import resolve_device

REPO_ROOT = Path(__file__).resolve().parents[1]
BATCH_SIZE = 128


def train_step(model, optimizer, inputs, labels) -> None:
    loss = F.binary_cross_entropy_with_logits(model(inputs).logits, labels.float())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def in_memory_epoch(split, model, optimizer, device, generator) -> float:
    start = time.perf_counter()
    for inputs, labels in split.batches(BATCH_SIZE, shuffle=True, generator=generator):
        if model is not None:
            train_step(model, optimizer, inputs, labels)
    synchronize(device)
    return time.perf_counter() - start


def per_sample_epoch(loader, model, optimizer, device) -> float:
    start = time.perf_counter()
    for batch in loader:
        if model is None:
            continue
        inputs = {m: {"features": batch[m].to(device, non_blocking=True)} for m in ("text", "visual")}
        train_step(model, optimizer, inputs, batch["genres"].to(device))
    synchronize(device)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, help="an existing MM-IMDb file (default: write a synthetic one)")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per loop")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes for the per-sample loop")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)

    with tempfile.TemporaryDirectory() as scratch:
        path = args.path
        if path is None:
            start = time.perf_counter()
            path = write_fixture(Path(scratch) / "mmimdb_full.hdf5", split_rows=(15552, 2608, 7799))
            print(f"wrote a full-size synthetic file in {time.perf_counter() - start:.1f} s")

        start = time.perf_counter()
        task = load_mmimdb(path, device=device, standardize=False)
        load_seconds = time.perf_counter() - start
        train = task.splits["train"]
        train_start, train_stop = RELEASE_SPLITS["train"]
        loader = DataLoader(HDF5GenreDataset(path, train_start, train_stop), batch_size=BATCH_SIZE, shuffle=True,
                            num_workers=args.workers, persistent_workers=args.workers > 0)
        make_model = mmimdb_model_factory()

        timings = {"in-memory": {"train": [], "loading only": []}, "per-sample HDF5": {"train": [], "loading only": []}}
        for loop in timings:
            model = make_model(["text", "visual"]).to(device)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            generator = torch.Generator().manual_seed(0)
            for _ in range(args.epochs):
                if loop == "in-memory":
                    timings[loop]["train"].append(in_memory_epoch(train, model, optimizer, device, generator))
                    timings[loop]["loading only"].append(in_memory_epoch(train, None, None, device, generator))
                else:
                    timings[loop]["train"].append(per_sample_epoch(loader, model, optimizer, device))
                    timings[loop]["loading only"].append(per_sample_epoch(loader, None, None, device))

    best = {loop: {kind: min(values) for kind, values in kinds.items()} for loop, kinds in timings.items()}
    ratios = {kind: best["per-sample HDF5"][kind] / best["in-memory"][kind] for kind in ("train", "loading only")}
    record = {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "train_rows": len(train),
        "batch_size": BATCH_SIZE,
        "workers": args.workers,
        "load_seconds": round(load_seconds, 2),
        "epoch_seconds": {loop: {k: [round(v, 3) for v in vs] for k, vs in kinds.items()} for loop, kinds in timings.items()},
        "ratio_per_sample_over_in_memory": {k: round(v, 1) for k, v in ratios.items()},
        "date": time.strftime("%Y-%m-%d"),
    }
    results = REPO_ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / f"mmimdb_loading-{device.type}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"one-time load into tensors: {load_seconds:.1f} s")
    print("| loop | epoch with model (s) | loading only (s) |\n|---|---|---|")
    for loop in timings:
        print(f"| {loop} | {best[loop]['train']:.2f} | {best[loop]['loading only']:.2f} |")
    print(f"| ratio | {ratios['train']:.1f}x | {ratios['loading only']:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark one MELD epoch at the release's size: training, validation scoring and conductance.

    python benchmarks/meld_epoch.py [--root FOLDER] [--device auto] [--conductance-dialogues 50]

Without ``--root``, the script writes a synthetic release with MELD's dialogue counts
(1,038 / 114 / 280 dialogues, 2 to 24 utterances each, 1,422 audio values per utterance)
to a temporary folder. The model is the fused model of notebook 03 (Joint-global, AdamW
5e-4, batches of 10 dialogues). The script times one training epoch, the scoring of the
validation split, and the per-epoch conductance of both modalities on
``--conductance-dialogues`` validation dialogues at 20 steps (the ``paper`` profile's settings). The record goes to
``benchmarks/results/meld_epoch-<device>.json``; the projection for the ``paper`` profile
(7 models, 100 epochs) is in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from mslr_utils.conductance import conductance_callback
from mslr_utils.data.meld import load_meld_task, write_miniature
from mslr_utils.io import write_json
from mslr_utils.tasks import meld_model_factory
from mslr_utils.training import RunSpec, Trainer, TrainSettings, predict
from mslr_utils.utils import resolve_device

REPO_ROOT = Path(__file__).resolve().parents[1]
RELEASE_DIALOGUES = (1038, 114, 280)


def timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", help="MELD release folder; default: a synthetic one of the release's size")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--conductance-dialogues", type=int, default=50, help="validation dialogues attributed")
    args = parser.parse_args()
    device = resolve_device(args.device)

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.root) if args.root else write_miniature(
            Path(scratch) / "meld", dialogues=RELEASE_DIALOGUES, max_length=24, seed=0)
        task, load_seconds = timed(lambda: load_meld_task(root))
    splits = {name: split.to(device) for name, split in task.splits.items()}
    make_model = meld_model_factory(task.embeddings)
    model = make_model(["text", "audio"]).to(device)
    settings = TrainSettings(epochs=1, batch_size=10, selection_metric="f1_weighted", dynamic_metric="f1_weighted")
    attributed = splits["val"].subset(range(min(args.conductance_dialogues, len(splits["val"]))))
    record_conductance = conductance_callback(attributed, n_steps=20, batch_size=4)("Joint-global")
    conductance_seconds = []

    def timed_conductance(model, epoch):
        values, seconds = timed(lambda: record_conductance(model, epoch))
        conductance_seconds.append(seconds)
        return values

    trainer = Trainer(model, RunSpec("Joint-global", "joint_global", 5e-4), settings, task.class_names,
                      epoch_callback=timed_conductance)
    result = trainer.fit(splits["train"], splits["val"])
    # Scoring the validation split again gives its share of the epoch.
    _, score_seconds = timed(lambda: predict(model, splits["val"]))
    epoch_seconds = result.seconds
    train_seconds = epoch_seconds - score_seconds - conductance_seconds[0]
    conductance_seconds = conductance_seconds[0]
    record = {
        "synthetic": args.root is None,
        "device": device.type,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "sizes": task.sizes.to_dict(orient="index"),
        "load_seconds": round(load_seconds, 2),
        "train_epoch_seconds": round(train_seconds, 2),
        "validation_scoring_seconds": round(score_seconds, 2),
        "conductance_seconds": round(conductance_seconds, 2),
        "conductance_dialogues": len(attributed),
        "epoch_seconds": round(epoch_seconds, 2),
    }
    write_json(REPO_ROOT / "benchmarks" / "results" / f"meld_epoch-{device.type}.json", record)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()

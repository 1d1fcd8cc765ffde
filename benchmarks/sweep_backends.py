"""Benchmark the learning-rate search with the in-process backend and with Ray Tune, side by side.

    python benchmarks/sweep_backends.py [--profile smoke] [--workers 2] [--repeats 2]

Sets up the search of ``notebooks/01_reviews_mslr.ipynb`` (reviews task, MiniLM text
encoder, tabular MLP, conductance after each epoch) with the profile's parameters. Then it
runs the same search with three backends in this process. Each search starts with an
empty checkpoint folder, so that nothing is resumed:

- ``sequential``: the default backend, torch with its default thread count;
- ``sequential-1-thread``: the same with one torch thread per run, the reference that Ray
  must match;
- ``ray``: a local Ray instance with ``--workers`` CPUs and one CPU (one torch thread) per
  trial. Its wall time includes starting and stopping Ray.

The three searches run ``--repeats`` times in turn, and the table reports the fastest of
each backend, because the first search in a process also pays one-time costs (reading the
encoder's weights from disk, lazy imports). Prints a Markdown table and writes ``benchmarks/results/sweep_backends-<profile>.json``.
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

import numpy as np
import psutil
import torch
import yaml
from sklearn.utils.class_weight import compute_class_weight

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "01_reviews_mslr"


def notebook_defaults() -> dict:
    """Read the default parameters of notebook 01 with papermill's own parser."""
    from papermill.inspection import inspect_notebook

    from mslr_utils.runner import parse_value

    parameters = inspect_notebook(str(REPO_ROOT / "notebooks" / f"{NOTEBOOK}.ipynb"))
    return {name: parse_value(info["default"]) for name, info in parameters.items()}


def search_inputs(params: dict) -> dict:
    """Build the arguments of ``search_learning_rates`` as the notebook does, on the CPU."""
    from mslr_utils.conductance import conductance_callback
    from mslr_utils.data.reviews import DEFAULT_PATH, load_reviews_task
    from mslr_utils.models import TextEncoder
    from mslr_utils.tasks import cache_text, reviews_model_factory
    from mslr_utils.training import TrainSettings
    from mslr_utils.utils import fingerprint, seed_everything

    seed_everything(params["seed"])
    text_encoder = TextEncoder(None, hidden=params["top_units"], finetune_layers=params["finetune_layers"])
    task = load_reviews_task(
        lambda texts: text_encoder.tokenize(texts, params["max_length"]), path=DEFAULT_PATH, seed=params["seed"],
        max_train=params["max_train"], max_val=params["max_val"], max_test=params["max_test"],
    )
    splits = cache_text(text_encoder, {"train": task.splits["train"], "val": task.splits["val"]})
    conductance_split = splits["val"].subset(range(min(params["conductance_samples"], len(splits["val"]))))
    make_model = reviews_model_factory(
        tabular_dim=splits["train"].inputs["tabular"]["features"].shape[1], num_classes=task.num_classes,
        finetune_layers=params["finetune_layers"], top_units=params["top_units"], dropout=params["dropout"],
        seed=params["seed"],
    )
    labels = splits["train"].labels.numpy()
    class_weights = tuple(compute_class_weight("balanced", classes=np.arange(task.num_classes), y=labels))
    settings = TrainSettings(
        epochs=params["epochs"], batch_size=params["batch_size"], selection_metric=params["selection_metric"],
        dynamic_metric=params["selection_metric"], snapshot_epochs=(params["early_epoch"],),
        class_weights=class_weights, seed=params["seed"],
    )
    config_extra = {"task": "reviews", "data": fingerprint({k: s.ids for k, s in splits.items()}),
                    "max_length": params["max_length"], "finetune_layers": params["finetune_layers"],
                    "top_units": params["top_units"], "dropout": params["dropout"],
                    "conductance": [params["conductance_samples"], params["conductance_steps"]]}
    return dict(
        make_model=make_model, train=splits["train"], val=splits["val"],
        unimodal_grids={"text": params["text_lr_grid"], "tabular": params["tabular_lr_grid"]},
        global_grid=params["global_lr_grid"], settings=settings, class_names=task.class_names,
        callback_factory=conductance_callback(conductance_split, n_steps=params["conductance_steps"]),
        config_extra=config_extra,
    )


def timed_search(inputs: dict, backend) -> dict:
    from mslr_utils.experiment import search_learning_rates

    with tempfile.TemporaryDirectory(prefix="mslr-sweep-benchmark-") as scratch:
        start = time.perf_counter()
        search = search_learning_rates(**inputs, checkpoint_dir=Path(scratch) / "checkpoints", backend=backend)
        wall = time.perf_counter() - start
    trials = search.sweep[["trial", "status", "best_epoch", "best_score", "seconds", "wall_seconds", "threads"]]
    return {
        "wall_seconds": round(wall, 1),
        "trial_wall_seconds_sum": round(float(search.sweep["wall_seconds"].sum()), 1),
        "unimodal_lrs": search.unimodal_lrs,
        "global_lr": search.global_lr,
        "trials": json.loads(trials.round(4).to_json(orient="records")),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke", help="profile folder under notebooks/profiles (default: smoke)")
    parser.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray instance, one per trial (default: 2)")
    parser.add_argument("--repeats", type=int, default=2, help="searches per backend; the fastest is reported (default: 2)")
    args = parser.parse_args()

    from mslr_utils.sweep import RayBackend, SequentialBackend

    profile_path = REPO_ROOT / "notebooks" / "profiles" / args.profile / f"{NOTEBOOK}.yaml"
    params = {**notebook_defaults(), **yaml.safe_load(profile_path.read_text(encoding="utf-8"))}
    setup_start = time.perf_counter()
    inputs = search_inputs(params)
    setup = time.perf_counter() - setup_start
    threads = torch.get_num_threads()

    backends = {
        "sequential": SequentialBackend(),
        "sequential-1-thread": SequentialBackend(cpus_per_trial=1),
        "ray": RayBackend(cpus_per_trial=1, num_cpus=args.workers),
    }
    load_before = os.getloadavg()
    runs: dict[str, dict] = {}
    for repeat in range(args.repeats):
        for name, backend in backends.items():
            print(f"repeat {repeat + 1}: running the search with the {name} backend", flush=True)
            run = timed_search(inputs, backend)
            walls = runs.get(name, {}).get("all_wall_seconds", []) + [run["wall_seconds"]]
            if name not in runs or run["wall_seconds"] < runs[name]["wall_seconds"]:
                runs[name] = run
            runs[name]["all_wall_seconds"] = walls

    reference = {t["trial"]: t["best_score"] for t in runs["sequential-1-thread"]["trials"]}
    ray_difference = max(abs(t["best_score"] - reference[t["trial"]]) for t in runs["ray"]["trials"])
    record = {
        "profile": args.profile,
        "notebook": NOTEBOOK,
        "trials": len(runs["ray"]["trials"]),
        "ray_workers": args.workers,
        "repeats": args.repeats,
        "setup_seconds": round(setup, 1),
        "backends": runs,
        "speedup_ray_over_sequential": round(runs["sequential"]["wall_seconds"] / runs["ray"]["wall_seconds"], 2),
        "max_best_score_difference_ray_vs_sequential_1_thread": ray_difference,
        # Load averages (1, 5, 15 min) before and after the searches, which show whether other
        # processes shared the CPUs.
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "machine": {
            "cpu_cores": os.cpu_count(),
            "torch_threads": threads,
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "ray": __import__("ray").__version__,
            "device": "cpu",
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    results = REPO_ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / f"sweep_backends-{args.profile}.json").write_text(json.dumps(record, indent=2) + "\n")

    print(f"\n{record['trials']} trials, profile {args.profile}\n")
    print("| backend | search wall time, fastest (s) | every repeat (s) | sum of trial wall times (s) |")
    print("|---|---:|---|---:|")
    for name, run in runs.items():
        every = ", ".join(str(w) for w in run["all_wall_seconds"])
        print(f"| {name} | {run['wall_seconds']} | {every} | {run['trial_wall_seconds_sum']} |")
    print(f"\nsequential / ray: {record['speedup_ray_over_sequential']}x; "
          f"largest best-score difference, ray vs sequential-1-thread: {ray_difference:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

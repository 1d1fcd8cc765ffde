"""Benchmark the main job: wall time, peak memory and training time per model.

    python benchmarks/main_job.py [--profile default] [--write-figures]

Runs ``python -m mslr_utils.runner run`` with the profile and a fresh, empty checkpoint
folder (so no run is resumed), sampling the resident memory of the runner and of its
notebook kernel every 0.2 s. Results are printed as a Markdown table and written to
``benchmarks/results/main_job-<profile>.json``. Without ``--write-figures`` the tables
and figures go to a temporary folder instead of ``figures/``.
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

import psutil
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--notebook", default="01_reviews_mslr")
    parser.add_argument("--write-figures", action="store_true", help="keep the profile's output_dir")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        output_dir = None
        command = [sys.executable, "-m", "mslr_utils.runner", "run", "--profile", args.profile,
                   "--notebooks", args.notebook, "--output-dir", str(Path(scratch) / "executed"),
                   "-p", f"checkpoint_dir={Path(scratch) / 'checkpoints'}"]
        if not args.write_figures:
            output_dir = Path(scratch) / "figures"
            command += ["-p", f"output_dir={output_dir}"]
        start = time.perf_counter()
        process = psutil.Popen(command, cwd=REPO_ROOT)
        peak = 0
        while process.poll() is None:
            peak = max(peak, tree_rss(process))
            time.sleep(0.2)
        wall = time.perf_counter() - start
        if process.returncode != 0:
            print(f"main job failed with exit code {process.returncode}", file=sys.stderr)
            return process.returncode
        if output_dir is None:
            import yaml

            profile = yaml.safe_load((REPO_ROOT / "notebooks/profiles" / args.profile / f"{args.notebook}.yaml").read_text())
            output_dir = (REPO_ROOT / "notebooks" / profile["output_dir"]).resolve()
        summary = json.loads((output_dir / "run_summary.json").read_text())
        timings = json.loads((Path(scratch) / "checkpoints" / "timings.json").read_text())

    record = {
        "profile": args.profile,
        "notebook": args.notebook,
        "wall_seconds": round(wall, 1),
        "peak_rss_mib": round(peak / 2**20),
        "training_seconds": timings,
        "machine": {
            "cpu_cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "device": summary["device"],
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    results = REPO_ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / f"main_job-{args.profile}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"| profile | wall (s) | peak RSS (MiB) |\n|---|---|---|\n| {args.profile} | {wall:.0f} | {peak / 2**20:.0f} |")
    print("\n| run | training (s) |\n|---|---|")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

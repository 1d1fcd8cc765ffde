"""Reproduce every table and conductance plot: task notebooks over seeds, then the analyses.

    python -m mslr_utils.reproduce run --profile smoke
    python -m mslr_utils.reproduce run --profile paper --meld-root data/meld --seeds 0 1 2
    python -m mslr_utils.reproduce readme --results figures/reproduce/default

``run`` executes, with papermill, each task notebook whose data is present once per seed
(``seeds`` in ``notebooks/profiles/<profile>/reproduce.yaml``), then the analysis notebooks
05 to 07 over all of them. A task whose data is absent is skipped with a one-line reason.
The split and any synthetic data stay fixed (``data_seed``) while the seed of the weights
and the batch order changes, so every seed is scored on the same test items.

A finished notebook is not run again while its inputs are unchanged: the notebook file,
its parameters, the library's source, its data files (size and modification time) and,
for the analyses, the task results they read. Each finished run records those inputs and
the SHA-256 of every file it wrote in ``<results>/.reproduce/``; a missing or changed
output reruns that notebook alone. Training resumes from per-epoch checkpoints, and every
notebook writes into a staging folder that replaces its results only when it finishes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from mslr_utils.io import write_json, write_text
from mslr_utils.runner import (
    KERNEL_ARGUMENTS,
    KERNEL_NAME,
    NOTEBOOK_DIR,
    PROFILE_DIR,
    REPO_ROOT,
    SkipPapermillMarkers,
    check_parameter_names,
    load_profile,
    quiet_environment,
    shown,
)
from mslr_utils.utils import code_fingerprint, fingerprint

log = logging.getLogger(__name__)

README_START = "<!-- reproduce-results:start -->"
README_END = "<!-- reproduce-results:end -->"


@dataclass(frozen=True)
class TaskNotebook:
    """A task notebook, the parameter naming its data, and how to test its models against each other."""

    name: str
    data_parameter: str | None  # path parameter of the release; None for the embedded task
    fixture_parameter: str | None  # True writes synthetic data with the release layout first
    metric: str  # test metric of the significance tests
    multilabel: bool = False


TASKS = (
    TaskNotebook("01_reviews_mslr", None, None, "f1_macro"),
    TaskNotebook("02_muse_stress", "muse_root", "write_miniature_first", "accuracy"),
    TaskNotebook("03_meld_sentiment", "meld_root", "write_miniature_first", "f1_weighted"),
    TaskNotebook("04_mmimdb_genre", "hdf5_path", "write_fixture_first", "f1_micro", multilabel=True),
)
ANALYSES = ("05_conductance", "06_prediction_similarity", "07_paper_tables")
DATA_OPTIONS = {"muse_root": "--muse-root", "meld_root": "--meld-root", "hdf5_path": "--mmimdb-hdf5"}


# -- inputs and their fingerprints ----------------------------------------------------
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_signature(path: Path) -> list:
    """Return (relative path, size, modification time) of a data file or of every file in a folder."""
    if path.is_file():
        stat = path.stat()
        return [[path.name, stat.st_size, stat.st_mtime_ns]]
    return [[str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns]
            for p in sorted(path.rglob("*")) if p.is_file()]


def output_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def load_settings(profile: str) -> dict:
    """Read ``reproduce.yaml`` of a profile: ``seeds`` and ``bootstrap_resamples``."""
    folder = PROFILE_DIR / profile
    if not folder.is_dir():
        available = sorted(p.name for p in PROFILE_DIR.iterdir() if (p / "reproduce.yaml").is_file())
        raise SystemExit(f"profile {profile!r} not found in {shown(PROFILE_DIR)}: choose one of {available}")
    path = folder / "reproduce.yaml"
    if not path.is_file():
        raise SystemExit(f"{shown(path)} not found: a profile used by reproduce needs its seeds there")
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise SystemExit(f"{shown(path)} is not valid YAML: {error}") from None
    if not isinstance(settings, dict):
        raise SystemExit(f"{shown(path)}: expected a mapping with seeds and bootstrap_resamples")
    seeds = settings.get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int and s >= 0 for s in seeds):
        raise SystemExit(f"{shown(path)}: seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    return settings


def resolve_data(task: TaskNotebook, parameters: dict) -> tuple[bool, str, list]:
    """Return (present, reason if absent, data signature) for a task's data."""
    if task.data_parameter is None:
        from mslr_utils.data.reviews import DEFAULT_PATH, PREPARE_COMMAND

        if not DEFAULT_PATH.is_file():
            return False, f"{shown(DEFAULT_PATH)} not found; run {PREPARE_COMMAND}", []
        return True, "", data_signature(DEFAULT_PATH)
    if task.fixture_parameter and parameters.get(task.fixture_parameter):
        return True, "", ["synthetic"]
    value = parameters.get(task.data_parameter)
    if not value:
        return False, f"no {task.data_parameter} given; pass {DATA_OPTIONS[task.data_parameter]} PATH", []
    path = Path(value) if Path(value).is_absolute() else (NOTEBOOK_DIR / value).resolve()
    if not path.exists():
        return False, f"{shown(path)} not found; pass {DATA_OPTIONS[task.data_parameter]} PATH", []
    return True, "", data_signature(path)


def git_commit() -> str | None:
    """Return the repository's HEAD commit, with ``+changes`` when tracked files differ from it (None outside git)."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty else "")


# -- one notebook -----------------------------------------------------------------------
@dataclass
class Outcome:
    notebook: str
    seed: int | None
    status: str  # ran, skipped (up to date), absent (no data), failed
    seconds: float
    output: str
    reason: str = ""


class Reproduction:
    """Run the task notebooks over seeds and the analyses, skipping what is up to date."""

    def __init__(self, profile: str, results: Path, checkpoints: Path, data: dict,
                 seeds: list[int] | None = None, selected: list[str] | None = None, force: bool = False,
                 verbose: bool = False):
        self.profile = profile
        self.settings = load_settings(profile)
        self.seeds = list(seeds) if seeds else list(self.settings["seeds"])
        self.results = results.resolve()
        self.checkpoints = checkpoints.resolve()
        self.data = {k: str(Path(v).resolve()) for k, v in data.items() if v}
        known = [t.name for t in TASKS] + list(ANALYSES)
        unknown = sorted(set(selected or []) - set(known))
        if unknown:
            raise SystemExit(f"unknown notebook {unknown}: choose from {known}")
        if any(s < 0 for s in self.seeds):
            raise SystemExit(f"seeds must be integers >= 0, got {self.seeds}")
        self.selected = selected
        self.force = force
        self.verbose = verbose
        self.state_dir = self.results / ".reproduce"
        self.executed = self.state_dir / "executed"
        self.outcomes: list[Outcome] = []
        self.code = code_fingerprint()
        self.commit = git_commit()

    def is_selected(self, name: str) -> bool:
        return not self.selected or name in self.selected

    def state_path(self, label: str) -> Path:
        return self.state_dir / f"{label}.json"

    def up_to_date(self, label: str, inputs: str, output: Path) -> bool:
        path = self.state_path(label)
        if self.force or not path.is_file() or not output.is_dir():
            return False
        state = json.loads(path.read_text(encoding="utf-8"))
        return state.get("inputs") == inputs and state.get("outputs") == output_hashes(output)

    def execute(self, notebook: Path, parameters: dict, label: str, output: Path, inputs: str,
                seed: int | None) -> Outcome:
        import papermill

        if self.up_to_date(label, inputs, output):
            print(f"[{label}] up to date, skipped: {shown(output)}", flush=True)
            return Outcome(notebook.stem, seed, "skipped", 0.0, shown(output))
        check_parameter_names(notebook, parameters)
        executed = self.executed / f"{label}.ipynb"
        executed.parent.mkdir(parents=True, exist_ok=True)
        print(f"[{label}] running {shown(notebook)} -> {shown(output)}", flush=True)
        start = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(notebook), str(executed), parameters=parameters, kernel_name=KERNEL_NAME,
                cwd=str(NOTEBOOK_DIR), progress_bar=False, log_output=True, extra_arguments=KERNEL_ARGUMENTS,
            )
        except Exception as error:  # a cell error, a kernel crash or a timeout
            seconds = time.perf_counter() - start
            reason = f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"
            print(f"[{label}] FAILED after {seconds:.0f} s: {reason}; executed copy: {shown(executed)}",
                  file=sys.stderr, flush=True)
            return Outcome(notebook.stem, seed, "failed", seconds, shown(output), reason)
        seconds = time.perf_counter() - start
        write_json(self.state_path(label), {"inputs": inputs, "outputs": output_hashes(output),
                                            "seconds": round(seconds, 1), "commit": self.commit})
        print(f"[{label}] finished in {seconds:.0f} s", flush=True)
        return Outcome(notebook.stem, seed, "ran", seconds, shown(output))

    # -- the steps --------------------------------------------------------------------
    def run_tasks(self) -> None:
        for task in TASKS:
            if not self.is_selected(task.name):
                continue
            notebook = NOTEBOOK_DIR / f"{task.name}.ipynb"
            profile_values = load_profile(self.profile, notebook)
            if profile_values is None:
                reason = f"profile {self.profile!r} has no {task.name}.yaml"
                print(f"[{task.name}] skipped: {reason}", flush=True)
                self.outcomes.append(Outcome(task.name, None, "absent", 0.0, "", reason))
                continue
            base = {**profile_values, **{k: v for k, v in self.data.items() if k == task.data_parameter}}
            if task.data_parameter in self.data and task.fixture_parameter:
                base[task.fixture_parameter] = False  # a given release replaces the synthetic data
            present, reason, signature = resolve_data(task, base)
            if not present and task.data_parameter in self.data:
                # The user named this release, so a wrong path is an error, not a task to skip.
                print(f"[{task.name}] FAILED: {reason}", file=sys.stderr, flush=True)
                self.outcomes.append(Outcome(task.name, None, "failed", 0.0, "", reason))
                continue
            if not present:
                print(f"[{task.name}] skipped: {reason}", flush=True)
                self.outcomes.append(Outcome(task.name, None, "absent", 0.0, "", reason))
                continue
            for seed in self.seeds:
                label = f"{task.name}-seed-{seed}"
                output = self.results / task.name / f"seed-{seed}"
                parameters = {**base, "seed": seed, "data_seed": int(base.get("data_seed", 0) or 0),
                              "output_dir": str(output),
                              "checkpoint_dir": str(self.checkpoints / task.name / f"seed-{seed}")}
                inputs = fingerprint({"notebook": sha256_file(notebook), "code": self.code, "data": signature,
                                      "parameters": {k: v for k, v in parameters.items() if k != "checkpoint_dir"}})
                self.outcomes.append(self.execute(notebook, parameters, label, output, inputs, seed))

    def finished_task_states(self) -> dict[str, dict]:
        """Return the recorded outputs of every finished task run of the seeds, in this run or earlier ones.

        A task run that failed in this invocation is left out, so the analyses never read
        its previous results as if they were current.
        """
        failed = {f"{o.notebook}-seed-{o.seed}" for o in self.outcomes if o.status == "failed"}
        states = {}
        for task in TASKS:
            for seed in self.seeds:
                label = f"{task.name}-seed-{seed}"
                path = self.state_path(label)
                if label not in failed and path.is_file() and (self.results / task.name / f"seed-{seed}").is_dir():
                    states[label] = json.loads(path.read_text(encoding="utf-8"))["outputs"]
        return states

    def run_analyses(self) -> None:
        task_states = self.finished_task_states()
        finished = bool(task_states)
        for name in ANALYSES:
            if not self.is_selected(name):
                continue
            notebook = NOTEBOOK_DIR / f"{name}.ipynb"
            if not finished:
                reason = "no task results to analyse"
                print(f"[{name}] skipped: {reason}", flush=True)
                self.outcomes.append(Outcome(name, None, "absent", 0.0, "", reason))
                continue
            output = self.results / name
            parameters = {"results_root": str(self.results), "seeds": self.seeds, "output_dir": str(output)}
            if name == "07_paper_tables":
                parameters["bootstrap_resamples"] = int(self.settings.get("bootstrap_resamples", 1000))
            inputs = fingerprint({"notebook": sha256_file(notebook), "code": self.code, "parameters": parameters,
                                  "tasks": task_states})
            self.outcomes.append(self.execute(notebook, parameters, name, output, inputs, None))

    def recorded_results(self) -> list[dict]:
        """Return every notebook result of the seeds on disk with the seconds its last run took."""
        records = []
        labels = [(t.name, seed, f"{t.name}-seed-{seed}") for t in TASKS for seed in self.seeds]
        labels += [(name, None, name) for name in ANALYSES]
        for notebook, seed, label in labels:
            path = self.state_path(label)
            if path.is_file():
                state = json.loads(path.read_text(encoding="utf-8"))
                records.append({"notebook": notebook, "seed": seed, "seconds": state.get("seconds", 0.0),
                                "commit": state.get("commit")})
        return records

    def summary(self, seconds: float) -> dict:
        import torch

        return {
            "results": self.recorded_results(),
            "profile": self.profile,
            "seeds": self.seeds,
            "commit": self.commit,
            "wall_seconds": round(seconds, 1),
            "hardware": {"machine": platform.machine(), "cpu_count": os.cpu_count(),
                         "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                         "python": platform.python_version(), "torch": torch.__version__},
            "notebooks": [o.__dict__ for o in self.outcomes],
        }

    def run(self) -> int:
        quiet_environment()
        show_cell_output(self.verbose)
        start = time.perf_counter()
        self.run_tasks()
        self.run_analyses()
        seconds = time.perf_counter() - start
        summary = self.summary(seconds)
        write_json(self.results / "reproduce_summary.json", summary)
        print_summary(summary, self.results)
        return 1 if any(o.status == "failed" for o in self.outcomes) else 0


class _ProgressLines(logging.Filter):
    """Keep one line per finished model from the cells' output (all of it when ``verbose``)."""

    def __init__(self, verbose: bool):
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage().strip()
        if self.verbose:
            return SkipPapermillMarkers().filter(record)
        # The trainer logs "run <model>: done after ..." once per model; keep those, and warnings.
        lines = [line for line in message.splitlines() if line.startswith("run ") and ": done after" in line]
        if lines:
            record.msg, record.args = "  " + "\n  ".join(lines), ()
            return True
        return record.levelno >= logging.WARNING


def show_cell_output(verbose: bool = False) -> None:
    """Stream a progress line per model (every cell's output with ``verbose``), not papermill's cell markers."""
    logger = logging.getLogger("papermill")
    logger.setLevel(logging.INFO)
    for old in [f for f in logger.filters if isinstance(f, _ProgressLines)]:
        logger.removeFilter(old)
    logger.addFilter(_ProgressLines(verbose))
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)


def print_summary(summary: dict, results: Path) -> None:
    print(f"\nprofile {summary['profile']}, seeds {summary['seeds']}: {summary['wall_seconds']:.0f} s in all")
    for item in summary["notebooks"]:
        seed = "" if item["seed"] is None else f" seed {item['seed']}"
        where = item["output"] or item["reason"]
        print(f"  {item['status']:<8} {item['notebook']}{seed}: {item['seconds']:.0f} s  {where}")
    print(f"results: {shown(results)}")


# -- README section -------------------------------------------------------------------
def results_markdown(results: Path) -> str:
    """Build the README's results section from a finished reproduction's summary and tables."""
    summary = json.loads((results / "reproduce_summary.json").read_text(encoding="utf-8"))
    hardware = summary["hardware"]
    device = hardware["gpu"] or f"{hardware['cpu_count']} CPU cores, no GPU"
    recorded = summary.get("results", [])
    tasks = sorted({r["notebook"] for r in recorded if r["seed"] is not None})
    compute = sum(r["seconds"] for r in recorded)
    absent = [n for n in summary["notebooks"] if n["status"] == "absent"]
    lines = [
        f"Generated by `python -m mslr_utils.reproduce readme` from `{shown(results)}`; do not edit by hand.",
        "",
        f"- Profile `{summary['profile']}`, seeds {', '.join(map(str, summary['seeds']))}; {device}; "
        f"Python {hardware['python']}, torch {hardware['torch']}.",
        f"- Code: {commits_line(recorded) or 'commit unknown'}.",
        f"- Time: {compute / 60:.1f} min for the last run of every notebook behind these results; "
        f"the last `run` command took {summary['wall_seconds'] / 60:.1f} min (up-to-date notebooks are skipped).",
        f"- Tasks with results: {', '.join(tasks) or 'none'}.",
    ]
    for item in absent:
        lines.append(f"- Skipped {item['notebook']}: {item['reason']}.")
    tables = results / "07_paper_tables"
    for path in sorted(tables.glob("*.md")):
        lines += ["", path.read_text(encoding="utf-8").strip()]
    return "\n".join(lines)


def commits_line(recorded: list[dict]) -> str:
    """Describe which commit produced which notebooks' results, e.g. ``a1b2c3 (01_reviews_mslr, 07_paper_tables)``."""
    by_commit: dict[str, list[str]] = {}
    for record in recorded:
        names = by_commit.setdefault(record.get("commit") or "unknown commit", [])
        if record["notebook"] not in names:
            names.append(record["notebook"])
    return "; ".join(f"{commit} ({', '.join(names)})" for commit, names in by_commit.items())


def update_readme(results: Path, readme: Path = REPO_ROOT / "README.md") -> None:
    """Replace the README's results block with ``results_markdown``; smoke results never go there."""
    summary = json.loads((results / "reproduce_summary.json").read_text(encoding="utf-8"))
    if summary["profile"] == "smoke":
        print("README not updated: the smoke profile runs on synthetic data")
        return
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise SystemExit(f"{shown(readme)} has no {README_START} ... {README_END} block to replace")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    write_text(readme, f"{head}{README_START}\n{results_markdown(results)}\n{README_END}{tail}")
    print(f"updated the results section of {shown(readme)} from {shown(results)}")


# -- command line ---------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mslr_utils.reproduce", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run every task notebook with data, over seeds, then the analyses")
    run.add_argument("--profile", default="default", help="profile folder under notebooks/profiles (default: default)")
    run.add_argument("--seeds", type=int, nargs="+", help="seeds to train (default: the profile's reproduce.yaml)")
    run.add_argument("--notebooks", nargs="+", help="only these notebooks, by name without .ipynb")
    run.add_argument("--results", help="results folder (default: figures/reproduce/<profile>)")
    run.add_argument("--checkpoints", help="checkpoint folder (default: runs/checkpoints/reproduce/<profile>)")
    run.add_argument("--muse-root", help="MuSE release folder")
    run.add_argument("--meld-root", help="folder with the MELD CSVs and feature pickles")
    run.add_argument("--mmimdb-hdf5", help="MM-IMDb multimodal_imdb.hdf5")
    run.add_argument("--force", action="store_true", help="run every notebook even when it is up to date")
    run.add_argument("--verbose", action="store_true", help="stream every cell's output, not one line per model")
    run.add_argument("--update-readme", action="store_true", help="rewrite the README's results section afterwards")
    readme = commands.add_parser("readme", help="rewrite the README's results section from a finished run")
    readme.add_argument("--results", required=True, help="results folder of a finished run")
    args = parser.parse_args(argv)

    if args.command == "readme":
        update_readme(Path(args.results).resolve())
        return 0
    results = Path(args.results) if args.results else REPO_ROOT / "figures" / "reproduce" / args.profile
    checkpoints = (Path(args.checkpoints) if args.checkpoints
                   else REPO_ROOT / "runs" / "checkpoints" / "reproduce" / args.profile)
    data = {"muse_root": args.muse_root, "meld_root": args.meld_root, "hdf5_path": args.mmimdb_hdf5}
    reproduction = Reproduction(args.profile, results, checkpoints, data, args.seeds, args.notebooks, args.force,
                                args.verbose)
    status = reproduction.run()
    if args.update_readme and status == 0:
        update_readme(reproduction.results)
    return status


if __name__ == "__main__":
    sys.exit(main())

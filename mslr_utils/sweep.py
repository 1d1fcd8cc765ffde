"""Sweeps of training runs: a list of trials in, a results table out.

A trial is one training run (a ``RunSpec``, its modalities and optionally its own seed).
``run_sweep`` trains every trial of a ``SweepTask`` with a backend and returns one table
row per trial plus the ``RunResult`` of each finished trial. Two backends compute the same
table for the same trials:

- ``SequentialBackend`` trains the trials one after another in this process (the default,
  no extra dependency);
- ``RayBackend`` runs them as Ray Tune trials, on a local Ray instance started for the
  sweep or on an existing cluster, with a CPU and GPU share per trial.

Within a trial torch uses as many threads as the trial's whole CPUs, so a sequential sweep
with ``cpus_per_trial=1`` and a Ray sweep with one CPU per trial run the same kernels.

A trial that fails with a non-finite loss (``FloatingPointError``) or runs out of memory is
recorded with status ``failed`` and its error, and the sweep goes on. Any other exception is
a bug in the task or the trial and is raised. With a ``checkpoint_dir``, each finished trial
is recorded atomically in ``<checkpoint_dir>/sweep/``. A rerun of the sweep loads finished
trials from their records and checkpoints instead of training them, and the Trainer resumes
an interrupted trial from its last finished epoch. Failed trials are retried.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import torch

from mslr_utils.data.splits import ModalSplit
from mslr_utils.io import write_json
from mslr_utils.models import LateFusionClassifier
from mslr_utils.training import EpochCallback, RunResult, RunSpec, Trainer, TrainSettings, slug
from mslr_utils.utils import code_fingerprint, fingerprint, seed_everything

log = logging.getLogger(__name__)

BACKENDS = ("sequential", "ray")
# Exceptions that fail one trial but not the sweep: a diverging run and exhausted memory.
TRIAL_FAILURES: tuple[type[BaseException], ...] = (FloatingPointError, torch.OutOfMemoryError, MemoryError)
RECORD_FOLDER = "sweep"
# Ray's switch that keeps a local instance on the loopback address (read by ray_constants).
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@dataclass(frozen=True)
class Trial:
    """One training run of a sweep.

    ``seed`` replaces ``TrainSettings.seed`` (the batch order) and seeds the global RNG
    before the model is built; None keeps the task's seed. A factory that seeds torch
    itself, as those in ``mslr_utils.tasks`` do, keeps its own initial weights. ``columns``
    are copied into the trial's row of the results table, for example the model name and
    rate of a learning-rate search.
    """

    spec: RunSpec
    modalities: tuple[str, ...]
    seed: int | None = None
    columns: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", tuple(self.modalities))
        if not self.modalities:
            raise ValueError(f"trial {self.spec.name!r}: give at least one modality")

    @property
    def key(self) -> str:
        """Identify the trial within its sweep: the run name, plus the seed when it is set."""
        return self.spec.name if self.seed is None else f"{self.spec.name}#seed{self.seed}"


@dataclass
class SweepTask:
    """Inputs shared by every trial of a sweep: model factory, splits, settings and folders.

    ``make_model`` and ``callback_factory`` must be picklable by cloudpickle for the Ray
    backend (lambdas and closures are). ``config_extra`` must name every setting of the
    model factory that changes a run, because it is part of the checkpoint fingerprint and
    of the key of each finished-trial record.
    """

    make_model: Callable[[Sequence[str]], LateFusionClassifier]
    train: ModalSplit
    val: ModalSplit
    settings: TrainSettings
    class_names: Sequence[str]
    checkpoint_dir: str | Path | None = None
    callback_factory: Callable[[str], EpochCallback | None] | None = None
    config_extra: Mapping | None = None


@dataclass
class SweepResult:
    """Results table (one row per trial, in the order given) and the finished trials' runs by trial key."""

    table: pd.DataFrame
    runs: dict[str, RunResult]


# -- one trial ------------------------------------------------------------------------


def trial_settings(trial: Trial, settings: TrainSettings) -> TrainSettings:
    return settings if trial.seed is None else replace(settings, seed=int(trial.seed))


def threads_for(cpus: float | None) -> int | None:
    """Return torch's thread count for a CPU share: its whole CPUs, at least 1; None keeps the current count."""
    if cpus is None:
        return None
    return max(1, int(math.floor(cpus)))


def base_row(trial: Trial) -> dict[str, Any]:
    lrs = trial.spec.lrs if isinstance(trial.spec.lrs, float) else dict(trial.spec.lrs)
    return {
        "trial": trial.key,
        **dict(trial.columns),
        "run": trial.spec.name,
        "strategy": trial.spec.strategy,
        "modalities": "+".join(trial.modalities),
        "lrs": json.dumps(lrs, sort_keys=True),
        "seed": trial.seed,
    }


def run_trial(trial: Trial, task: SweepTask, cpus: float | None = None) -> tuple[dict[str, Any], RunResult | None, str | None]:
    """Train one trial and return its table row, its run (None when it failed) and its checkpoint path.

    Sets torch's thread count from ``cpus`` for the duration of the trial and restores it
    afterwards. Exceptions in ``TRIAL_FAILURES`` give a row with status ``failed``.
    """
    settings = trial_settings(trial, task.settings)
    threads_before = torch.get_num_threads()
    threads = threads_for(cpus)
    row = base_row(trial)
    start = time.perf_counter()
    result, checkpoint_path = None, None
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        seed_everything(settings.seed)
        model = task.make_model(list(trial.modalities))
        trainer = Trainer(
            model, trial.spec, settings, task.class_names,
            checkpoint_dir=task.checkpoint_dir,
            epoch_callback=task.callback_factory(trial.spec.name) if task.callback_factory else None,
            config_extra=task.config_extra,
        )
        if trainer.checkpoint_path is not None:
            checkpoint_path = str(trainer.checkpoint_path)
        device = str(next(model.parameters()).device)
        result = trainer.fit(
            task.train.select_modalities(trial.modalities), task.val.select_modalities(trial.modalities)
        )
    except TRIAL_FAILURES as error:
        log.warning("trial %s failed: %s: %s", trial.key, type(error).__name__, error)
        row.update(failed_row(f"{type(error).__name__}: {error}", str(task.train.labels.device)))
    finally:
        torch.set_num_threads(threads_before)
    if result is not None:
        row.update(finished_row(result, settings.selection_metric, device))
    row["wall_seconds"] = time.perf_counter() - start
    row["threads"] = threads if threads is not None else threads_before
    return row, result, checkpoint_path


def finished_row(result: RunResult, metric: str, device: str) -> dict[str, Any]:
    scores = [float(v) for v in result.history[f"val_{metric}"]]
    return {
        "status": "ok",
        "error": "",
        "epochs": len(scores),
        "best_epoch": int(result.best_epoch),
        "best_score": max(scores),
        "val_scores": scores,
        "seconds": float(result.seconds),
        "device": device,
    }


def failed_row(error: str, device: str) -> dict[str, Any]:
    return {"status": "failed", "error": error, "epochs": 0, "best_epoch": 0, "best_score": float("nan"),
            "val_scores": [], "seconds": float("nan"), "device": device}


def load_run_result(path: str | os.PathLike) -> RunResult:
    """Rebuild the ``RunResult`` of a finished run from the checkpoint its Trainer wrote.

    The result equals ``Trainer.result()`` of that run, except that ``group_report`` is
    None because the checkpoint does not store it. Tensors load onto the CPU.
    """
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not state.get("finished"):
        raise ValueError(f"checkpoint {path} contains an unfinished run: rerun the sweep to finish it")
    spec = state["config"]["spec"]
    history = pd.DataFrame(state["history"])
    history.insert(0, "model", spec["name"])
    return RunResult(
        name=spec["name"],
        strategy=spec["strategy"],
        history=history,
        best_epoch=state["best"]["epoch"],
        best_state=state["best"]["state"],
        final_state=state["model"],
        snapshots=dict(state["snapshots"]),
        group_report=None,
        seconds=state.get("seconds", 0.0),
        modalities=list(state["config"]["modalities"]),
    )


# -- records of finished trials -----------------------------------------------------------


def record_path(trial: Trial, task: SweepTask) -> Path | None:
    """Return where a finished trial's row is recorded, or None without a ``checkpoint_dir``.

    The file name hashes everything that the Trainer's checkpoint fingerprint hashes and
    that is known before a model is built: run spec, modalities, settings, ``config_extra``
    and the library's code.
    """
    if task.checkpoint_dir is None:
        return None
    key = fingerprint({
        "spec": asdict(trial.spec),
        "modalities": list(trial.modalities),
        "settings": asdict(trial_settings(trial, task.settings)),
        "config_extra": dict(task.config_extra or {}),
        "code": code_fingerprint(),
    })
    return Path(task.checkpoint_dir) / RECORD_FOLDER / f"{slug(trial.key)}-{key}.json"


def load_record(trial: Trial, task: SweepTask) -> tuple[dict[str, Any], RunResult] | None:
    """Return the recorded row and run of a finished trial, or None when it must be trained."""
    path = record_path(trial, task)
    if path is None or not path.exists():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    checkpoint = Path(record["checkpoint"])
    if not checkpoint.exists():
        log.warning("trial %s: record %s names the missing checkpoint %s; training it again", trial.key, path, checkpoint)
        return None
    log.info("trial %s: loaded the finished trial from %s", trial.key, checkpoint)
    return record["row"], load_run_result(checkpoint)


def save_record(trial: Trial, task: SweepTask, row: Mapping[str, Any], checkpoint: str | None) -> None:
    path = record_path(trial, task)
    if path is not None and checkpoint is not None:
        write_json(path, {"row": dict(row), "checkpoint": str(Path(checkpoint).resolve())})


# -- backends -------------------------------------------------------------------------------


@dataclass
class SequentialBackend:
    """Train the trials one after another in this process.

    ``cpus_per_trial`` sets torch's thread count during each trial; None keeps the
    process's current count.
    """

    cpus_per_trial: float | None = None

    def run(self, trials: Sequence[Trial], task: SweepTask) -> list[tuple[dict, RunResult | None, str | None]]:
        return [run_trial(trial, task, self.cpus_per_trial) for trial in trials]


def _ray_trial(config: dict, task: SweepTask, trials: dict[str, Trial], cpus: float) -> None:
    """Ray Tune function trainable: train one trial and report its row as the trial's metrics."""
    from ray import tune

    row, _, checkpoint = run_trial(trials[config["trial"]], task, cpus)
    # Tune stores metrics as JSON; the list of scores travels as a JSON string.
    metrics = {**row, "val_scores": json.dumps(row["val_scores"]), "checkpoint": checkpoint or ""}
    tune.report(metrics)


@dataclass
class RayBackend:
    """Run the trials as Ray Tune trials, each with ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs.

    ``address`` joins an existing cluster (``"auto"``, ``"HOST:PORT"`` or ``"ray://HOST:10001"``);
    None uses the ``RAY_ADDRESS`` environment variable and, when that is unset, starts a
    local instance for the sweep, listening on 127.0.0.1 with the dashboard off and
    ``num_cpus`` CPUs (None: every core), and shuts it down afterwards. A Ray session that
    is already initialised in this process is used as it is and left running.

    Tune's results and logs go to ``storage_path`` (a temporary folder, deleted after the
    sweep, when None). Trials write their Trainer checkpoints to the task's
    ``checkpoint_dir``, or to ``<storage_path>/checkpoints`` without one, and the driver
    loads each finished run from there.

    On a cluster of several machines, ``checkpoint_dir`` and ``storage_path`` must be on
    storage that every node and the driver mount at the same path.
    NOTE: only a one-machine instance has been run so far.
    """

    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    max_concurrent_trials: int | None = None
    storage_path: str | Path | None = None
    name: str = "sweep"
    node_ip_address: str | None = field(default=None, init=False, compare=False)  # set when Ray starts

    def __post_init__(self) -> None:
        if not self.cpus_per_trial > 0:
            raise ValueError(f"cpus_per_trial={self.cpus_per_trial} is invalid: give a positive CPU share")
        if self.gpus_per_trial < 0:
            raise ValueError(f"gpus_per_trial={self.gpus_per_trial} is invalid: give 0 or a positive GPU share")

    def _start(self) -> bool:
        """Initialise Ray unless a session exists; returns True when this call started it."""
        address = self.address or os.environ.get("RAY_ADDRESS")
        local = not address and not (sys.modules.get("ray") and sys.modules["ray"].is_initialized())
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if local and "ray" not in sys.modules:
            # With clusters disabled (Ray's switch for Windows and macOS), a local instance takes
            # 127.0.0.1 as its node address and binds its servers to it. Ray reads the switch once, at import.
            os.environ.setdefault(LOOPBACK_SWITCH, "0")
        import ray
        from ray._private import ray_constants

        if ray.is_initialized():
            self.node_ip_address = ray.util.get_node_ip_address()
            return False
        if address:
            log.info("joining the Ray cluster at %s", address)
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            if ray_constants.ENABLE_RAY_CLUSTER:
                raise RuntimeError(
                    "ray was imported before the sweep started its local instance, which would then listen on "
                    f"every network interface: set {LOOPBACK_SWITCH}=0 before importing ray, or give an address"
                )
            log.info("starting a local Ray instance on 127.0.0.1 with %s CPUs", self.num_cpus or "all")
            ray.init(
                address="local", num_cpus=self.num_cpus, num_gpus=self.num_gpus, include_dashboard=False,
                log_to_driver=False, logging_level=logging.WARNING,
            )
        self.node_ip_address = ray.util.get_node_ip_address()
        return True

    def run(self, trials: Sequence[Trial], task: SweepTask) -> list[tuple[dict, RunResult | None, str | None]]:
        storage = Path(self.storage_path) if self.storage_path is not None else Path(tempfile.mkdtemp(prefix="mslr-ray-"))
        storage = storage.resolve()
        # Tune runs each trial in its own working folder, so relative paths must not reach it.
        checkpoint_dir = Path(task.checkpoint_dir).resolve() if task.checkpoint_dir else storage / "checkpoints"
        task = replace(task, checkpoint_dir=checkpoint_dir)
        by_key = {trial.key: trial for trial in trials}

        # _start sets Ray's loopback switch, which Ray reads when it is first imported.
        started = self._start()
        import ray
        from ray import tune

        try:
            trainable = tune.with_resources(
                tune.with_parameters(_ray_trial, task=task, trials=by_key, cpus=self.cpus_per_trial),
                {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial},
            )
            tuner = tune.Tuner(
                trainable,
                param_space={"trial": tune.grid_search(list(by_key))},
                tune_config=tune.TuneConfig(
                    max_concurrent_trials=self.max_concurrent_trials,
                    trial_dirname_creator=lambda t: slug(t.config["trial"]),
                ),
                run_config=tune.RunConfig(name=self.name, storage_path=str(storage), verbose=0),
            )
            grid = tuner.fit()
            outcomes = {}
            for result in grid:
                key = result.config["trial"]
                outcomes[key] = self._outcome(by_key[key], result)
        finally:
            if started:
                ray.shutdown()
            if self.storage_path is None:
                # Trainer checkpoints in the temporary folder were loaded above.
                shutil.rmtree(storage, ignore_errors=True)
        return [outcomes[trial.key] for trial in trials]

    def _outcome(self, trial: Trial, result) -> tuple[dict, RunResult | None, str | None]:
        """Turn one Tune result into a row, a run and a checkpoint path."""
        from ray import exceptions

        if result.error is not None:
            # A worker killed by Ray's memory monitor or a crashed worker fails only this trial.
            # NOTE: no test kills a worker, so this branch has not run.
            cause = getattr(result.error, "cause", None) or result.error
            if isinstance(cause, (exceptions.OutOfMemoryError, exceptions.WorkerCrashedError,
                                  exceptions.ActorDiedError, *TRIAL_FAILURES)):
                log.warning("trial %s failed on Ray: %s", trial.key, result.error)
                row = base_row(trial) | failed_row(f"{type(cause).__name__}: {cause}", "")
                row |= {"wall_seconds": float("nan"), "threads": threads_for(self.cpus_per_trial)}
                return row, None, None
            raise RuntimeError(f"trial {trial.key} raised on Ray: {type(cause).__name__}: {cause}") from result.error
        metrics = result.metrics
        # The row's fields in the order run_trial writes them; Tune adds metrics of its own.
        row = base_row(trial) | {name: metrics[name] for name in _ROW_FIELDS}
        row["val_scores"] = json.loads(metrics["val_scores"])
        checkpoint = metrics["checkpoint"] or None
        run = load_run_result(checkpoint) if row["status"] == "ok" else None
        return row, run, checkpoint


_ROW_FIELDS = ("status", "error", "epochs", "best_epoch", "best_score", "val_scores", "seconds", "device",
               "wall_seconds", "threads")


def make_backend(
    name: str, cpus_per_trial: float | None = None, gpus_per_trial: float = 0.0, storage_path: str | Path | None = None
) -> SequentialBackend | RayBackend:
    """Build the backend a notebook or script names: ``"sequential"`` or ``"ray"``.

    ``cpus_per_trial`` None means the process's current torch thread count for
    ``"sequential"`` and 1 CPU for ``"ray"``. GPUs per trial apply to Ray only.
    """
    if name == "sequential":
        if gpus_per_trial:
            log.warning("gpus_per_trial=%g applies to the Ray backend only; the sequential backend ignores it",
                        gpus_per_trial)
        return SequentialBackend(cpus_per_trial)
    if name == "ray":
        return RayBackend(cpus_per_trial if cpus_per_trial is not None else 1.0, gpus_per_trial,
                          storage_path=storage_path)
    raise ValueError(f"sweep backend {name!r} is invalid: choose one of {', '.join(BACKENDS)}")


# -- the sweep ------------------------------------------------------------------------------


def run_sweep(
    trials: Sequence[Trial], task: SweepTask, backend: SequentialBackend | RayBackend | None = None
) -> SweepResult:
    """Train every trial with ``backend`` (default: sequential) and return the results table and runs.

    Trials recorded as finished in ``<checkpoint_dir>/sweep/`` are loaded, not trained.
    The table has one row per trial, in the given order. Its columns are the trial key,
    the trial's ``columns``, run name, strategy, modalities, rates (JSON), seed, status
    (``ok`` or ``failed``) and error. Then come the epochs trained, the best epoch, and the
    best and per-epoch validation scores of ``settings.selection_metric``. The last are the
    training seconds, the wall seconds of the trial in this sweep, the device, the torch
    threads, and ``resumed`` (True for a trial loaded from its record).
    """
    keys = [trial.key for trial in trials]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"trial keys must be unique within a sweep: {duplicates} repeat; give each run its own name or seed")
    backend = backend or SequentialBackend()

    rows: dict[str, dict] = {}
    runs: dict[str, RunResult] = {}
    pending = []
    for trial in trials:
        loaded = load_record(trial, task)
        if loaded is None:
            pending.append(trial)
            continue
        row, run = loaded
        rows[trial.key] = {**row, "resumed": True}
        runs[trial.key] = run
    if pending:
        log.info("sweep: %d trials to train with %s, %d loaded", len(pending), type(backend).__name__, len(rows))
        for trial, (row, run, checkpoint) in zip(pending, backend.run(pending, task)):
            rows[trial.key] = {**row, "resumed": False}
            if run is not None:
                runs[trial.key] = run
                save_record(trial, task, row, checkpoint)
    table = pd.DataFrame([rows[key] for key in keys])
    return SweepResult(table, runs)

"""The method's steps as functions: learning-rate search, then the seven models.

A task supplies splits, a ``make_model(modalities)`` factory and class names; everything
else is shared. Model names follow Yao & Mihalcea (2022): ``<Modality>-only``, ``Joint-global``,
``MSES``, ``Keep``, ``Smooth`` and ``Dynamic``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from mslr_utils.data.splits import ModalSplit
from mslr_utils.models import LateFusionClassifier
from mslr_utils.optim import DISPLAY_NAMES, check_learning_rate, strategy_learning_rates
from mslr_utils.sweep import RayBackend, SequentialBackend, SweepTask, Trial, run_sweep
from mslr_utils.training import (
    EpochCallback,
    RunResult,
    RunSpec,
    Trainer,
    TrainSettings,
    load_trainable_state,
    predict,
    predicted_labels,
    score_logits,
    valid_positions,
)

log = logging.getLogger(__name__)

ModelFactory = Callable[[Sequence[str]], LateFusionClassifier]
CallbackFactory = Callable[[str], EpochCallback | None]

MSLR_STRATEGIES = ("joint_global", "mses", "keep", "smooth", "dynamic")


def unimodal_name(modality: str) -> str:
    return f"{modality.capitalize()}-only"


def train_run(
    make_model: ModelFactory,
    modalities: Sequence[str],
    spec: RunSpec,
    train: ModalSplit,
    val: ModalSplit,
    settings: TrainSettings,
    class_names: Sequence[str],
    checkpoint_dir: str | Path | None = None,
    callback_factory: CallbackFactory | None = None,
    config_extra: Mapping | None = None,
) -> tuple[LateFusionClassifier, RunResult]:
    """Build a fresh model for ``modalities`` and train it; returns the model and result."""
    model = make_model(list(modalities))
    trainer = Trainer(
        model,
        spec,
        settings,
        class_names,
        checkpoint_dir=checkpoint_dir,
        epoch_callback=callback_factory(spec.name) if callback_factory else None,
        config_extra=config_extra,
    )
    result = trainer.fit(train.select_modalities(modalities), val.select_modalities(modalities))
    return model, result


@dataclass
class SearchResult:
    """Learning-rate search outcome: one row per (model, lr), the best rates and runs, and the sweep's table.

    ``sweep`` is the full results table of ``mslr_utils.sweep.run_sweep``, with the status
    and error of every trial and its validation score per epoch.
    """

    table: pd.DataFrame
    unimodal_lrs: dict[str, float]
    global_lr: float
    best_runs: dict[str, RunResult]
    sweep: pd.DataFrame | None = None


def search_learning_rates(
    make_model: ModelFactory,
    train: ModalSplit,
    val: ModalSplit,
    unimodal_grids: Mapping[str, Sequence[float]],
    global_grid: Sequence[float],
    settings: TrainSettings,
    class_names: Sequence[str],
    checkpoint_dir: str | Path | None = None,
    callback_factory: CallbackFactory | None = None,
    config_extra: Mapping | None = None,
    backend: SequentialBackend | RayBackend | None = None,
) -> SearchResult:
    """Linear search of each modality's best unimodal rate and of the best global rate.

    Each candidate trains for ``settings.epochs`` epochs; its score is the best fused
    validation score over the epochs (``settings.selection_metric``). Every candidate is a
    trial of one sweep, run by ``backend`` (default: sequential, in this process). Grids are
    sorted in increasing order and ties go to the smaller rate. A candidate that fails
    (non-finite loss, out of memory) is left out of the choice; if every candidate of a
    model fails, the search raises RuntimeError. A best rate at either end of a grid of two
    or more is logged as a warning, since the optimum may lie outside it. The winning
    unimodal runs are the unimodal baselines, and the winning global run is Joint-global,
    so they are returned for reuse.
    """
    candidates = [(unimodal_name(m), [m], "unimodal", grid) for m, grid in unimodal_grids.items()]
    candidates.append((DISPLAY_NAMES["joint_global"], list(unimodal_grids), "joint_global", global_grid))
    for model_name, _, _, grid in candidates:
        if not grid:
            raise ValueError(f"learning-rate grid for {model_name} is empty: give at least one rate")
        for lr in grid:
            check_learning_rate(f"{model_name} grid", lr)

    trials = []
    for model_name, modalities, strategy, grid in candidates:
        # A rate listed twice trains once.
        for lr in sorted({float(lr) for lr in grid}):
            spec = RunSpec(f"{model_name}@{lr:g}", strategy, lr)
            trials.append(Trial(spec, tuple(modalities), columns={"model": model_name, "lr": lr}))
    task = SweepTask(make_model, train, val, settings, class_names, checkpoint_dir, callback_factory, config_extra)
    sweep = run_sweep(trials, task, backend)

    metric = f"val_{settings.selection_metric}"
    best_runs: dict[str, RunResult] = {}
    unimodal_lrs: dict[str, float] = {}
    global_lr = float("nan")
    for model_name, modalities, strategy, grid in candidates:
        rows = sweep.table[sweep.table["model"] == model_name]
        finished = rows[rows["status"] == "ok"]
        if finished.empty:
            errors = "; ".join(f"lr {row.lr:g}: {row.error}" for row in rows.itertuples())
            raise RuntimeError(f"every learning rate of {model_name} failed ({errors}): choose lower rates")
        # idxmax returns the first maximum, and rows are in increasing order of lr.
        best = finished.loc[finished["best_score"].idxmax()]
        best_lr = float(best["lr"])
        result = sweep.runs[best["trial"]]
        result.name = model_name
        result.history["model"] = model_name
        best_runs[model_name] = result
        if strategy == "unimodal":
            unimodal_lrs[modalities[0]] = best_lr
        else:
            global_lr = best_lr
        lrs = rows["lr"].tolist()
        if len(lrs) > 1 and best_lr in (lrs[0], lrs[-1]):
            log.warning("%s: the best rate %g is at the edge of the grid %s; a wider grid may find a better one",
                        model_name, best_lr, lrs)

    table = sweep.table[["model", "lr", "best_epoch", "best_score", "seconds"]].rename(columns={"best_score": metric})
    table = table.reset_index(drop=True)
    best = {unimodal_name(m): lr for m, lr in unimodal_lrs.items()} | {DISPLAY_NAMES["joint_global"]: global_lr}
    table["selected"] = [best[row.model] == row.lr for row in table.itertuples()]
    return SearchResult(table, unimodal_lrs, global_lr, best_runs, sweep.table)


def mslr_specs(
    unimodal_lrs: Mapping[str, float],
    global_lr: float,
    smooth_weight: float = 0.5,
    mses_lr: float | None = None,
    strategies: Sequence[str] = ("mses", "keep", "smooth", "dynamic"),
    smooth_lrs: Mapping[str, float] | None = None,
) -> list[RunSpec]:
    """Return the run specs of the fused strategies after the search.

    Smooth's rates follow from the searched ones and ``smooth_weight``, unless
    ``smooth_lrs`` gives them per modality (as the paper does for MELD).
    """
    if smooth_lrs is not None:
        if set(smooth_lrs) != set(unimodal_lrs):
            raise ValueError(f"smooth_lrs names {sorted(smooth_lrs)}; give one rate for each of {sorted(unimodal_lrs)}")
        smooth_lrs = {m: check_learning_rate(f"Smooth {m}", lr) for m, lr in smooth_lrs.items()}
    specs = []
    for strategy in strategies:
        base = mses_lr if strategy == "mses" and mses_lr is not None else global_lr
        if strategy == "smooth" and smooth_lrs is not None:
            lrs = dict(smooth_lrs)
        else:
            lrs = strategy_learning_rates(strategy, unimodal_lrs, base, smooth_weight)
        specs.append(RunSpec(DISPLAY_NAMES[strategy], strategy, lrs))
    return specs


def evaluate_on_test(
    make_model: ModelFactory,
    weights: Mapping[str, tuple[RunResult, str | int]],
    test: ModalSplit,
    class_names: Sequence[str],
    multilabel: bool = False,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Score each named set of weights once on the test split.

    ``weights`` maps a table name to ``(run result, which)``, where ``which`` is
    ``"best"``, ``"final"`` or a snapshot epoch. Returns the metrics table (one row per
    name) and the fused predictions per name.
    """
    rows, predictions = [], {}
    for name, (result, which) in weights.items():
        modalities = result.modalities
        model = make_model(modalities)
        load_trainable_state(model, result.state_at(which))
        logits = predict(model, test.select_modalities(modalities))
        fused, _ = valid_positions(logits["fused"], test.labels)
        predictions[name] = predicted_labels(fused, multilabel).numpy()
        scores = score_logits({"fused": logits["fused"]}, test.labels, class_names, multilabel)["fused"]
        if which == "best":
            epoch = result.best_epoch
        elif which == "final":
            epoch = len(result.history)
        else:
            epoch = which
        rows.append({"model": name, "epoch": int(epoch), **scores})
    return pd.DataFrame(rows).set_index("model"), predictions


def conductance_table(
    history: pd.DataFrame, entries: Sequence[tuple[str, int]], modalities: Sequence[str]
) -> pd.DataFrame:
    """Pick the recorded conductance of each ``(model, epoch)`` entry from a history table.

    Columns ``<modality>_mean`` and ``<modality>_abs`` hold the signed and absolute mean
    over neurons and samples; a modality the model lacks is NaN.
    """
    rows = []
    for model_name, epoch in entries:
        match = history[(history["model"] == model_name) & (history["epoch"] == epoch)]
        if match.empty:
            raise KeyError(f"history has no epoch {epoch} of {model_name!r}")
        recorded = match.iloc[0]
        row = {"model": model_name, "epoch": int(epoch)}
        for modality in modalities:
            row[f"{modality}_mean"] = recorded.get(f"{modality}_conductance", float("nan"))
            row[f"{modality}_abs"] = recorded.get(f"{modality}_conductance_abs", float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def overlap_pairs(unimodal_names: Sequence[str], early: str, final: str) -> list[tuple[str, str]]:
    """Return the model pairs compared by Yao & Mihalcea (2022) in their overlap table.

    Each unimodal model against Joint-global and Keep at the early and final epoch, the
    two unimodal models against each other, and Joint-global against both Keep epochs.
    """
    pairs = []
    for name in unimodal_names:
        pairs += [(name, "Joint-global"), (name, early), (name, final)]
    if len(unimodal_names) == 2:
        pairs.append((unimodal_names[1], unimodal_names[0]))
    pairs += [("Joint-global", early), ("Joint-global", final)]
    return pairs

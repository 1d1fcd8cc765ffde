"""Collect a reproduction's per-seed results: mean and deviation tables, paper values, significance.

A reproduction (``mslr_utils.reproduce``) leaves ``<results>/<task notebook>/seed-<s>/``
folders. Each table of Yao & Mihalcea (2022) comes from one file of one task notebook
(``PAPER_TABLES``). This module stacks the seeds and reports the mean and sample standard
deviation per cell, beside the published value from ``data/paper_values.csv``. It also
tests the MSLR strategies against Joint-global and MSES.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from mslr_utils.io import atomic_write
from mslr_utils.significance import bootstrap_difference, mcnemar_test, paired_t_test

REPO_ROOT = Path(__file__).resolve().parents[1]
PAPER_VALUES = REPO_ROOT / "data" / "paper_values.csv"
STRATEGIES = ("Keep", "Smooth", "Dynamic")
BASELINES = ("Joint-global", "MSES")
PREDICTIONS_FILE = "test_predictions.npz"


@dataclass(frozen=True)
class PaperTable:
    """The source of one table of Yao & Mihalcea (2022) in a reproduction: notebook, file, rows and columns."""

    name: str
    title: str
    notebook: str
    file: str
    index: tuple[str, ...]
    columns: tuple[str, ...]


PAPER_TABLES = (
    PaperTable("table1", "Table 1: MuSE prediction overlap and confusion", "02_muse_stress", "table1_overlap.csv",
               ("model_a", "model_b"), ("overlap", "1-1", "0-0", "1-0", "0-1")),
    PaperTable("table2", "Table 2: MuSE test metrics", "02_muse_stress", "table2_metrics.csv", ("model",),
               ("accuracy", "precision_stressed", "recall_stressed", "f1_stressed")),
    PaperTable("table3", "Table 3: MELD test F1 (%)", "03_meld_sentiment", "table3_f1.csv", ("model",),
               ("f1_neutral", "f1_positive", "f1_negative", "f1_weighted")),
    PaperTable("table4", "Table 4: MM-IMDb test F1", "04_mmimdb_genre", "table4_f1.csv", ("model",),
               ("f1_micro", "f1_macro", "f1_weighted", "f1_samples")),
    PaperTable("table5", "Table 5: MuSE conductance", "02_muse_stress", "table5_conductance.csv", ("model", "epoch"),
               ("text_mean", "audio_mean")),
    PaperTable("table6", "Table 6: MELD conductance", "03_meld_sentiment", "table6_conductance.csv", ("model", "epoch"),
               ("text_mean", "audio_mean")),
    PaperTable("table7", "Table 7: MM-IMDb conductance", "04_mmimdb_genre", "table7_conductance.csv", ("model", "epoch"),
               ("text_mean", "visual_mean")),
    PaperTable("reviews", "Embedded task (not in the paper): review sentiment test metrics", "01_reviews_mslr",
               "metrics.csv", ("model",), ("accuracy", "f1_macro", "f1_weighted")),
)


def seed_folders(results: Path, notebook: str, seeds: Sequence[int]) -> dict[int, Path]:
    """Return the existing ``seed-<s>`` result folders of a notebook."""
    folders = {s: Path(results) / notebook / f"seed-{s}" for s in seeds}
    return {s: f for s, f in folders.items() if f.is_dir()}


def row_labels(frame: pd.DataFrame, index: Sequence[str]) -> list[str]:
    """Label rows: the model name, ``A vs B`` for a pair, ``model@ep<epoch>`` where a model repeats."""
    if list(index) == ["model_a", "model_b"]:
        return [f"{a} vs {b}" for a, b in zip(frame["model_a"], frame["model_b"])]
    models = frame["model"].tolist()
    if "epoch" in index:
        repeated = {m for m in models if models.count(m) > 1}
        return [f"{m}@ep{int(e)}" if m in repeated else m for m, e in zip(models, frame["epoch"])]
    return models


def stack_seeds(results: Path, table: PaperTable, seeds: Sequence[int]) -> pd.DataFrame:
    """Return one long frame of a table's cells over seeds: seed, row, column, value."""
    rows = []
    for seed, folder in seed_folders(results, table.notebook, seeds).items():
        path = folder / table.file
        if not path.is_file():
            continue
        frame = pd.read_csv(path)
        missing = [c for c in (*table.index, *table.columns) if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; rerun {table.notebook}")
        for label, (_, values) in zip(row_labels(frame, table.index), frame.iterrows()):
            for column in table.columns:
                # A unimodal model has no value for the other modality's conductance.
                if pd.notna(values[column]):
                    rows.append({"seed": seed, "row": label, "column": column, "value": float(values[column])})
    return pd.DataFrame(rows, columns=["seed", "row", "column", "value"])


def read_paper_values(path: Path = PAPER_VALUES) -> pd.DataFrame:
    """Read the paper's published values: one row per cell with table, row, column, value and source."""
    frame = pd.read_csv(path, dtype={"table": str, "row": str, "column": str, "source": str})
    expected = ["table", "row", "column", "value", "source"]
    if list(frame.columns) != expected:
        raise ValueError(f"{path}: columns must be {expected}, got {list(frame.columns)}")
    frame["value"] = pd.to_numeric(frame["value"], errors="raise")
    return frame


def summarize(cells: pd.DataFrame, table: PaperTable, paper: pd.DataFrame) -> pd.DataFrame:
    """Return mean, std and seed count per cell, with the paper's value and our mean minus it."""
    if cells.empty:
        return pd.DataFrame()
    grouped = cells.groupby(["row", "column"], sort=False)["value"]
    summary = grouped.agg(mean="mean", std="std", seeds="count").reset_index()
    published = paper[paper["table"] == table.name][["row", "column", "value"]].rename(columns={"value": "paper"})
    summary = summary.merge(published, on=["row", "column"], how="left")
    summary["difference"] = summary["mean"] - summary["paper"]
    return summary


def format_cell(mean: float, std: float, scale: float) -> str:
    if np.isnan(mean):
        return ""
    if abs(mean) < 0.01 and mean != 0:
        return f"{mean:.2e} ± {std:.1e}" if not np.isnan(std) else f"{mean:.2e}"
    digits = 2 if scale == 100 or abs(mean) >= 10 else 4
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if not np.isnan(std) else f"{mean:.{digits}f}"


def markdown_table(summary: pd.DataFrame, table: PaperTable) -> str:
    """Render a summary as Markdown: for each column, ours (mean ± std), the paper's value and the difference."""
    lines = [f"#### {table.title}", ""]
    # The embedded task is not in the paper, so its table has no paper columns.
    with_paper = table.name != "reviews"
    header = ["row"]
    for column in table.columns:
        header += [f"{column} (ours)", "paper", "diff"] if with_paper else [column]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    scale = 100 if table.name == "table3" else 1
    for row in dict.fromkeys(summary["row"]):
        cells = [row]
        for column in table.columns:
            match = summary[(summary["row"] == row) & (summary["column"] == column)]
            if match.empty:
                cells += ["", "", ""] if with_paper else [""]
                continue
            item = match.iloc[0]
            cells.append(format_cell(item["mean"], item["std"], scale))
            if with_paper:
                cells.append("" if np.isnan(item["paper"]) else f"{item['paper']:g}")
                cells.append("" if np.isnan(item["difference"]) else f"{item['difference']:+.3g}")
        lines.append("| " + " | ".join(cells) + " |")
    seeds = int(summary["seeds"].max())
    note = f"Mean ± sample standard deviation over {seeds} seed{'s' if seeds > 1 else ''}."
    if with_paper:
        note += " An empty paper cell has no value in `data/paper_values.csv`."
    lines += ["", note]
    return "\n".join(lines)


# -- significance -----------------------------------------------------------------------
def metric_function(name: str, num_classes: int | None = None):
    """Return ``metric(y_true, y_pred)`` for a score name, through scikit-learn (``zero_division=0``)."""
    if name == "accuracy":
        return accuracy_score
    average = name.removeprefix("f1_")
    if average not in ("micro", "macro", "weighted", "samples"):
        raise ValueError(f"no significance metric {name!r}: use accuracy or f1_<micro|macro|weighted|samples>")
    labels = list(range(num_classes)) if num_classes and average != "samples" else None
    return lambda y, p: f1_score(y, p, labels=labels, average=average, zero_division=0)


def load_predictions(folder: Path) -> tuple[np.ndarray, list[str], dict[str, np.ndarray]]:
    """Read ``test_predictions.npz``: the test labels, the class names and each model's predictions."""
    with np.load(folder / PREDICTIONS_FILE, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return arrays.pop("y_true"), [str(c) for c in arrays.pop("class_names")], arrays


def save_predictions(
    path: Path, y_true: np.ndarray, predictions: dict[str, np.ndarray], class_names: Sequence[str]
) -> Path:
    """Write the test labels, class names and each model's test predictions to one ``.npz`` file, atomically."""
    reserved = {"y_true", "class_names"} & set(predictions)
    if reserved:
        raise ValueError(f"model names {sorted(reserved)} are reserved in {PREDICTIONS_FILE}")
    arrays = {"y_true": np.asarray(y_true), "class_names": np.asarray(list(class_names), dtype=str),
              **{k: np.asarray(v) for k, v in predictions.items()}}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    return atomic_write(path, write)


def significance_table(
    results: Path, notebook: str, metric: str, seeds: Sequence[int], multilabel: bool = False,
    n_resamples: int = 1000,
) -> pd.DataFrame:
    """Test each MSLR strategy against Joint-global and MSES on one task.

    Per pair: the mean test metric of each, a paired t-test across seeds, McNemar's test on
    each seed's test predictions (median p-value and the count of seeds with p < 0.05) and
    a bootstrap interval of the metric difference over test items, averaged over seeds.
    For a multi-label task McNemar compares each (item, label) decision.
    """
    folders = seed_folders(results, notebook, seeds)
    loaded = {s: load_predictions(f) for s, f in folders.items() if (f / PREDICTIONS_FILE).is_file()}
    if not loaded:
        return pd.DataFrame()
    used = sorted(loaded)
    y_true, class_names, _ = loaded[used[0]]
    for seed in used[1:]:
        if not np.array_equal(loaded[seed][0], y_true):
            raise ValueError(f"{notebook}: seed {seed} was scored on other test items than seed {used[0]}; "
                             "keep data_seed fixed across seeds")
    predictions = {s: loaded[s][2] for s in used}
    score = metric_function(metric, None if multilabel else len(class_names))
    rows = []
    for strategy in STRATEGIES:
        for baseline in BASELINES:
            if any(strategy not in predictions[s] or baseline not in predictions[s] for s in used):
                continue
            a = [predictions[s][strategy] for s in used]
            b = [predictions[s][baseline] for s in used]
            t_test = paired_t_test([score(y_true, p) for p in a], [score(y_true, p) for p in b])
            mcnemar = [mcnemar_test(p == y_true, q == y_true) for p, q in zip(a, b)]
            p_values = [m["p_value"] for m in mcnemar]
            interval = bootstrap_difference(y_true, a, b, score, n_resamples=n_resamples)
            rows.append({
                "strategy": strategy, "baseline": baseline, "metric": metric, "seeds": len(used),
                "strategy_mean": float(np.mean([score(y_true, p) for p in a])),
                "baseline_mean": float(np.mean([score(y_true, p) for p in b])),
                "difference": interval["difference"],
                "t_statistic": t_test["t_statistic"], "t_test_p": t_test["p_value"],
                "mcnemar_p_median": float(np.median(p_values)),
                "mcnemar_seeds_p_below_0.05": int(sum(p < 0.05 for p in p_values)),
                "bootstrap_low": interval["low"], "bootstrap_high": interval["high"],
            })
    return pd.DataFrame(rows)


# -- conductance and prediction similarity over seeds -------------------------------------
def conductance_over_seeds(results: Path, notebook: str, seeds: Sequence[int]) -> pd.DataFrame:
    """Return per-epoch conductance of every model and modality: mean and std over seeds.

    Columns: model, epoch, modality, mean, std, seeds. Read from each seed's ``history.csv``
    (the signed mean over the top-level neurons and the attributed validation samples).
    """
    frames = []
    for seed, folder in seed_folders(results, notebook, seeds).items():
        path = folder / "history.csv"
        if not path.is_file():
            continue
        history = pd.read_csv(path)
        columns = [c for c in history.columns if c.endswith("_conductance")]
        long = history.melt(id_vars=["model", "epoch"], value_vars=columns, var_name="modality", value_name="value")
        long["modality"] = long["modality"].str.removesuffix("_conductance")
        long["seed"] = seed
        frames.append(long.dropna(subset=["value"]))
    if not frames:
        return pd.DataFrame(columns=["model", "epoch", "modality", "mean", "std", "seeds"])
    stacked = pd.concat(frames, ignore_index=True)
    grouped = stacked.groupby(["model", "epoch", "modality"], sort=False)["value"]
    return grouped.agg(mean="mean", std="std", seeds="count").reset_index()


def run_parameters(results: Path, notebook: str, seeds: Sequence[int]) -> dict:
    """Return the parameters recorded in the first seed's ``run_summary.json`` (empty if none)."""
    import json

    for folder in seed_folders(results, notebook, seeds).values():
        path = folder / "run_summary.json"
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8")).get("parameters", {})
    return {}

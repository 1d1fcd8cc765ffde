"""Prediction similarity between models: overlap ratio and confusion."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix


def prediction_overlap(pred_a, pred_b, class_names: Sequence[str]) -> tuple[float, pd.DataFrame]:
    """Return the share of samples on which two models agree, and their confusion.

    The confusion has model A's predicted class as rows and model B's as columns.
    """
    pred_a = np.asarray(pred_a)
    pred_b = np.asarray(pred_b)
    if pred_a.shape != pred_b.shape:
        raise ValueError(f"prediction arrays differ in shape: {pred_a.shape} and {pred_b.shape}")
    overlap = float((pred_a == pred_b).mean()) if len(pred_a) else 0.0
    matrix = confusion_matrix(pred_a, pred_b, labels=list(range(len(class_names))))
    return overlap, pd.DataFrame(matrix, index=list(class_names), columns=list(class_names))


def overlap_table(
    predictions: Mapping[str, np.ndarray],
    pairs: Sequence[tuple[str, str]],
    class_names: Sequence[str],
) -> pd.DataFrame:
    """Tabulate the overlap ratio and every confusion count for each model pair.

    Column ``A=x,B=y`` counts samples that model A predicts as ``x`` and model B as ``y``.
    """
    rows = []
    for a, b in pairs:
        missing = [name for name in (a, b) if name not in predictions]
        if missing:
            raise KeyError(f"no predictions for {missing}; available: {sorted(predictions)}")
        overlap, confusion = prediction_overlap(predictions[a], predictions[b], class_names)
        row = {"model_a": a, "model_b": b, "overlap": overlap}
        for x in class_names:
            for y in class_names:
                row[f"A={x},B={y}"] = int(confusion.loc[x, y])
        rows.append(row)
    return pd.DataFrame(rows)


def pairwise_overlap(
    predictions: Mapping[str, np.ndarray], class_names: Sequence[str], multilabel: bool = False
) -> pd.DataFrame:
    """Tabulate overlap and confusion for every pair of models, in the order given.

    For a multi-label task each (item, label) decision counts once, with the classes
    ``absent`` and ``present``.
    """
    names = list(predictions)
    if multilabel:
        predictions = {name: np.asarray(p).ravel() for name, p in predictions.items()}
        class_names = ("absent", "present")
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    return overlap_table(predictions, pairs, class_names)

"""Classification metrics through scikit-learn, with the class list fixed."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

# Score names accepted as a selection or Dynamic metric.
SCORE_NAMES = ("accuracy", "f1_macro", "f1_weighted")


def classification_scores(y_true, y_pred, class_names: Sequence[str]) -> dict[str, float]:
    """Return accuracy, macro and weighted F1, and per-class precision, recall and F1.

    ``labels`` is always ``range(len(class_names))`` and ``zero_division=0``, so a class
    absent from the predictions or from the split scores 0.0 without a warning, and the
    keys are the same for every split.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    labels = list(range(len(class_names)))
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    scores = {
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "f1_macro": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
    }
    for i, name in enumerate(class_names):
        scores[f"precision_{name}"] = float(precision[i])
        scores[f"recall_{name}"] = float(recall[i])
        scores[f"f1_{name}"] = float(f1[i])
    return scores


def check_score_name(name: str) -> str:
    if name not in SCORE_NAMES:
        raise ValueError(f"unknown score {name!r}: use one of {', '.join(SCORE_NAMES)}")
    return name

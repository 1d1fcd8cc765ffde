"""Classification metrics through scikit-learn, with the class list fixed."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

# Score names accepted as a selection or Dynamic metric.
SCORE_NAMES = ("accuracy", "f1_macro", "f1_weighted", "f1_micro", "f1_samples")
MULTICLASS_SCORES = ("accuracy", "f1_macro", "f1_weighted")
MULTILABEL_SCORES = ("f1_micro", "f1_macro", "f1_weighted", "f1_samples")


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


def multilabel_scores(y_true, y_pred, label_names: Sequence[str]) -> dict[str, float]:
    """Return micro, macro, weighted and samples F1, and F1 per label, for 0/1 matrices.

    ``zero_division=0``: a label never true and never predicted scores 0 in the macro
    average, and a row with no true label and no predicted label scores 0 in the samples
    average (both are undefined otherwise).
    """
    y_true = np.asarray(y_true).astype(int)
    y_pred = np.asarray(y_pred).astype(int)
    if y_true.shape != y_pred.shape or y_true.ndim != 2 or y_true.shape[1] != len(label_names):
        raise ValueError(
            f"expected two (samples, {len(label_names)}) label matrices, got {y_true.shape} and {y_pred.shape}"
        )
    scores = {
        f"f1_{average}": float(f1_score(y_true, y_pred, average=average, zero_division=0))
        for average in ("micro", "macro", "weighted", "samples")
    }
    per_label = f1_score(y_true, y_pred, average=None, zero_division=0)
    for name, value in zip(label_names, per_label):
        scores[f"f1_{name}"] = float(value)
    return scores


def check_score_name(name: str, multilabel: bool = False) -> str:
    allowed = MULTILABEL_SCORES if multilabel else MULTICLASS_SCORES
    if name not in allowed:
        kind = "multi-label" if multilabel else "single-label"
        raise ValueError(f"unknown score {name!r} for a {kind} task: use one of {', '.join(allowed)}")
    return name

import warnings

import numpy as np
import pytest

from mslr_utils.analysis import overlap_table, prediction_overlap
from mslr_utils.metrics import classification_scores, multilabel_scores

CLASSES = ("neutral", "positive", "negative")


def test_class_absent_from_predictions_scores_zero_without_warning():
    y_true = [0, 1, 2, 1]
    y_pred = [1, 1, 1, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = classification_scores(y_true, y_pred, CLASSES)
    assert scores["precision_negative"] == 0.0
    assert scores["recall_negative"] == 0.0
    assert scores["f1_neutral"] == 0.0
    assert scores["accuracy"] == 0.5


def test_class_absent_from_split_keeps_fixed_labels():
    y_true = [1, 1, 0, 0]
    y_pred = [1, 0, 0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = classification_scores(y_true, y_pred, CLASSES)
    assert scores["f1_negative"] == 0.0
    # macro F1 averages over all three classes, the absent one included
    expected = np.mean([scores["f1_neutral"], scores["f1_positive"], 0.0])
    assert scores["f1_macro"] == pytest.approx(expected)


def test_scores_match_hand_computation():
    scores = classification_scores([0, 0, 1, 2], [0, 1, 1, 2], CLASSES)
    assert scores["precision_positive"] == pytest.approx(0.5)
    assert scores["recall_neutral"] == pytest.approx(0.5)
    assert scores["f1_neutral"] == pytest.approx(2 / 3)
    assert scores["f1_weighted"] == pytest.approx((2 * (2 / 3) + (2 / 3) + 1) / 4)


def test_prediction_overlap_and_confusion():
    overlap, confusion = prediction_overlap([0, 1, 1, 2], [0, 1, 2, 2], CLASSES)
    assert overlap == 0.75
    assert confusion.loc["positive", "negative"] == 1
    assert confusion.values.sum() == 4


def test_overlap_table_rows_and_unknown_model():
    predictions = {"A": np.array([0, 1]), "B": np.array([0, 0])}
    table = overlap_table(predictions, [("A", "B")], CLASSES)
    assert table.loc[0, "overlap"] == 0.5
    assert table.loc[0, "A=positive,B=neutral"] == 1
    with pytest.raises(KeyError, match="no predictions for"):
        overlap_table(predictions, [("A", "C")], CLASSES)


GENRES = ("Drama", "Comedy", "Horror")


def test_multilabel_f1_averages_by_hand():
    y_true = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 1]])  # the second row has no true genre
    y_pred = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = multilabel_scores(y_true, y_pred, GENRES)
    # micro: 2 true positives, 0 false positives, 1 false negative -> 2*2 / (2*2 + 0 + 1)
    assert scores["f1_micro"] == pytest.approx(4 / 5)
    # per label: Drama 1, Comedy 1, Horror 0 (never predicted)
    assert scores["f1_Horror"] == 0.0
    assert scores["f1_macro"] == pytest.approx(2 / 3)
    # weighted by support 1, 1, 1
    assert scores["f1_weighted"] == pytest.approx(2 / 3)
    # samples: row 1 -> 1, row 2 (nothing true, nothing predicted) -> 0, row 3 -> 2/3
    assert scores["f1_samples"] == pytest.approx((1 + 0 + 2 / 3) / 3)


def test_multilabel_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"\(samples, 3\) label matrices"):
        multilabel_scores(np.zeros((2, 3)), np.zeros((2, 4)), GENRES)

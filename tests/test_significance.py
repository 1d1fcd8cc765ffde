"""Significance tests against scipy on hand-checked cases, and the paper-values file layout."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score

from mslr_utils.results import PAPER_TABLES, markdown_table, read_paper_values, summarize
from mslr_utils.significance import bootstrap_difference, mcnemar_test, paired_t_test


def test_paired_t_test_matches_hand_computation():
    a, b = [0.71, 0.74, 0.69, 0.73], [0.68, 0.70, 0.69, 0.70]
    differences = np.subtract(a, b)  # 0.03, 0.04, 0.00, 0.03
    t = differences.mean() / (differences.std(ddof=1) / math.sqrt(4))
    result = paired_t_test(a, b)
    assert result["mean_difference"] == pytest.approx(0.025)
    assert result["t_statistic"] == pytest.approx(t)
    assert result["p_value"] == pytest.approx(2 * stats.t.sf(abs(t), df=3))


def test_paired_t_test_undefined_for_one_seed():
    result = paired_t_test([0.7], [0.6])
    assert result["mean_difference"] == pytest.approx(0.1)
    assert math.isnan(result["p_value"])


def test_mcnemar_exact_is_binomial_test():
    # 10 items both right, 7 only a right, 2 only b right, 5 both wrong.
    correct_a = np.array([1] * 10 + [1] * 7 + [0] * 2 + [0] * 5, dtype=bool)
    correct_b = np.array([1] * 10 + [0] * 7 + [1] * 2 + [0] * 5, dtype=bool)
    result = mcnemar_test(correct_a, correct_b)
    assert (result["a_only"], result["b_only"], result["exact"]) == (7, 2, True)
    assert result["p_value"] == pytest.approx(stats.binomtest(2, 9, 0.5).pvalue)
    assert result["p_value"] == pytest.approx(0.1796875)


def test_mcnemar_chi_square_with_correction():
    correct_a = np.array([1] * 30 + [0] * 12 + [1] * 50, dtype=bool)
    correct_b = np.array([0] * 30 + [1] * 12 + [1] * 50, dtype=bool)
    result = mcnemar_test(correct_a, correct_b)
    statistic = (abs(30 - 12) - 1) ** 2 / (30 + 12)
    assert result["exact"] is False
    assert result["statistic"] == pytest.approx(statistic)
    assert result["p_value"] == pytest.approx(stats.chi2.sf(statistic, df=1))


def test_bootstrap_of_identical_models_is_zero():
    y = np.array([0, 1, 2, 1, 0, 2, 1, 1])
    predictions = [np.array([0, 1, 1, 1, 0, 2, 0, 1])]
    result = bootstrap_difference(y, predictions, predictions, accuracy_score, n_resamples=50)
    assert (result["difference"], result["low"], result["high"]) == (0.0, 0.0, 0.0)


def test_bootstrap_of_always_right_against_always_wrong():
    y = np.arange(20) % 3
    right, wrong = [y.copy()], [(y + 1) % 3]
    result = bootstrap_difference(y, right, wrong, accuracy_score, n_resamples=50)
    assert result["difference"] == 1.0
    assert (result["low"], result["high"]) == (1.0, 1.0)


def test_bootstrap_interval_contains_observed_difference():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    a = [np.where(rng.random(200) < 0.8, y, (y + 1) % 3) for _ in range(2)]
    b = [np.where(rng.random(200) < 0.6, y, (y + 1) % 3) for _ in range(2)]
    result = bootstrap_difference(y, a, b, accuracy_score, n_resamples=300)
    expected = np.mean([accuracy_score(y, p) for p in a]) - np.mean([accuracy_score(y, p) for p in b])
    assert result["difference"] == pytest.approx(expected)
    assert result["low"] < result["difference"] < result["high"]


def test_bootstrap_rejects_misaligned_predictions():
    with pytest.raises(ValueError, match="needs 3 rows"):
        bootstrap_difference(np.zeros(3), [np.zeros(2)], [np.zeros(3)], accuracy_score)


# -- published values of Yao & Mihalcea (2022) --------------------------------------------
PAPER = read_paper_values()
LAYOUTS = {
    "table1": 9, "table2": 7, "table3": 7, "table4": 7, "table5": 5, "table6": 5, "table7": 5,
}


@pytest.mark.parametrize("table", [t for t in PAPER_TABLES if t.name in LAYOUTS], ids=lambda t: t.name)
def test_paper_values_follow_table_layout(table):
    cells = PAPER[PAPER["table"] == table.name]
    rows = list(dict.fromkeys(cells["row"]))
    assert len(rows) == LAYOUTS[table.name]
    for row in rows:
        assert list(cells.loc[cells["row"] == row, "column"]) == list(table.columns)
    assert cells["source"].str.startswith("Yao & Mihalcea (2022)").all()


def test_seven_model_tables_name_the_strategies():
    for name in ("table2", "table3", "table4"):
        rows = list(dict.fromkeys(PAPER.loc[PAPER["table"] == name, "row"]))
        assert rows[2:] == ["Joint-global", "MSES", "Keep", "Smooth", "Dynamic"]
        assert rows[0] == "Text-only"


def test_summary_puts_paper_value_beside_mean():
    table = next(t for t in PAPER_TABLES if t.name == "table2")
    cells = pd.DataFrame({"seed": [0, 1], "row": ["Keep", "Keep"], "column": ["accuracy"] * 2, "value": [0.8, 0.9]})
    paper = pd.DataFrame({"table": ["table2"], "row": ["Keep"], "column": ["accuracy"], "value": [0.8],
                          "source": ["test"]})
    summary = summarize(cells, table, paper)
    assert summary.loc[0, "mean"] == pytest.approx(0.85)
    assert summary.loc[0, "std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert summary.loc[0, "difference"] == pytest.approx(0.05)
    assert "0.8500 ± 0.0707 | 0.8 | +0.05" in markdown_table(summary, table)

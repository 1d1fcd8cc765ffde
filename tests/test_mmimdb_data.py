import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mslr_utils.data.mmimdb import (
    HDF5GenreDataset,
    MMIMDbFormatError,
    fuel_split_array,
    load_mmimdb,
    write_fixture,
)
from mslr_utils.tasks import mmimdb_model_factory

ROWS = (40, 12, 20)


@pytest.fixture
def fixture_path(tmp_path):
    return write_fixture(tmp_path / "mmimdb.hdf5", split_rows=ROWS, seed=3)


def replace_dataset(path, key, data):
    with h5py.File(path, "r+") as handle:
        attrs = dict(handle[key].attrs)
        del handle[key]
        handle.create_dataset(key, data=data)
        for name, value in attrs.items():
            handle[key].attrs[name] = value


def test_fixture_loads_with_split_layout(fixture_path):
    task = load_mmimdb(fixture_path, check_release_sizes=False)
    assert task.sizes["rows"].tolist() == list(ROWS)
    assert task.num_classes == 23
    assert task.splits["train"].inputs["visual"]["features"].shape == (40, 4096)
    assert task.splits["val"].inputs["text"]["features"].shape == (12, 300)
    assert task.splits["test"].labels.shape == (20, 23)
    assert task.splits["val"].ids[0] == "40"


def test_rows_without_genre_are_counted(fixture_path):
    with h5py.File(fixture_path, "r+") as handle:
        handle["genres"][0] = 0
        handle["genres"][1] = 0
    task = load_mmimdb(fixture_path, check_release_sizes=False)
    expected = int((task.splits["train"].labels.sum(1) == 0).sum())
    assert task.sizes.loc["train", "no_genre"] == expected
    assert expected >= 2


def test_features_standardised_on_train(fixture_path):
    task = load_mmimdb(fixture_path, check_release_sizes=False)
    train = task.splits["train"].inputs["text"]["features"]
    assert torch.allclose(train.mean(0), torch.zeros(300), atol=1e-4)
    raw = load_mmimdb(fixture_path, check_release_sizes=False, standardize=False)
    with h5py.File(fixture_path, "r") as handle:
        assert np.allclose(raw.splits["test"].inputs["text"]["features"].numpy(), handle["features"][52:72])


def test_release_size_check_rejects_small_file(fixture_path):
    with pytest.raises(MMIMDbFormatError, match="not the release's 25959 rows"):
        load_mmimdb(fixture_path)


def test_missing_key_is_named(fixture_path):
    with h5py.File(fixture_path, "r+") as handle:
        del handle["vgg_features"]
    with pytest.raises(MMIMDbFormatError, match="key 'vgg_features' not found"):
        load_mmimdb(fixture_path, check_release_sizes=False)


def test_wrong_width_is_named(fixture_path):
    replace_dataset(fixture_path, "features", np.zeros((72, 299), dtype=np.float32))
    with pytest.raises(MMIMDbFormatError, match=r"'features' has shape \(72, 299\), expected \(rows, 300\)"):
        load_mmimdb(fixture_path, check_release_sizes=False)


def test_genres_with_27_columns_rejected(fixture_path):
    replace_dataset(fixture_path, "genres", np.zeros((72, 27), dtype=np.int64))
    with pytest.raises(MMIMDbFormatError, match=r"'genres' has shape \(72, 27\), expected \(rows, 23\)"):
        load_mmimdb(fixture_path, check_release_sizes=False)


def test_split_past_end_rejected(fixture_path):
    with h5py.File(fixture_path, "r+") as handle:
        handle.attrs["split"] = fuel_split_array((40, 12, 30))
    with pytest.raises(MMIMDbFormatError, match="split 'test' ends at row 82 but 'genres' has 72 rows"):
        load_mmimdb(fixture_path, check_release_sizes=False)


def test_labels_other_than_binary_rejected(fixture_path):
    with h5py.File(fixture_path, "r+") as handle:
        handle["genres"][5, 3] = 2
    with pytest.raises(MMIMDbFormatError, match="only 0 and 1"):
        load_mmimdb(fixture_path, check_release_sizes=False)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="multimodal_imdb.hdf5"):
        load_mmimdb(tmp_path / "absent.hdf5")
    bad = tmp_path / "bad.hdf5"
    bad.write_text("not hdf5")
    with pytest.raises(MMIMDbFormatError, match="cannot be opened as HDF5"):
        load_mmimdb(bad)


def test_two_worker_dataloader_reads_rows(fixture_path):
    dataset = HDF5GenreDataset(fixture_path, 40, 52)
    loader = DataLoader(dataset, batch_size=4, num_workers=2)
    batches = list(loader)
    visual = torch.cat([b["visual"] for b in batches])
    genres = torch.cat([b["genres"] for b in batches])
    with h5py.File(fixture_path, "r") as handle:
        assert torch.equal(visual, torch.from_numpy(handle["vgg_features"][40:52]))
        assert torch.equal(genres, torch.from_numpy(handle["genres"][40:52]))


def test_model_factory_shapes():
    make_model = mmimdb_model_factory()
    model = make_model(["text", "visual"])
    output = model({"text": {"features": torch.zeros(2, 300)}, "visual": {"features": torch.zeros(2, 4096)}})
    assert output.logits.shape == (2, 23)
    assert model.encoders["visual"].output_dim == 512
    with pytest.raises(ValueError, match="'text' and 'visual'"):
        make_model(["audio"])

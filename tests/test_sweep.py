import math
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from mslr_utils.experiment import search_learning_rates
from mslr_utils.sweep import (
    RayBackend,
    SequentialBackend,
    SweepTask,
    Trial,
    load_run_result,
    make_backend,
    run_sweep,
)
from mslr_utils.training import RunSpec, Trainer, TrainSettings
from conftest import CLASS_NAMES, REPO_ROOT, make_model

# Adam's first steps move each weight by about lr, so 1e10 overflows the logits and the
# Trainer raises FloatingPointError for a non-finite loss.
DIVERGING_LR = 1e10


def factory(modalities):
    return make_model(tuple(modalities))


def make_task(splits, checkpoint_dir=None, make=factory, epochs=2):
    settings = TrainSettings(epochs=epochs, batch_size=16)
    return SweepTask(make, splits["train"], splits["val"], settings, CLASS_NAMES, checkpoint_dir)


def example_trials():
    return [
        Trial(RunSpec("A-only@0.01", "unimodal", 1e-2), ("a",), columns={"model": "A-only", "lr": 1e-2}),
        Trial(RunSpec("A-only@1e+10", "unimodal", DIVERGING_LR), ("a",), columns={"model": "A-only", "lr": DIVERGING_LR}),
        Trial(RunSpec("Keep", "keep", {"a": 1e-2, "b": 3e-3}), ("a", "b")),
        Trial(RunSpec("Keep", "keep", {"a": 1e-2, "b": 3e-3}), ("a", "b"), seed=1),
    ]


def test_sweep_records_failed_trial(splits):
    sweep = run_sweep(example_trials(), make_task(splits))
    table = sweep.table.set_index("trial")
    assert list(table.index) == ["A-only@0.01", "A-only@1e+10", "Keep", "Keep#seed1"]
    assert table.loc["A-only@1e+10", "status"] == "failed"
    assert table.loc["A-only@1e+10", "error"].startswith("FloatingPointError: run 'A-only@1e+10'")
    assert math.isnan(table.loc["A-only@1e+10", "best_score"])
    assert "A-only@1e+10" not in sweep.runs
    finished = table[table["status"] == "ok"]
    assert len(finished) == 3, "the sweep goes on after a failed trial"
    assert (finished["epochs"] == 2).all()
    assert finished["val_scores"].map(len).tolist() == [2, 2, 2]
    assert table.loc["Keep", "best_score"] == max(table.loc["Keep", "val_scores"])
    assert table.loc["Keep", "lrs"] == '{"a": 0.01, "b": 0.003}'
    assert table.loc["Keep#seed1", "seed"] == 1
    assert table.loc["Keep", "val_scores"] != table.loc["Keep#seed1", "val_scores"], "the seed changes the batch order"
    assert set(table["device"]) == {"cpu"}


def test_sweep_rejects_repeated_keys(splits):
    trial = Trial(RunSpec("Keep", "keep", {"a": 1e-2, "b": 1e-2}), ("a", "b"))
    with pytest.raises(ValueError, match=r"\['Keep'\] repeat"):
        run_sweep([trial, trial], make_task(splits))


def test_sequential_threads_follow_cpu_share(splits):
    before = torch.get_num_threads()
    trial = Trial(RunSpec("A-only", "unimodal", 1e-2), ("a",))
    sweep = run_sweep([trial], make_task(splits, epochs=1), SequentialBackend(cpus_per_trial=1.5))
    assert sweep.table.loc[0, "threads"] == 1
    assert torch.get_num_threads() == before, "the thread count is restored after the trial"


def test_interrupted_sweep_resumes(splits, tmp_path):
    built = []

    def counting_factory(modalities):
        built.append(tuple(modalities))
        return make_model(tuple(modalities))

    trials = example_trials()
    first = run_sweep(trials[:2], make_task(splits, tmp_path, counting_factory))
    assert len(built) == 2
    built.clear()

    again = run_sweep(trials, make_task(splits, tmp_path, counting_factory))
    # The finished trial loads from its record; the failed one is retried, the new ones train.
    assert built == [("a",), ("a", "b"), ("a", "b")]
    table = again.table.set_index("trial")
    assert table["resumed"].tolist() == [True, False, False, False]
    assert table.loc["A-only@0.01", "val_scores"] == first.table.loc[0, "val_scores"]
    loaded, trained = again.runs["A-only@0.01"], first.runs["A-only@0.01"]
    assert loaded.best_epoch == trained.best_epoch
    for name, tensor in trained.best_state.items():
        assert torch.equal(loaded.best_state[name], tensor)
    pd.testing.assert_frame_equal(loaded.history, trained.history)


def test_load_run_result_matches_trainer(splits, tmp_path):
    settings = TrainSettings(epochs=2, batch_size=16, snapshot_epochs=(1,))
    trainer = Trainer(make_model(), RunSpec("Keep", "keep", {"a": 1e-2, "b": 1e-2}), settings, CLASS_NAMES, tmp_path)
    result = trainer.fit(splits["train"], splits["val"])
    loaded = load_run_result(trainer.checkpoint_path)
    assert (loaded.name, loaded.strategy, loaded.modalities) == ("Keep", "keep", ["a", "b"])
    assert loaded.best_epoch == result.best_epoch
    assert loaded.seconds == result.seconds
    pd.testing.assert_frame_equal(loaded.history, result.history)
    for which in ("best", "final", 1):
        for name, tensor in result.state_at(which).items():
            assert torch.equal(loaded.state_at(which)[name], tensor), (which, name)


def test_search_skips_failed_rate(splits):
    search = search_learning_rates(factory, splits["train"], splits["val"], {"a": [1e-2, DIVERGING_LR], "b": [1e-2]},
                                   [1e-2], TrainSettings(epochs=1, batch_size=16), CLASS_NAMES)
    assert search.unimodal_lrs["a"] == 1e-2
    failed = search.sweep[search.sweep["status"] == "failed"]
    assert failed["trial"].tolist() == ["A-only@1e+10"]
    assert not search.table.loc[search.table["lr"] == DIVERGING_LR, "selected"].item()
    assert search.best_runs["A-only"].name == "A-only"
    assert set(search.best_runs["A-only"].history["model"]) == {"A-only"}


def test_search_raises_when_every_rate_fails(splits):
    with pytest.raises(RuntimeError, match="every learning rate of B-only failed.*FloatingPointError"):
        search_learning_rates(factory, splits["train"], splits["val"], {"a": [1e-2], "b": [DIVERGING_LR]},
                              [1e-2], TrainSettings(epochs=1, batch_size=16), CLASS_NAMES)


def test_make_backend_names():
    assert make_backend("sequential") == SequentialBackend(None)
    ray_backend = make_backend("ray", gpus_per_trial=0.5)
    assert (ray_backend.cpus_per_trial, ray_backend.gpus_per_trial) == (1.0, 0.5)
    with pytest.raises(ValueError, match="'dask' is invalid: choose one of sequential, ray"):
        make_backend("dask")
    with pytest.raises(ValueError, match="cpus_per_trial=0 is invalid"):
        RayBackend(cpus_per_trial=0)


# Columns that must match exactly between backends; scores are compared up to float noise.
EXACT_COLUMNS = ["trial", "model", "lr", "run", "strategy", "modalities", "lrs", "seed", "status", "error", "epochs",
                 "best_epoch", "device", "threads"]


def test_ray_matches_sequential(splits, tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only, also if ray is already imported
    import ray
    from ray import cloudpickle

    # Ray workers cannot import the test modules, so their functions travel by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cloudpickle.register_pickle_by_value(sys.modules["conftest"])
    trials = example_trials()
    sequential = run_sweep(trials, make_task(splits), SequentialBackend(cpus_per_trial=1))

    storage = tmp_path / "ray"
    backend = RayBackend(cpus_per_trial=1, num_cpus=2, storage_path=storage)
    on_ray = run_sweep(trials, make_task(splits, tmp_path / "checkpoints"), backend)
    assert backend.node_ip_address == "127.0.0.1"
    assert not ray.is_initialized(), "the sweep shuts down the Ray instance it started"
    assert (storage / "sweep").is_dir(), "Tune's results go under storage_path"
    assert not (REPO_ROOT / "ray_results").exists()

    assert list(on_ray.table.columns) == list(sequential.table.columns)
    pd.testing.assert_frame_equal(on_ray.table[EXACT_COLUMNS], sequential.table[EXACT_COLUMNS])
    for index in sequential.table.index:
        expected, actual = sequential.table.loc[index], on_ray.table.loc[index]
        assert actual["val_scores"] == pytest.approx(expected["val_scores"], abs=1e-6), expected["trial"]
    assert sorted(on_ray.runs) == sorted(sequential.runs)
    for key, run in sequential.runs.items():
        for name, tensor in run.best_state.items():
            torch.testing.assert_close(on_ray.runs[key].best_state[name], tensor, msg=f"{key} {name}")

    # The trials Ray finished are recorded, so a rerun trains nothing, whatever the backend.
    def unused_factory(modalities):
        raise AssertionError(f"a finished trial was trained again: {modalities}")

    finished = [trial for trial in trials if trial.key in on_ray.runs]
    rerun = run_sweep(finished, make_task(splits, tmp_path / "checkpoints", unused_factory), SequentialBackend())
    assert rerun.table["resumed"].tolist() == [True, True, True]
    assert Path(tmp_path / "checkpoints" / "sweep").is_dir()


def test_ray_raises_trial_bug(splits, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cloudpickle.register_pickle_by_value(sys.modules["conftest"])

    def broken_factory(modalities):
        raise ValueError(f"no encoder for {modalities}")

    trial = Trial(RunSpec("Keep", "keep", {"a": 1e-2, "b": 1e-2}), ("a", "b"))
    # An exception outside TRIAL_FAILURES is a bug in the task, so the sweep raises it.
    with pytest.raises(RuntimeError, match=r"^trial Keep raised on Ray: ValueError: no encoder for \['a', 'b'\]$"):
        run_sweep([trial], make_task(splits, make=broken_factory), RayBackend(num_cpus=1))
    assert not ray.is_initialized()

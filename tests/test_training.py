import shutil

import pytest
import torch

from mslr_utils.data.splits import ModalSplit
from mslr_utils.experiment import mslr_specs, search_learning_rates, train_run
from mslr_utils.mses import ModalityEarlyStopping
from mslr_utils.training import RunSpec, Trainer, TrainSettings, predict
from conftest import CLASS_NAMES, make_model


def factory(modalities):
    return make_model(tuple(modalities))


def test_training_never_reads_test_split(splits, monkeypatch):
    read = []
    original = ModalSplit.batches

    def recording_batches(self, *args, **kwargs):
        read.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ModalSplit, "batches", recording_batches)
    settings = TrainSettings(epochs=2, batch_size=16)
    common = dict(settings=settings, class_names=CLASS_NAMES)
    search = search_learning_rates(
        factory, splits["train"], splits["val"], {"a": [1e-3], "b": [1e-3]}, [1e-3], **common
    )
    for spec in mslr_specs(search.unimodal_lrs, search.global_lr):
        train_run(factory, ["a", "b"], spec, splits["train"], splits["val"], **common)
    assert set(read) == {"train", "val"}
    predict(make_model(), splits["test"])
    assert read[-1] == "test"


def test_resume_equals_uninterrupted_run(splits, tmp_path):
    settings = TrainSettings(epochs=4, batch_size=16)
    spec = RunSpec("Keep", "keep", {"a": 1e-3, "b": 5e-3})

    reference = Trainer(make_model(), spec, settings, CLASS_NAMES, checkpoint_dir=tmp_path / "reference")
    expected = reference.fit(splits["train"], splits["val"])

    def interrupt(model, epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        return {}

    interrupted = Trainer(make_model(), spec, settings, CLASS_NAMES, tmp_path / "resumed", epoch_callback=interrupt)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(splits["train"], splits["val"])
    resumed = Trainer(make_model(), spec, settings, CLASS_NAMES, tmp_path / "resumed")
    assert resumed.try_resume()
    assert len(resumed.history) == 2
    result = resumed.fit(splits["train"], splits["val"])

    columns = [c for c in expected.history.columns if c != "seconds"]
    assert result.history[columns].equals(expected.history[columns])
    for name, value in expected.final_state.items():
        assert torch.equal(result.final_state[name], value), name
    assert result.best_epoch == expected.best_epoch


def test_finished_run_loads_without_training(splits, tmp_path):
    settings = TrainSettings(epochs=2, batch_size=16)
    spec = RunSpec("Joint-global", "joint_global", 1e-3)
    Trainer(make_model(), spec, settings, CLASS_NAMES, tmp_path).fit(splits["train"], splits["val"])

    def fail(model, epoch):
        raise AssertionError("a finished run must not train again")

    again = Trainer(make_model(), spec, settings, CLASS_NAMES, tmp_path, epoch_callback=fail)
    assert len(again.fit(splits["train"], splits["val"]).history) == 2


def test_checkpoint_of_other_configuration_raises(splits, tmp_path):
    settings = TrainSettings(epochs=1, batch_size=16)
    first = Trainer(make_model(), RunSpec("Keep", "keep", {"a": 1e-3, "b": 1e-3}), settings, CLASS_NAMES, tmp_path)
    first.fit(splits["train"], splits["val"])
    second = Trainer(make_model(), RunSpec("Keep", "keep", {"a": 2e-3, "b": 1e-3}), settings, CLASS_NAMES, tmp_path)
    shutil.copy(first.checkpoint_path, second.checkpoint_path)
    with pytest.raises(ValueError, match="another configuration"):
        second.fit(splits["train"], splits["val"])


def test_dynamic_rates_follow_validation_scores(splits):
    settings = TrainSettings(epochs=4, batch_size=16, dynamic_window=5)
    result = Trainer(
        make_model(), RunSpec("Dynamic", "dynamic", {"a": 1e-3, "b": 4e-3}), settings, CLASS_NAMES
    ).fit(splits["train"], splits["val"])
    history = result.history
    scores = history["b_val_score"].tolist()
    # Row i contains the rate used in epoch i + 1, set after epoch i from scores[:i].
    assert history.loc[0, "b_lr"] == 4e-3
    assert history.loc[1, "b_lr"] == 4e-3
    for row in (2, 3):
        mean = sum(scores[: row - 1]) / (row - 1)
        ratio = min(max(scores[row - 1] / mean, 0.1), 10.0) if mean > 0 else 1.0
        assert history.loc[row, "b_lr"] == pytest.approx(4e-3 * ratio)


def test_mses_restores_and_freezes_stalled_modality():
    model = make_model()
    mses = ModalityEarlyStopping(model, patience=1)
    mses.step({"a": 0.5, "b": 0.5}, epoch=1)
    best_a = {n: p.detach().clone() for n, p in model.modality_parameters()["a"]}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    stopped = mses.step({"a": 0.4, "b": 0.6}, epoch=2)
    assert stopped == ["a"]
    for name, param in model.modality_parameters()["a"]:
        assert torch.equal(param, best_a[name])
        assert not param.requires_grad
    assert all(p.requires_grad for _, p in model.modality_parameters()["b"])


def test_mses_stops_all_and_restores_best(splits):
    settings = TrainSettings(epochs=6, batch_size=16, mses_patience=1)
    model = make_model()
    trainer = Trainer(model, RunSpec("MSES", "mses", 1e-2), settings, CLASS_NAMES)
    trainer.mses.min_delta = 1.0  # scores are at most 1, so no epoch after the first improves
    result = trainer.fit(splits["train"], splits["val"])
    assert trainer.mses.stopped == {"a": 2, "b": 2}
    assert len(result.history) == 2
    assert result.history["a_stopped"].tolist() == [False, True]
    for modality in ("a", "b"):
        assert trainer.mses.best_epochs[modality] == 1
        for name, param in model.modality_parameters()[modality]:
            assert torch.equal(param, trainer.mses.best_states[modality][name])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: TrainSettings(epochs=0), "epochs must be at least 1"),
        (lambda: TrainSettings(selection_metric="auc"), "unknown score 'auc'"),
        (lambda: RunSpec("x", "fast", 1e-3), "unknown strategy 'fast'"),
        (lambda: Trainer(make_model(), RunSpec("x", "keep", 1e-3), TrainSettings(), CLASS_NAMES),
         "needs one rate per modality"),
        (lambda: Trainer(make_model(), RunSpec("x", "joint_global", 0.0), TrainSettings(), CLASS_NAMES),
         "finite and positive"),
    ],
)
def test_invalid_configuration_raises(make, message):
    with pytest.raises(ValueError, match=message):
        make()

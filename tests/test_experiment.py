import numpy as np
import pandas as pd
import pytest
import torch

from mslr_utils.experiment import conductance_table, evaluate_on_test, overlap_pairs, train_run
from mslr_utils.models import MLPEncoder
from mslr_utils.training import RunSpec, TrainSettings
from conftest import CLASS_NAMES, make_model


def factory(modalities):
    return make_model(tuple(modalities))


def test_evaluate_on_test_uses_requested_weights(splits):
    settings = TrainSettings(epochs=3, batch_size=16, snapshot_epochs=(1,))
    _, result = train_run(factory, ["a", "b"], RunSpec("Keep", "keep", {"a": 1e-2, "b": 1e-2}),
                          splits["train"], splits["val"], settings, CLASS_NAMES)
    weights = {"Keep": (result, "best"), "Keep@ep1": (result, 1), "Keep@ep3": (result, "final")}
    metrics, predictions = evaluate_on_test(factory, weights, splits["test"], CLASS_NAMES)
    assert list(metrics.index) == ["Keep", "Keep@ep1", "Keep@ep3"]
    assert metrics.loc["Keep@ep1", "epoch"] == 1
    assert metrics.loc["Keep@ep3", "epoch"] == 3
    assert metrics.loc["Keep", "epoch"] == result.best_epoch
    assert predictions["Keep@ep1"].shape == (len(splits["test"]),)
    accuracy = float((predictions["Keep@ep3"] == splits["test"].labels.numpy()).mean())
    assert metrics.loc["Keep@ep3", "accuracy"] == pytest.approx(accuracy)


def test_conductance_table_picks_epochs():
    history = pd.DataFrame(
        {"model": ["Keep", "Keep", "A-only"], "epoch": [1, 2, 2], "a_conductance": [0.1, 0.2, 0.3],
         "a_conductance_abs": [0.4, 0.5, 0.6], "b_conductance": [1.0, 2.0, np.nan],
         "b_conductance_abs": [1.5, 2.5, np.nan]}
    )
    table = conductance_table(history, [("Keep", 2), ("A-only", 2)], ["a", "b"])
    assert table.loc[0, "a_mean"] == 0.2
    assert table.loc[0, "b_abs"] == 2.5
    assert np.isnan(table.loc[1, "b_mean"])
    with pytest.raises(KeyError, match="no epoch 7 of 'Keep'"):
        conductance_table(history, [("Keep", 7)], ["a"])


def test_overlap_pairs_follow_published_table():
    pairs = overlap_pairs(["Audio-only", "Text-only"], "Keep@ep20", "Keep@ep100")
    assert pairs[:3] == [("Audio-only", "Joint-global"), ("Audio-only", "Keep@ep20"), ("Audio-only", "Keep@ep100")]
    assert ("Text-only", "Audio-only") in pairs
    assert pairs[-1] == ("Joint-global", "Keep@ep100")
    assert len(pairs) == 9


def test_mlp_encoder_hidden_sizes():
    encoder = MLPEncoder(4096, hidden_sizes=[2048, 512], top_activation=False)
    assert encoder.output_dim == 512
    assert isinstance(encoder.top[-1], torch.nn.Linear)
    assert encoder({"features": torch.zeros(2, 4096)}).shape == (2, 512)
    with pytest.raises(ValueError, match="positive width"):
        MLPEncoder(8, hidden_sizes=[0])

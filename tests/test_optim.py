import math

import pytest
import torch

from mslr_utils.optim import build_param_groups, smooth_learning_rates, strategy_learning_rates, _check_partition
from conftest import make_model

# Rates reported by Yao & Mihalcea (2022) per task: unimodal, best global, and Smooth.
PUBLISHED_SMOOTH = {
    "MuSE": ({"text": 2e-5, "audio": 5e-3}, 3e-4, {"text": 1e-4, "audio": 1e-3}),
    "MELD": ({"text": 1e-4, "audio": 1e-3}, 5e-4, {"text": 2.5e-4, "audio": 7.5e-4}),
    "MM-IMDb": ({"text": 1e-2, "visual": 1e-4}, 1e-3, {"text": 3e-3, "visual": 3e-4}),
}


def test_modality_groups_partition_parameters():
    model = make_model(fusion_bias=True)
    groups, report = build_param_groups(model, {"a": 1e-3, "b": 1e-2})
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    assert list(report.index) == ["a", "b", "shared"]
    assert report.loc["shared", "parameters"] == 3
    assert report["parameters"].sum() == sum(p.numel() for p in model.parameters())


def test_shared_group_rate_is_geometric_mean():
    groups, report = build_param_groups(make_model(fusion_bias=True), {"a": 1e-4, "b": 1e-2})
    assert report.loc["shared", "lr"] == pytest.approx(1e-3)


def test_global_group_holds_everything():
    model = make_model()
    groups, report = build_param_groups(model, 3e-4)
    assert list(report.index) == ["global"]
    assert report.loc["global", "tensors"] == len(list(model.parameters()))


def test_overlapping_groups_raise():
    model = make_model()
    params = list(model.parameters())
    groups = [{"name": "a", "params": params}, {"name": "b", "params": params[:1]}]
    with pytest.raises(ValueError, match="two learning-rate groups"):
        _check_partition(model, groups)


def test_parameter_in_no_group_raises():
    model = make_model()
    groups = [{"name": "a", "params": list(model.encoders["a"].parameters())}]
    with pytest.raises(ValueError, match="in no learning-rate group"):
        _check_partition(model, groups)


def test_frozen_parameters_are_left_out():
    model = make_model()
    for p in model.encoders["a"].parameters():
        p.requires_grad_(False)
    _, report = build_param_groups(model, {"a": 1e-3, "b": 1e-3})
    assert report.loc["a", "tensors"] == 2  # only the head's weight and bias


@pytest.mark.parametrize("lr", [0, -1e-3, float("nan"), float("inf"), "fast"])
def test_invalid_learning_rate_raises(lr):
    with pytest.raises(ValueError, match="learning rate for 'a'"):
        build_param_groups(make_model(), {"a": lr, "b": 1e-3})


def test_rates_for_unknown_modality_raise():
    with pytest.raises(ValueError, match="modalities are"):
        build_param_groups(make_model(), {"a": 1e-3, "audio": 1e-3})


def test_unknown_strategy_raises():
    with pytest.raises(ValueError, match="unknown strategy 'keeep'.*keep"):
        strategy_learning_rates("keeep", {"a": 1e-3}, 1e-3)


@pytest.mark.parametrize("task", sorted(PUBLISHED_SMOOTH))
def test_smooth_matches_published_rates(task):
    unimodal, global_lr, published = PUBLISHED_SMOOTH[task]
    smooth = smooth_learning_rates(unimodal, global_lr, weight=0.5)
    for modality, value in published.items():
        assert abs(smooth[modality] - value) / value < 0.25, (modality, smooth[modality], value)


def test_smooth_weight_endpoints():
    unimodal = {"text": 2e-5, "audio": 5e-3}
    assert smooth_learning_rates(unimodal, 3e-4, 0.0) == pytest.approx(unimodal)
    assert smooth_learning_rates(unimodal, 3e-4, 1.0) == pytest.approx({"text": 3e-4, "audio": 3e-4})
    with pytest.raises(ValueError, match="weight"):
        smooth_learning_rates(unimodal, 3e-4, 1.5)


def test_strategy_rates():
    unimodal = {"a": 1e-4, "b": 1e-2}
    assert strategy_learning_rates("joint_global", unimodal, 1e-3) == 1e-3
    assert strategy_learning_rates("keep", unimodal, 1e-3) == unimodal
    assert strategy_learning_rates("dynamic", unimodal, 1e-3) == unimodal
    smooth = strategy_learning_rates("smooth", unimodal, 1e-3)
    assert math.isclose(smooth["a"], math.sqrt(1e-4 * 1e-3))


def test_adamw_accepts_named_groups():
    groups, _ = build_param_groups(make_model(), {"a": 1e-3, "b": 1e-2})
    optimizer = torch.optim.AdamW(groups)
    assert [g["name"] for g in optimizer.param_groups] == ["a", "b"]

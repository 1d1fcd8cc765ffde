import math

import pytest
import torch

from mslr_utils.schedulers import DynamicLR


def make_optimizer(lrs={"text": 2e-5, "audio": 5e-3}):
    groups = [{"name": n, "params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for n, lr in lrs.items()]
    return torch.optim.AdamW(groups)


def lr_of(optimizer, name):
    return next(g["lr"] for g in optimizer.param_groups if g["name"] == name)


def test_first_epoch_ratio_is_one():
    optimizer = make_optimizer()
    scheduler = DynamicLR(optimizer, window=5)
    scheduler.step({"text": 0.7, "audio": 0.2})
    assert lr_of(optimizer, "text") == 2e-5
    assert lr_of(optimizer, "audio") == 5e-3


def test_exact_rates_for_score_history():
    optimizer = make_optimizer()
    scheduler = DynamicLR(optimizer, window=5)
    for _ in range(5):
        scheduler.step({"text": 0.5, "audio": 0.5})
    rates = scheduler.step({"text": 0.6, "audio": 0.4})
    assert scheduler.ratios["text"] == pytest.approx(1.2)
    assert rates["text"] == pytest.approx(2e-5 * 1.2)
    assert rates["audio"] == pytest.approx(5e-3 * 0.8)


def test_window_uses_only_previous_epochs():
    optimizer = make_optimizer()
    scheduler = DynamicLR(optimizer, ["text"], window=2)
    for score in (0.1, 0.4, 0.6):
        scheduler.step({"text": score})
    # ratio of the last step: 0.6 over mean(0.1, 0.4)
    assert scheduler.ratios["text"] == pytest.approx(0.6 / 0.25)
    scheduler.step({"text": 0.5})
    assert scheduler.ratios["text"] == pytest.approx(0.5 / 0.5)


def test_rates_never_compound():
    optimizer = make_optimizer()
    scheduler = DynamicLR(optimizer, ["text"], window=1)
    scheduler.step({"text": 0.5})
    scheduler.step({"text": 0.6})  # ratio 1.2
    scheduler.step({"text": 0.72})  # ratio 1.2 again, from lr(0)
    assert lr_of(optimizer, "text") == pytest.approx(2e-5 * 1.2)


@pytest.mark.parametrize(
    "history",
    [[0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [float("nan")] * 3 + [0.3], [0.4, float("nan"), 0.0, float("inf")]],
)
def test_degenerate_histories_keep_rates_finite_positive(history):
    optimizer = make_optimizer()
    scheduler = DynamicLR(optimizer, ["text"], window=5)
    for score in history:
        rates = scheduler.step({"text": score})
        assert math.isfinite(rates["text"]), (history, rates)
        assert rates["text"] > 0, (history, rates)
        assert lr_of(optimizer, "text") == rates["text"]


def test_unmanaged_group_is_untouched():
    optimizer = make_optimizer({"text": 1e-4, "audio": 1e-3, "shared": 3e-4})
    scheduler = DynamicLR(optimizer)
    assert scheduler.groups == ["text", "audio"]
    scheduler.step({"text": 0.5, "audio": 0.5})
    scheduler.step({"text": 1.0, "audio": 1.0})
    assert lr_of(optimizer, "shared") == 3e-4


def test_resume_from_state_dict_equals_uninterrupted_run():
    scores = [0.3, 0.5, 0.45, 0.6, 0.62, 0.7, 0.64, 0.8]
    reference_optimizer = make_optimizer()
    reference = DynamicLR(reference_optimizer, ["text"], window=3)
    reference_rates = [reference.step({"text": s})["text"] for s in scores]

    first_optimizer = make_optimizer()
    first = DynamicLR(first_optimizer, ["text"], window=3)
    rates = [first.step({"text": s})["text"] for s in scores[:4]]
    state = first.state_dict()

    resumed_optimizer = make_optimizer()
    resumed = DynamicLR(resumed_optimizer, ["text"], window=3)
    resumed.load_state_dict(state)
    assert lr_of(resumed_optimizer, "text") == rates[-1]
    rates += [resumed.step({"text": s})["text"] for s in scores[4:]]
    assert rates == reference_rates


def test_outside_change_of_rate_raises():
    optimizer = make_optimizer()
    scheduler = DynamicLR(optimizer, window=5)
    scheduler.step({"text": 0.5, "audio": 0.5})
    other = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    optimizer.step()
    other.step()
    with pytest.raises(RuntimeError, match="changed outside DynamicLR"):
        scheduler.step({"text": 0.5, "audio": 0.5})


def test_missing_score_raises():
    scheduler = DynamicLR(make_optimizer(), window=5)
    with pytest.raises(ValueError, match="audio"):
        scheduler.step({"text": 0.5})


def test_unknown_group_raises():
    with pytest.raises(ValueError, match="no parameter group named"):
        DynamicLR(make_optimizer(), ["video"])

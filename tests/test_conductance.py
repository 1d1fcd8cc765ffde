import pytest
import torch
from captum.attr import LayerConductance

from mslr_utils.conductance import conductance_summary, evaluation_mode, modality_conductance
from mslr_utils.data.splits import ModalSplit
from conftest import make_model, make_split


def test_conductance_identical_when_model_left_in_train_mode():
    model = make_model(dropout=0.5)
    split = make_split("val", 12, 4)
    model.train()
    first, _ = modality_conductance(model, split, "a", n_steps=16)
    second, _ = modality_conductance(model, split, "a", n_steps=16)
    assert torch.equal(first, second)
    assert model.training, "the caller's train mode must be restored"
    assert all(m.training for m in model.modules())


def test_conductance_sums_to_change_of_target_logit():
    model = make_model()
    split = make_split("val", 10, 5)
    values, delta = modality_conductance(model, split, "b", n_steps=64)
    with torch.no_grad(), evaluation_mode(model):
        inputs = split.inputs
        real = model(inputs).logits
        baseline_inputs = {"a": inputs["a"], "b": {"features": torch.zeros_like(inputs["b"]["features"])}}
        base = model(baseline_inputs).logits
    target = split.labels
    change = (real - base).gather(1, target[:, None]).squeeze(1)
    assert values.shape == (10, 16)
    assert torch.allclose(values.sum(1), change, atol=1e-3)
    assert delta.abs().max() < 1e-3


def test_constant_logits_match_fused_forward():
    # Captum run on a forward that recomputes modality a on every step must agree with
    # the shortcut that passes a's logits as a constant.
    model = make_model().eval()
    split = make_split("val", 6, 6)
    shortcut, _ = modality_conductance(model, split, "b", n_steps=20)

    a_features = split.inputs["a"]["features"]

    def fused(b_features, a_features):
        return model({"a": {"features": a_features}, "b": {"features": b_features}}).logits

    reference = LayerConductance(fused, model.encoders["b"].top).attribute(
        split.inputs["b"]["features"],
        baselines=torch.zeros_like(split.inputs["b"]["features"]),
        target=split.labels,
        additional_forward_args=(a_features,),
        n_steps=20,
    )
    assert torch.allclose(shortcut, reference, atol=1e-6)


def test_summary_reports_signed_and_absolute_means():
    model = make_model()
    summary = conductance_summary(model, make_split("val", 8, 7), n_steps=8)
    assert set(summary) == {"a", "b"}
    for values in summary.values():
        assert values["abs_mean"] >= abs(values["mean"])


def test_unknown_modality_raises():
    with pytest.raises(KeyError, match="no modality 'audio'"):
        modality_conductance(make_model(), make_split("val", 4, 8), "audio")


def test_multilabel_conductance_is_signed_label_mean():
    model = make_model().eval()
    split = make_split("val", 6, 9)
    labels = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1]])
    multilabel = ModalSplit(split.name, split.inputs, labels)
    averaged, delta = modality_conductance(model, multilabel, "a", n_steps=16, multilabel=True)
    per_label = []
    for label in range(3):
        targets = ModalSplit(split.name, split.inputs, torch.full((6,), label))
        values, _ = modality_conductance(model, targets, "a", n_steps=16)
        sign = (2 * labels[:, label] - 1).float()[:, None]
        per_label.append(values * sign)
    assert torch.allclose(averaged, torch.stack(per_label).mean(0), atol=1e-6)
    assert delta.abs().max() < 1e-2

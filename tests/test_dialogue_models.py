"""Dialogue encoders, masked loss and metrics, and per-utterance conductance for sequence tasks."""

import pytest
import torch
import torch.nn.functional as F

from mslr_utils.conductance import modality_conductance
from mslr_utils.data.splits import ModalSplit
from mslr_utils.models import BiLSTMDialogueEncoder, LateFusionClassifier, WordCNNDialogueEncoder
from mslr_utils.training import RunSpec, Trainer, TrainSettings, compute_loss, score_logits

CLASSES = ("neutral", "positive", "negative")
VOCABULARY, WORDS, FEATURES = 30, 7, 12


def dialogue_split(name="train", dialogues=6, length=5, seed=0) -> ModalSplit:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (dialogues,), generator=generator)
    lengths[0] = length
    mask = torch.arange(length)[None, :] < lengths[:, None]
    labels = torch.randint(0, 3, (dialogues, length), generator=generator).masked_fill(~mask, -1)
    words = torch.randint(1, VOCABULARY, (dialogues, length, WORDS), generator=generator) * mask[..., None]
    features = torch.randn(dialogues, length, FEATURES, generator=generator) * mask[..., None]
    return ModalSplit(name, {"text": {"words": words, "mask": mask}, "audio": {"features": features, "mask": mask}},
                      labels, ids=[f"{name}/{i}" for i in range(dialogues)])


def dialogue_model(modalities=("text", "audio"), seed=0, dropout=0.0) -> LateFusionClassifier:
    torch.manual_seed(seed)
    vectors = torch.randn(VOCABULARY, 8)
    vectors[0] = 0
    encoders = {}
    if "text" in modalities:
        encoders["text"] = WordCNNDialogueEncoder(vectors, filters=4, sentence_dim=16, top_units=12, dropout=dropout)
    if "audio" in modalities:
        encoders["audio"] = BiLSTMDialogueEncoder(FEATURES, hidden=6, top_units=12, dropout=dropout)
    return LateFusionClassifier(encoders, 3, dropout=dropout)


def with_more_padding(split: ModalSplit, extra: int) -> dict:
    inputs = {}
    for modality, tensors in split.inputs.items():
        padded = {}
        for key, tensor in tensors.items():
            shape = list(tensor.shape)
            shape[1] = extra
            padded[key] = torch.cat([tensor, torch.zeros(shape, dtype=tensor.dtype)], dim=1)
        inputs[modality] = padded
    return inputs


@pytest.mark.parametrize("modality", ["text", "audio"])
def test_padding_does_not_change_real_positions(modality):
    split = dialogue_split()
    model = dialogue_model([modality]).eval()
    with torch.no_grad():
        plain = model(split.inputs).logits
        padded = model(with_more_padding(split, 3)).logits
    mask = split.inputs[modality]["mask"]
    assert torch.allclose(plain[mask], padded[:, : mask.shape[1]][mask], atol=1e-5)


def test_padded_words_do_not_change_text_states():
    split = dialogue_split()
    model = dialogue_model(["text"]).eval()
    changed = {k: v.clone() for k, v in split.inputs["text"].items()}
    changed["words"][~changed["mask"]] = 5  # garbage in padded utterances
    with torch.no_grad():
        plain = model.encoders["text"](split.inputs["text"])
        garbage = model.encoders["text"](changed)
    mask = split.inputs["text"]["mask"]
    assert torch.allclose(plain[mask], garbage[mask], atol=1e-6)


def test_lstm_backward_direction_starts_at_last_real_utterance():
    split = dialogue_split()
    model = dialogue_model(["audio"]).eval()
    encoder = model.encoders["audio"]
    short = split.inputs["audio"]["mask"].sum(1).argmin()
    length = int(split.inputs["audio"]["mask"][short].sum())
    alone = {"features": split.inputs["audio"]["features"][short : short + 1, :length],
             "mask": split.inputs["audio"]["mask"][short : short + 1, :length]}
    with torch.no_grad():
        batched = encoder(split.inputs["audio"])[short, :length]
        single = encoder(alone)[0]
    assert torch.allclose(batched, single, atol=1e-5)


def test_loss_ignores_padded_positions():
    split = dialogue_split()
    logits = torch.randn(*split.labels.shape, 3)
    mask = split.labels >= 0
    expected = F.cross_entropy(logits[mask], split.labels[mask])
    assert torch.allclose(compute_loss(logits, split.labels, None, multilabel=False), expected)
    scrambled = logits.clone()
    scrambled[~mask] = 100.0
    assert torch.allclose(compute_loss(scrambled, split.labels, None, multilabel=False), expected)


def test_scores_count_real_utterances_only():
    split = dialogue_split()
    mask = split.labels >= 0
    logits = F.one_hot(split.labels.clamp(min=0), 3).float()
    logits[~mask] = torch.tensor([0.0, 0.0, 9.0])  # padded positions would all be wrong as "negative"
    scores = score_logits({"fused": logits}, split.labels, CLASSES)["fused"]
    assert scores["accuracy"] == 1.0
    assert scores["f1_weighted"] == 1.0


def test_trainer_runs_dynamic_on_dialogues():
    train, val = dialogue_split("train", 8, seed=1), dialogue_split("val", 4, seed=2)
    settings = TrainSettings(epochs=2, batch_size=3, selection_metric="f1_weighted", dynamic_metric="f1_weighted")
    trainer = Trainer(dialogue_model(), RunSpec("Dynamic", "dynamic", {"text": 1e-3, "audio": 1e-2}), settings, CLASSES)
    result = trainer.fit(train, val)
    assert len(result.history) == 2
    assert result.history["audio_lr"].iloc[0] == 1e-2


def test_conductance_per_utterance_sums_to_logit_change():
    """Completeness per utterance: its neurons' conductance adds up to its true-class logit change."""
    split = dialogue_split("val", 4, seed=3)
    model = dialogue_model().eval()
    for modality in ("text", "audio"):
        values, delta = modality_conductance(model, split, modality, n_steps=200, batch_size=2)
        mask = split.labels >= 0
        assert values.shape == (int(mask.sum()), 12)
        encoder = model.encoders[modality]
        x, baseline, extra = encoder.attribution_inputs(split.inputs[modality])
        with torch.no_grad():
            change = (model.modality_logits(modality, encoder.forward_from_attribution(x, *extra))
                      - model.modality_logits(modality, encoder.forward_from_attribution(baseline, *extra)))
        expected = change.gather(2, split.labels.clamp(min=0).unsqueeze(2)).squeeze(2)[mask]
        assert torch.allclose(values.sum(1), expected, atol=2e-3, rtol=1e-2), modality
        assert delta.abs().max() < 2e-3

"""Per-task model factories: a task is a data loader, a model factory and a profile."""

from __future__ import annotations

from typing import Sequence

import torch

from mslr_utils.data.splits import ModalSplit
from mslr_utils.models import (
    BiLSTMDialogueEncoder,
    LateFusionClassifier,
    MLPEncoder,
    TextEncoder,
    WordCNNDialogueEncoder,
)


def text_and_features_factory(
    feature_modality: str,
    feature_dim: int,
    num_classes: int,
    text_model_dir: str | None = None,
    finetune_layers: int | None = None,
    top_units: int = 256,
    mlp_layers: int = 4,
    dropout: float = 0.1,
    seed: int = 0,
):
    """Return ``make_model(modalities)`` for a text modality plus one feature-vector modality.

    Text goes through ``TextEncoder``; ``feature_modality`` goes through an ``MLPEncoder``
    of ``mlp_layers`` layers of ``top_units`` units. Every call seeds PyTorch first, so
    each strategy starts from the same initial heads and top-level layers. The text
    encoder always starts from the pretrained weights.
    """

    def make_model(modalities: Sequence[str]) -> LateFusionClassifier:
        torch.manual_seed(seed)
        encoders = {}
        for modality in modalities:
            if modality == "text":
                encoders["text"] = TextEncoder(text_model_dir, hidden=top_units, finetune_layers=finetune_layers)
            elif modality == feature_modality:
                encoders[modality] = MLPEncoder(feature_dim, hidden=top_units, num_layers=mlp_layers, dropout=dropout)
            else:
                raise ValueError(f"this task has modalities 'text' and {feature_modality!r}, not {modality!r}")
        return LateFusionClassifier(encoders, num_classes, dropout=dropout)

    return make_model


def reviews_model_factory(tabular_dim: int, num_classes: int, **options):
    """Return ``make_model(modalities)`` for the reviews task: text and a 4-layer tabular MLP."""
    return text_and_features_factory("tabular", tabular_dim, num_classes, **options)


def cache_text(encoder: TextEncoder, splits: dict[str, ModalSplit], batch_size: int = 64) -> dict[str, ModalSplit]:
    """Add the frozen text layers' output to every split, computed once (no-op if none are frozen)."""
    if encoder.frozen_layers == 0:
        return splits
    cached = {}
    for name, split in splits.items():
        inputs = dict(split.inputs)
        inputs["text"] = encoder.cache_frozen(split.inputs["text"], batch_size)
        cached[name] = ModalSplit(split.name, inputs, split.labels, split.ids)
    return cached


def mmimdb_model_factory(
    num_genres: int = 23,
    text_dim: int = 300,
    visual_dim: int = 4096,
    dropout: float = 0.1,
    seed: int = 0,
):
    """Return ``make_model(modalities)`` for MM-IMDb genres.

    Each modality, as in Fujimori et al. (2019): a 2048-unit ReLU layer, then a linear
    512-unit top-level layer, then a head with one logit per genre. The fused logits are
    the sum of the two heads' logits.
    """
    dims = {"text": text_dim, "visual": visual_dim}

    def make_model(modalities: Sequence[str]) -> LateFusionClassifier:
        torch.manual_seed(seed)
        encoders = {}
        for modality in modalities:
            if modality not in dims:
                raise ValueError(f"MM-IMDb has modalities 'text' and 'visual', not {modality!r}")
            encoders[modality] = MLPEncoder(
                dims[modality], hidden_sizes=[2048, 512], dropout=dropout, top_activation=False
            )
        return LateFusionClassifier(encoders, num_genres, dropout=dropout)

    return make_model


def muse_model_factory(audio_dim: int = 88, **options):
    """Return ``make_model(modalities)`` for MuSE: text and a 4-layer, 256-unit MLP on eGeMAPS features.

    The two heads' logits are summed over the 2 classes.
    """
    return text_and_features_factory("audio", audio_dim, 2, **options)


def meld_model_factory(
    embeddings,
    audio_dim: int = 1422,
    num_classes: int = 3,
    top_units: int = 512,
    lstm_hidden: int = 150,
    dropout: float = 0.1,
    train_embeddings: bool = False,
    seed: int = 0,
):
    """Return ``make_model(modalities)`` for MELD sentiment over dialogues.

    Text: a word CNN (widths 3 to 5) to 512-value sentence embeddings, then one step of
    masked self-attention across the dialogue. Audio: a bidirectional LSTM with
    ``2 * lstm_hidden`` = 300-value states. Each modality ends in a linear ``top_units``
    top-level layer and a head, and the heads' logits are summed per utterance: the same
    function as one linear layer on the concatenated states.
    """
    vectors = torch.as_tensor(embeddings, dtype=torch.float32) if embeddings is not None else None

    def make_model(modalities: Sequence[str]) -> LateFusionClassifier:
        torch.manual_seed(seed)
        encoders = {}
        for modality in modalities:
            if modality == "text":
                if vectors is None:
                    raise ValueError("the MELD text modality needs the word-vector matrix (MELDTask.embeddings)")
                encoders["text"] = WordCNNDialogueEncoder(
                    vectors, top_units=top_units, dropout=dropout, train_embeddings=train_embeddings
                )
            elif modality == "audio":
                encoders["audio"] = BiLSTMDialogueEncoder(audio_dim, lstm_hidden, top_units, dropout)
            else:
                raise ValueError(f"MELD has modalities 'text' and 'audio', not {modality!r}")
        return LateFusionClassifier(encoders, num_classes, dropout=dropout)

    return make_model

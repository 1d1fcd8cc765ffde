"""Modality-specific early stopping (MSES), a baseline in Yao & Mihalcea (2022).

The fused model trains with one global rate. When a modality's unimodal validation score
has not improved for ``patience`` epochs, that modality's best parameters (encoder and
head) are restored and frozen, while the other modalities train on.
"""

from __future__ import annotations

from typing import Mapping

import torch

from mslr_utils.models import LateFusionClassifier


class ModalityEarlyStopping:
    def __init__(self, model: LateFusionClassifier, patience: int = 3, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"MSES patience must be at least 1 epoch, got {patience}")
        self.model = model
        self.patience = patience
        self.min_delta = min_delta
        self.best_scores = {m: float("-inf") for m in model.modalities}
        self.best_epochs = {m: 0 for m in model.modalities}
        self.best_states: dict[str, dict[str, torch.Tensor]] = {}
        self.waits = {m: 0 for m in model.modalities}
        self.stopped: dict[str, int] = {}
        # Frozen parameters (a pretrained encoder's lower layers) never change, so the
        # saved best states hold only the parameters that train.
        self.trainable = {
            m: {n for n, p in params if p.requires_grad} for m, params in model.modality_parameters().items()
        }

    def _modality_state(self, modality: str) -> dict[str, torch.Tensor]:
        trainable = self.trainable[modality]
        return {n: p.detach().clone() for n, p in self.model.modality_parameters()[modality] if n in trainable}

    def _freeze(self, modality: str) -> None:
        for _, p in self.model.modality_parameters()[modality]:
            p.requires_grad_(False)
            p.grad = None

    def step(self, scores: Mapping[str, float], epoch: int) -> list[str]:
        """Update with this epoch's unimodal validation scores; returns modalities stopped now."""
        newly_stopped = []
        for modality in self.model.modalities:
            if modality in self.stopped:
                continue
            score = float(scores[modality])
            if score > self.best_scores[modality] + self.min_delta:
                self.best_scores[modality] = score
                self.best_epochs[modality] = epoch
                self.best_states[modality] = self._modality_state(modality)
                self.waits[modality] = 0
                continue
            self.waits[modality] += 1
            if self.waits[modality] >= self.patience:
                self.restore_and_freeze(modality)
                self.stopped[modality] = epoch
                newly_stopped.append(modality)
        return newly_stopped

    def restore_and_freeze(self, modality: str) -> None:
        params = dict(self.model.modality_parameters()[modality])
        with torch.no_grad():
            for name, value in self.best_states[modality].items():
                params[name].copy_(value)
        self._freeze(modality)

    def apply_modes(self) -> None:
        """Keep stopped modalities' encoders in eval mode (no dropout) while the rest train."""
        for modality in self.stopped:
            self.model.encoders[modality].eval()

    @property
    def all_stopped(self) -> bool:
        return len(self.stopped) == len(self.model.modalities)

    def state_dict(self) -> dict:
        return {
            "patience": self.patience,
            "min_delta": self.min_delta,
            "best_scores": dict(self.best_scores),
            "best_epochs": dict(self.best_epochs),
            "best_states": {m: {n: t.clone() for n, t in s.items()} for m, s in self.best_states.items()},
            "waits": dict(self.waits),
            "stopped": dict(self.stopped),
        }

    def load_state_dict(self, state: dict) -> None:
        self.patience = state["patience"]
        self.min_delta = state["min_delta"]
        self.best_scores = dict(state["best_scores"])
        self.best_epochs = dict(state["best_epochs"])
        self.best_states = {m: dict(s) for m, s in state["best_states"].items()}
        self.waits = dict(state["waits"])
        self.stopped = dict(state["stopped"])
        for modality in self.stopped:
            self._freeze(modality)

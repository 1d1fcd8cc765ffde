"""The Dynamic MSLR scheduler.

After epoch t, lr(t, N) = lr(0, N) * r(t, N), where r(t, N) is modality N's unimodal
validation score at epoch t divided by the mean of its scores over the previous
``window`` epochs. The rate is always recomputed from lr(0, N), so ratios never compound.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch


def score_ratio(score: float, previous: Sequence[float], min_ratio: float, max_ratio: float) -> float:
    """Return the current score over the mean of the previous ones, clipped to a range.

    Non-finite scores are ignored. With no usable history, a non-finite current score or
    a non-positive mean there is no reference, so the ratio is 1. The clip keeps every
    rate finite and positive: a score of 0 after good epochs would otherwise give lr 0.
    """
    finite = [float(s) for s in previous if math.isfinite(float(s))]
    if not finite or not math.isfinite(float(score)):
        return 1.0
    mean = sum(finite) / len(finite)
    if mean <= 0:
        return 1.0
    return min(max(float(score) / mean, min_ratio), max_ratio)


class DynamicLR:
    """Rescale each named modality group of an optimizer from its validation scores.

    Call ``step(scores)`` once after each epoch with a mapping from group name to that
    modality's unimodal validation score. The new rates apply to the next epoch. Groups
    not named in ``groups`` (for example ``shared``) keep their rate. If anything else
    changed a managed group's rate since the last step, ``step`` raises instead of
    silently overwriting it.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        groups: Sequence[str] | None = None,
        window: int = 5,
        min_ratio: float = 0.1,
        max_ratio: float = 10.0,
    ):
        if window < 1:
            raise ValueError(f"Dynamic window must be at least 1 epoch, got {window}")
        if not 0 < min_ratio <= 1 <= max_ratio or not math.isfinite(max_ratio):
            raise ValueError(f"need 0 < min_ratio <= 1 <= max_ratio < inf, got {min_ratio} and {max_ratio}")
        self.optimizer = optimizer
        by_name = {g.get("name"): g for g in optimizer.param_groups}
        names = list(groups) if groups is not None else [n for n in by_name if n not in (None, "shared")]
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(f"optimizer has no parameter group named {unknown}; it has {list(by_name)}")
        self.groups = names
        self.window = window
        self.min_ratio = min_ratio
        self.max_ratio = max_ratio
        self.base_lrs = {n: float(by_name[n]["lr"]) for n in names}
        self.history: dict[str, list[float]] = {n: [] for n in names}
        self.ratios = {n: 1.0 for n in names}
        self._last_lrs = dict(self.base_lrs)

    def _group(self, name: str) -> dict:
        for group in self.optimizer.param_groups:
            if group.get("name") == name:
                return group
        raise ValueError(f"optimizer lost parameter group {name!r}")

    def step(self, scores: Mapping[str, float]) -> dict[str, float]:
        """Record this epoch's scores and set the next epoch's rates; returns them."""
        missing = [n for n in self.groups if n not in scores]
        if missing:
            raise ValueError(f"Dynamic step needs a validation score for {missing}; got {sorted(scores)}")
        for name in self.groups:
            current = float(self._group(name)["lr"])
            if not math.isclose(current, self._last_lrs[name], rel_tol=1e-9, abs_tol=0.0):
                raise RuntimeError(
                    f"the rate of group {name!r} was changed outside DynamicLR "
                    f"(set {self._last_lrs[name]:.3g}, found {current:.3g}); "
                    "do not combine DynamicLR with another scheduler on the same groups"
                )
        for name in self.groups:
            previous = self.history[name][-self.window :]
            ratio = score_ratio(scores[name], previous, self.min_ratio, self.max_ratio)
            self.history[name].append(float(scores[name]))
            self.ratios[name] = ratio
            lr = self.base_lrs[name] * ratio
            self._group(name)["lr"] = lr
            self._last_lrs[name] = lr
        return dict(self._last_lrs)

    def get_last_lr(self) -> dict[str, float]:
        return dict(self._last_lrs)

    def state_dict(self) -> dict:
        return {
            "groups": list(self.groups),
            "window": self.window,
            "min_ratio": self.min_ratio,
            "max_ratio": self.max_ratio,
            "base_lrs": dict(self.base_lrs),
            "history": {n: list(h) for n, h in self.history.items()},
            "ratios": dict(self.ratios),
            "last_lrs": dict(self._last_lrs),
        }

    def load_state_dict(self, state: dict) -> None:
        if list(state["groups"]) != list(self.groups):
            raise ValueError(f"state is for groups {state['groups']}, this scheduler manages {self.groups}")
        self.window = state["window"]
        self.min_ratio = state["min_ratio"]
        self.max_ratio = state["max_ratio"]
        self.base_lrs = dict(state["base_lrs"])
        self.history = {n: list(h) for n, h in state["history"].items()}
        self.ratios = dict(state["ratios"])
        self._last_lrs = dict(state["last_lrs"])
        for name, lr in self._last_lrs.items():
            self._group(name)["lr"] = lr

"""Learning-rate strategies and AdamW parameter groups per modality."""

from __future__ import annotations

import math
from typing import Mapping

import pandas as pd
import torch
from torch import nn

from mslr_utils.models import LateFusionClassifier

# Strategy names as used in profiles; DISPLAY_NAMES gives the names used in tables.
STRATEGIES = ("unimodal", "joint_global", "mses", "keep", "smooth", "dynamic")
DISPLAY_NAMES = {
    "joint_global": "Joint-global",
    "mses": "MSES",
    "keep": "Keep",
    "smooth": "Smooth",
    "dynamic": "Dynamic",
}
GLOBAL_GROUP = "global"
SHARED_GROUP = "shared"


def check_learning_rate(name: str, lr: float) -> float:
    try:
        value = float(lr)
    except (TypeError, ValueError):
        raise ValueError(f"learning rate for {name!r} must be a number, got {lr!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"learning rate for {name!r} must be finite and positive, got {lr!r}: use e.g. 1e-4")
    return value


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    return strategy


def smooth_learning_rates(
    unimodal_lrs: Mapping[str, float], global_lr: float, weight: float = 0.5
) -> dict[str, float]:
    """Pull each modality's rate towards the global rate in log space.

    lr_smooth(N) = lr(N) ** (1 - weight) * global_lr ** weight. ``weight=0`` is Keep,
    ``weight=1`` is Joint-global, and ``weight=0.5`` is the geometric midpoint. The midpoint
    matches the Smooth rates of Yao & Mihalcea (2022) to within their one-significant-figure
    rounding. For example, MELD's 1e-4 and 1e-3 with global 5e-4 give 2.2e-4 and 7.1e-4,
    published as 2.5e-4 and 7.5e-4.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"smooth weight must be in [0, 1], got {weight}")
    global_lr = check_learning_rate(GLOBAL_GROUP, global_lr)
    return {
        name: math.exp((1 - weight) * math.log(check_learning_rate(name, lr)) + weight * math.log(global_lr))
        for name, lr in unimodal_lrs.items()
    }


def strategy_learning_rates(
    strategy: str,
    unimodal_lrs: Mapping[str, float],
    global_lr: float,
    smooth_weight: float = 0.5,
) -> float | dict[str, float]:
    """Return one rate (Joint-global, MSES) or a rate per modality (Keep, Smooth, Dynamic).

    Dynamic starts from the Keep rates; its scheduler rescales them after each epoch.
    """
    check_strategy(strategy)
    if strategy in ("joint_global", "mses"):
        return check_learning_rate(GLOBAL_GROUP, global_lr)
    if strategy == "smooth":
        return smooth_learning_rates(unimodal_lrs, global_lr, smooth_weight)
    if strategy in ("keep", "dynamic"):
        return {name: check_learning_rate(name, lr) for name, lr in unimodal_lrs.items()}
    raise ValueError("strategy 'unimodal' trains one modality: pass its rate directly")


def _check_partition(model: nn.Module, groups: list[dict]) -> None:
    names = {id(p): n for n, p in model.named_parameters()}
    seen: dict[int, str] = {}
    duplicates = []
    for group in groups:
        for p in group["params"]:
            if id(p) in seen:
                duplicates.append(f"{names.get(id(p), '?')} (groups {seen[id(p)]!r} and {group['name']!r})")
            seen[id(p)] = group["name"]
    if duplicates:
        raise ValueError(f"parameters assigned to two learning-rate groups: {duplicates}")
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        raise ValueError(f"trainable parameters in no learning-rate group: {missing}")


def build_param_groups(
    model: LateFusionClassifier,
    lrs: float | Mapping[str, float],
    weight_decay: float = 0.01,
    shared_lr: float | None = None,
) -> tuple[list[dict], pd.DataFrame]:
    """Build AdamW parameter groups and a report of tensors and parameters per group.

    A single float gives one ``global`` group (Joint-global). A mapping gives one group
    per modality, holding its encoder and head, and a ``shared`` group for parameters
    of no modality (the optional fusion bias), whose rate is ``shared_lr`` or else the
    geometric mean of the modality rates. Frozen parameters (``requires_grad=False``)
    are left out. Raises ``ValueError`` if a parameter would be in two groups or a
    trainable parameter in none.
    """
    trainable = lambda params: [p for _, p in params if p.requires_grad]  # noqa: E731
    if isinstance(lrs, Mapping):
        expected = set(model.modalities)
        if set(lrs) != expected:
            raise ValueError(
                f"learning rates given for {sorted(lrs)} but the model's modalities are {sorted(expected)}"
            )
        rates = {name: check_learning_rate(name, lr) for name, lr in lrs.items()}
        modality_params = model.modality_parameters()
        groups = [
            {"name": name, "params": trainable(modality_params[name]), "lr": rates[name], "weight_decay": weight_decay}
            for name in model.modalities
        ]
        shared = trainable(model.shared_parameters())
        if shared:
            if shared_lr is None:
                shared_lr = math.exp(sum(math.log(r) for r in rates.values()) / len(rates))
            groups.append(
                {"name": SHARED_GROUP, "params": shared, "lr": check_learning_rate(SHARED_GROUP, shared_lr),
                 "weight_decay": 0.0}
            )
    else:
        lr = check_learning_rate(GLOBAL_GROUP, lrs)
        params = [p for _, p in model.named_parameters() if p.requires_grad]
        groups = [{"name": GLOBAL_GROUP, "params": params, "lr": lr, "weight_decay": weight_decay}]
    _check_partition(model, groups)
    report = pd.DataFrame(
        [
            {"group": g["name"], "lr": g["lr"], "tensors": len(g["params"]),
             "parameters": sum(p.numel() for p in g["params"])}
            for g in groups
        ]
    ).set_index("group")
    return groups, report


def make_optimizer(groups: list[dict]) -> torch.optim.AdamW:
    return torch.optim.AdamW(groups)

"""Checks of notebook parameters, run before any data is read or any file is written.

Each error names the parameter, its value and the accepted values, so that a typo in a
profile or a ``-p`` override fails at once instead of after the learning-rate search.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from mslr_utils.metrics import MULTICLASS_SCORES, MULTILABEL_SCORES
from mslr_utils.sweep import BACKENDS


def _fail(name: str, value: Any, expected: str) -> ValueError:
    return ValueError(f"parameter {name}={value!r} is invalid: expected {expected}")


def _positive_int(params: Mapping[str, Any], name: str, allow_none: bool = False) -> None:
    value = params[name]
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(name, value, "a positive integer" + (" or null (None) for all" if allow_none else ""))


def _rate_grid(params: Mapping[str, Any], name: str) -> None:
    grid = params[name]
    if not isinstance(grid, (list, tuple)) or not grid:
        raise _fail(name, grid, "a non-empty list of learning rates such as [1e-4, 5e-4]")
    for lr in grid:
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise _fail(name, grid, "finite, positive learning rates such as [1e-4, 5e-4]")


def check_parameters(params: Mapping[str, Any], multilabel: bool = False) -> None:
    """Raise ValueError naming the first invalid parameter among those present in ``params``."""
    seed = params.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise _fail("seed", seed, "an integer in [0, 2**32 - 1]")
    data_seed = params.get("data_seed")
    if data_seed is not None and (isinstance(data_seed, bool) or not isinstance(data_seed, int)
                                  or not 0 <= data_seed < 2**32):
        raise _fail("data_seed", data_seed, "an integer in [0, 2**32 - 1] or null (None) to use seed")

    for name in ("epochs", "batch_size", "dynamic_window", "mses_patience", "early_epoch",
                 "conductance_samples", "conductance_steps", "top_units", "max_length",
                 "conductance_dialogues", "max_utterances", "max_words", "lstm_hidden"):
        if name in params:
            _positive_int(params, name)
    for name in ("max_train", "max_val", "max_test", "finetune_layers"):
        if name in params:
            _positive_int(params, name, allow_none=True)

    if "max_length" in params and params["max_length"] < 3:
        raise _fail("max_length", params["max_length"], "at least 3 tokens ([CLS], one token, [SEP])")
    if "early_epoch" in params and not params["early_epoch"] <= params["epochs"]:
        raise _fail("early_epoch", params["early_epoch"], f"an epoch between 1 and epochs={params['epochs']}")
    for name in [n for n in params if n.endswith("_lr_grid")]:
        _rate_grid(params, name)

    smooth = params.get("smooth_weight", 0.5)
    if isinstance(smooth, bool) or not isinstance(smooth, (int, float)) or not 0 <= smooth <= 1:
        raise _fail("smooth_weight", smooth, "a number in [0, 1]")
    dropout = params.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise _fail("dropout", dropout, "a number in [0, 1)")
    mses_lr = params.get("mses_lr")
    if mses_lr is not None and (isinstance(mses_lr, bool) or not isinstance(mses_lr, (int, float))
                                or not math.isfinite(mses_lr) or mses_lr <= 0):
        raise _fail("mses_lr", mses_lr, "a finite, positive learning rate or null (None)")

    backend = params.get("sweep_backend", "sequential")
    if backend not in BACKENDS:
        raise _fail("sweep_backend", backend, f"one of {', '.join(BACKENDS)}")
    cpus = params.get("sweep_cpus_per_trial")
    if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, (int, float))
                             or not math.isfinite(cpus) or cpus <= 0):
        raise _fail("sweep_cpus_per_trial", cpus, "a positive number of CPU cores or null (None)")
    gpus = params.get("sweep_gpus_per_trial", 0.0)
    if isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or not math.isfinite(gpus) or gpus < 0:
        raise _fail("sweep_gpus_per_trial", gpus, "0 or a positive share of GPUs")

    allowed = MULTILABEL_SCORES if multilabel else MULTICLASS_SCORES
    if "selection_metric" in params and params["selection_metric"] not in allowed:
        raise _fail("selection_metric", params["selection_metric"], f"one of {', '.join(allowed)}")

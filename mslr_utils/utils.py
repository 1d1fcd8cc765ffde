"""Seeds, devices and small helpers shared by the notebooks."""

from __future__ import annotations

import functools
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def short_list(items, limit: int = 10) -> str:
    """Join the first ``limit`` items with commas and say how many more there are, for error messages."""
    items = list(items)
    text = ", ".join(str(item) for item in items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) random number generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    """Map ``"auto"`` to CUDA when available, else CPU; pass other names through."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(
            f"invalid device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available: use 'auto' or 'cpu'")
    return resolved


def fingerprint(obj: Any, length: int = 12) -> str:
    """Return a short SHA-256 digest of a JSON-serialisable configuration."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


@functools.lru_cache(maxsize=1)
def code_fingerprint(length: int = 12) -> str:
    """Return a digest of the library's source files.

    Checkpoints record it, so a run trained by other library code is not resumed.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:length]

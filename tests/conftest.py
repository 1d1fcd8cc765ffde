"""Shared fixtures: small synthetic two-modality data and models that train in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mslr_utils.data.splits import ModalSplit  # noqa: E402
from mslr_utils.models import LateFusionClassifier, MLPEncoder  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
CLASS_NAMES = ("neutral", "positive", "negative")


def make_split(name: str, n: int, seed: int, dims=(6, 4)) -> ModalSplit:
    """Two feature modalities; the label depends on both, so fusion beats either alone."""
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(n, dims[0], generator=generator)
    b = torch.randn(n, dims[1], generator=generator)
    score = a[:, 0] + b[:, 0]
    labels = torch.where(score > 0.5, 1, torch.where(score < -0.5, 2, 0))
    return ModalSplit(
        name,
        {"a": {"features": a}, "b": {"features": b}},
        labels,
        ids=[f"{name}-{i}" for i in range(n)],
    )


def make_model(modalities=("a", "b"), seed: int = 0, dropout: float = 0.1, fusion_bias: bool = False):
    torch.manual_seed(seed)
    dims = {"a": 6, "b": 4}
    encoders = {m: MLPEncoder(dims[m], hidden=16, num_layers=2, dropout=dropout) for m in modalities}
    return LateFusionClassifier(encoders, num_classes=3, dropout=dropout, fusion_bias=fusion_bias)


@pytest.fixture
def splits():
    return {"train": make_split("train", 96, 1), "val": make_split("val", 48, 2), "test": make_split("test", 48, 3)}


@pytest.fixture(scope="session")
def smoke_reproduction(tmp_path_factory):
    """Run the whole smoke chain once: every task notebook over two seeds, then the three analyses.

    Returns the folder with ``results/`` and ``checkpoints/``, and the finished process.
    """
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("reproduce")
    command = [sys.executable, "-m", "mslr_utils.reproduce", "run", "--profile", "smoke",
               "--results", str(root / "results"), "--checkpoints", str(root / "checkpoints")]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return root, completed

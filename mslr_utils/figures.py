"""Write every figure as PNG beside the CSV of the numbers behind it."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from mslr_utils.io import atomic_write, write_text


def save_table(frame: pd.DataFrame, name: str, output_dir: str | os.PathLike, index: bool = True) -> Path:
    """Write ``frame`` to ``output_dir/name.csv`` atomically."""
    return write_text(Path(output_dir) / f"{name}.csv", frame.to_csv(index=index, float_format="%.6g"))


def save_figure(
    fig: plt.Figure,
    data: pd.DataFrame,
    name: str,
    output_dir: str | os.PathLike,
    dpi: int = 120,
) -> tuple[Path, Path]:
    """Write ``fig`` as ``name.png`` and ``data`` as ``name.csv`` under ``output_dir``.

    The PNG carries no creation date, so unchanged numbers give an unchanged file.
    """
    output_dir = Path(output_dir)
    png = atomic_write(
        output_dir / f"{name}.png",
        lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png", metadata={"Software": None}),
    )
    csv = save_table(data, name, output_dir, index=False)
    return png, csv


def plot_per_epoch(history: pd.DataFrame, value_columns: dict[str, str], title: str, ylabel: str, by: str = "model"):
    """Plot one line per (model, column) against epoch; returns the figure.

    ``value_columns`` maps a history column to its legend label.
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    for model, rows in history.groupby(by, sort=False):
        for column, label in value_columns.items():
            if column in rows and rows[column].notna().any():
                ax.plot(rows["epoch"], rows[column], marker="o", label=f"{model}: {label}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig

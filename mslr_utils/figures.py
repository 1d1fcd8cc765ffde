"""Write every figure as PNG beside the CSV of the numbers behind it."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
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


def model_styles(models: list[str]) -> dict[str, dict]:
    """Return a colour, marker and line style per model, so that coinciding lines stay visible."""
    colours = plt.get_cmap("tab10")
    markers = "osD^vP*X"
    styles = ["-", "--", ":", "-."]
    return {
        name: {"color": colours(i % 10), "marker": markers[i % len(markers)], "linestyle": styles[i % len(styles)],
               "markersize": 5}
        for i, name in enumerate(models)
    }


def add_model_legend(fig: plt.Figure, models: list[str], style: dict[str, dict], bottom: float) -> None:
    """Put one legend for every panel below the axes, which keep the figure above ``bottom``."""
    handles = [plt.Line2D([], [], label=name, **style[name]) for name in models]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(models), 7), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, bottom, 1, 1))


def plot_conductance_and_lr(history: pd.DataFrame, modalities: list[str]) -> tuple[plt.Figure, pd.DataFrame]:
    """Plot each modality's mean conductance (top row) and learning rate (bottom row) per epoch.

    One line per model in ``history`` (the concatenated run histories), with the same
    colour, marker and line style in every panel and one legend for the figure. Lines
    that coincide (Keep and Dynamic before Dynamic has history) stay visible through
    their different styles. Returns the figure and the columns behind it.
    """
    columns = ["model", "epoch"] + [f"{m}_{kind}" for m in modalities for kind in ("conductance", "lr")]
    data = history[[c for c in columns if c in history]]
    models = list(dict.fromkeys(data["model"]))
    style = model_styles(models)
    fig, axes = plt.subplots(2, len(modalities), figsize=(5.5 * len(modalities), 6.5), sharex=True, squeeze=False)
    for column, modality in enumerate(modalities):
        conductance_ax, lr_ax = axes[0, column], axes[1, column]
        for model_name, rows in data.groupby("model", sort=False):
            if f"{modality}_lr" not in rows or rows[f"{modality}_lr"].isna().all():
                continue
            if f"{modality}_conductance" in rows:
                conductance_ax.plot(rows["epoch"], rows[f"{modality}_conductance"], label=model_name, **style[model_name])
            lr_ax.plot(rows["epoch"], rows[f"{modality}_lr"], label=model_name, **style[model_name])
        conductance_ax.axhline(0.0, color="grey", linewidth=0.8)
        conductance_ax.set_title(f"{modality}: mean conductance of the top-level layer")
        conductance_ax.set_ylabel("conductance (logit units)")
        rates = data[f"{modality}_lr"].dropna() if f"{modality}_lr" in data else pd.Series(dtype=float)
        if not rates.empty:
            # Limits first: a constant rate would otherwise give a zero-height log axis.
            lr_ax.set_ylim(rates.min() / 2, rates.max() * 2)
            lr_ax.set_yscale("log")
        lr_ax.set_title(f"{modality}: learning rate")
        lr_ax.set_ylabel("AdamW learning rate")
        lr_ax.set_xlabel("epoch")
        lr_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    add_model_legend(fig, models, style, bottom=0.06)
    return fig, data


def plot_conductance_over_seeds(
    frame: pd.DataFrame, marks: dict[str, int | None], title: str = ""
) -> plt.Figure:
    """Plot mean conductance per epoch with a one-deviation band, one panel per modality.

    ``frame`` has columns model, epoch, modality, mean and std (``results.conductance_over_seeds``).
    ``marks`` maps a label to an epoch drawn as a dotted vertical line (the early and final epochs).
    """
    modalities = list(dict.fromkeys(frame["modality"])) or ["none"]
    models = list(dict.fromkeys(frame["model"]))
    style = model_styles(models)
    fig, axes = plt.subplots(1, len(modalities), figsize=(5.5 * len(modalities), 4.2), squeeze=False)
    for ax, modality in zip(axes[0], modalities):
        for model in models:
            rows = frame[(frame["modality"] == modality) & (frame["model"] == model)].sort_values("epoch")
            if rows.empty:
                continue
            ax.plot(rows["epoch"], rows["mean"], label=model, **style[model])
            band = rows["std"].fillna(0.0)
            ax.fill_between(rows["epoch"], rows["mean"] - band, rows["mean"] + band, color=style[model]["color"],
                            alpha=0.15)
        for label, epoch in marks.items():
            if epoch:
                ax.axvline(epoch, color="grey", linestyle=":", linewidth=1)
                ax.annotate(label, (epoch, 1.0), xycoords=("data", "axes fraction"), fontsize=7,
                            rotation=90, va="top", ha="right", color="grey")
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_title(f"{title}: {modality}" if title else modality)
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean conductance (logit units)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    add_model_legend(fig, models, style, bottom=0.1)
    return fig

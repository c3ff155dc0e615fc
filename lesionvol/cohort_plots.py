"""Cohort plots a researcher would otherwise make by hand (matplotlib, Agg, no display).

Both take the tidy cohort table (one row per hip per timepoint, the columns of
``volumes.csv`` plus ``subject`` and ``side``) and write a PNG atomically.

Figures are bare :class:`matplotlib.figure.Figure` objects on their own Agg canvas, never
pyplot: pyplot would hold them in its global figure list and choosing its backend
(``matplotlib.use``) would change the backend of the host process (napari, a notebook).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from lesionvol.io import atomic_path
from lesionvol.measure import THRESHOLD_PCT


def new_figure(figsize: tuple[float, float]):
    """A figure with one axes on an Agg canvas, without pyplot (the process's backend is left alone).

    Example
    -------
    >>> fig, ax = new_figure((4, 3))
    >>> type(fig.canvas).__name__, len(fig.axes)
    ('FigureCanvasAgg', 1)
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:  # a killed run's temporary file is removed by the next batch
        fig.savefig(tmp, dpi=110)
    return Path(path)


def _visits(table: pd.DataFrame) -> pd.DataFrame:
    """The table with ``hip`` (subject side) and ``visit`` (0 = baseline) columns, in study order."""
    table = table.copy()
    table["hip"] = table["subject"].astype(str) + " " + table["side"].astype(str)
    table["visit"] = table.groupby("hip", sort=False).cumcount()
    return table


def plot_lf_trajectories(table: pd.DataFrame, path: str | os.PathLike,
                         threshold_pct: float = THRESHOLD_PCT) -> Path:
    """Each hip's lesion fraction (LF, % of the head) against days, with the threshold line.

    Hips without days are drawn against the visit number instead (and the axis says so).
    """
    from matplotlib import colormaps

    table = _visits(table)
    use_days = "days" in table and table["days"].notna().all() and len(table) > 0
    fig, ax = new_figure((7.5, 4.8))
    hips = list(dict.fromkeys(table["hip"]))
    colours = colormaps["tab20" if len(hips) > 10 else "tab10"]
    for i, hip in enumerate(hips):
        rows = table[table["hip"] == hip]
        x = rows["days"] if use_days else rows["visit"]
        ax.plot(x, rows["lesion_pct_head"], marker="o", ms=4, lw=1.3, color=colours(i % colours.N),
                label=hip)
    ax.axhline(threshold_pct, color="crimson", ls="--", lw=1.2,
               label=f"{threshold_pct:g} % threshold (Gómez-Barrena 2022)")
    ax.set_xlabel("days since baseline" if use_days else "visit (0 = baseline; days unknown)")
    ax.set_ylabel("lesion fraction LF (% of femoral head)")
    ax.set_title(f"Lesion fraction per hip ({len(hips)} hips)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if len(hips) <= 20:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def plot_rf_by_followup(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """The cohort's residual fraction (RF, % of the baseline lesion) at each follow-up.

    One column per follow-up visit (1st, 2nd, … after baseline), each hip a point, with the
    median and the visit's median days in the label.
    """
    table = _visits(table)
    follow = table[(table["visit"] > 0) & table["residual_pct_baseline"].notna()]
    fig, ax = new_figure((6.5, 4.8))
    visits = sorted(follow["visit"].unique())
    rng = np.random.default_rng(0)
    labels = []
    for k in visits:
        values = follow.loc[follow["visit"] == k, "residual_pct_baseline"].to_numpy(float)
        x = k + rng.uniform(-0.12, 0.12, len(values))
        ax.scatter(x, values, s=22, alpha=0.75, color="tab:blue", edgecolor="none")
        ax.hlines(np.median(values), k - 0.25, k + 0.25, color="black", lw=2)
        days = follow.loc[follow["visit"] == k, "days"] if "days" in follow else pd.Series(dtype=float)
        when = f"\n(median {days.median():.0f} d)" if days.notna().any() else ""
        labels.append(f"follow-up {k}{when}\nn = {len(values)}")
    if len(visits) > 1:
        medians = [np.median(follow.loc[follow["visit"] == k, "residual_pct_baseline"]) for k in visits]
        ax.plot(visits, medians, color="black", lw=0.8, alpha=0.6)
    ax.axhline(100, color="grey", ls=":", lw=1, label="baseline lesion (100 %)")
    ax.set_xticks(visits, labels)
    ax.set_xlim(0.4, (max(visits) if visits else 1) + 0.6)
    ax.set_ylabel("residual fraction RF (% of baseline lesion)")
    ax.set_title("Residual lesion at each follow-up (bar: median)")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    if not visits:
        ax.text(0.5, 0.5, "no follow-up scans", transform=ax.transAxes, ha="center")
    ax.legend(fontsize=8, loc="upper right", frameon=False)
    fig.tight_layout()
    return _save(fig, path)

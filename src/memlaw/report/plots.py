"""The law's three figures: predicted vs measured ΔL, ΔL vs ℓ per rank, recall over (r, ℓ).

Figures are built with matplotlib's object API (``Figure``), not pyplot: nothing here selects
a backend or touches pyplot's global state, so a caller's own plotting is left as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FormatStrFormatter

from memlaw.law.fit import MemoryLaw
from memlaw.law.points import LawPoints

MARKERS = "os^Dv<>p"
#: Line styles of the covariate law's curves, one per ratio ρ.
LINES = ("-", "--", ":", "-.")


def _ratios(points: LawPoints) -> list[float | None]:
    return [None] if points.ratio is None else sorted(set(points.ratio.tolist()))


def _of_ratio(points: LawPoints, ratio: float | None) -> np.ndarray:
    return np.ones(len(points.rank), dtype=bool) if ratio is None else points.ratio == ratio


def predicted_vs_measured(law: MemoryLaw, points: LawPoints, path: Path) -> None:
    predicted, measured, excluded = (
        law.predict(law.x_of(points), points.length, points.initial_loss),
        points.delta_loss,
        ~law.usable(points),
    )
    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    for k, ratio in enumerate(_ratios(points)):
        pick = _of_ratio(points, ratio)
        label = "" if ratio is None else f"ρ = {ratio:g}"
        axes.scatter(
            predicted[pick & ~excluded], measured[pick & ~excluded], marker=MARKERS[k % 8], label=label or None
        )
        if (pick & excluded).any():
            axes.scatter(
                predicted[pick & excluded], measured[pick & excluded], marker=MARKERS[k % 8], facecolors="none",
                edgecolors="grey", label=f"{label} excluded (saturated or budget-limited)".strip(),
            )  # fmt: skip
    positive = np.concatenate([predicted[predicted > 0], measured[measured > 0]])
    low, high = positive.min() / 1.3, positive.max() * 1.3
    axes.plot([low, high], [low, high], color="black", linewidth=0.8)
    axes.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high))
    axes.set(xlabel="predicted ΔL (nats/token)", ylabel="measured ΔL (nats/token)")
    axes.set_title(
        f"{law.formula(fitted=True)}\nR² = {law.r2_:.3f} on {law.n_points_} fitted points",
        fontsize=9,
    )
    _plain_log_ticks(axes)
    if axes.get_legend_handles_labels()[1]:
        axes.legend(fontsize=8)
    _save(figure, path)


def delta_vs_length(law: MemoryLaw, points: LawPoints, path: Path) -> None:
    figure = Figure(figsize=(6, 4.5))
    axes = figure.subplots()
    colours = colormaps["viridis"]
    ranks = sorted(set(points.rank.tolist()))
    curve = np.geomspace(points.length.min() / 1.2, points.length.max() * 1.2, 100)
    excluded = ~law.usable(points)
    for i, rank in enumerate(ranks):
        colour = colours(i / max(1, len(ranks) - 1))
        x = rank * (points.params / points.rank)[0] if law.x == "params" else rank
        if law.form_.covariate is None:
            axes.plot(curve, law.predict(x, curve), color=colour, linewidth=1)
        for k, ratio in enumerate(_ratios(points)):
            pick = (points.rank == rank) & _of_ratio(points, ratio)
            if law.form_.covariate is not None and pick.any():
                # one curve per ratio, at the mean initial loss its points had
                start = float(points.initial_loss[pick].mean())
                axes.plot(curve, law.predict(x, curve, start), color=colour, linewidth=1, linestyle=LINES[k % 4])
            axes.scatter(
                points.length[pick & ~excluded],
                points.delta_loss[pick & ~excluded],
                color=colour,
                marker=MARKERS[k % 8],
            )
            axes.scatter(
                points.length[pick & excluded],
                points.delta_loss[pick & excluded],
                facecolors="none",
                edgecolors=colour,
                marker=MARKERS[k % 8],
            )
        axes.plot([], [], color=colour, label=f"r = {rank:g}")
    for k, ratio in enumerate(_ratios(points)):
        if ratio is not None:
            axes.scatter([], [], color="grey", marker=MARKERS[k % 8], label=f"ρ = {ratio:g}")
    axes.set(xscale="log", yscale="log", xlabel="answer tokens ℓ", ylabel="ΔL (nats/token)")
    _plain_log_ticks(axes)
    axes.set_title("ΔL vs ℓ per rank: points measured, lines fitted (hollow: excluded)", fontsize=9)
    axes.legend(fontsize=8, ncol=2)
    _save(figure, path)


def recall_heatmap(points: LawPoints, path: Path) -> None:
    """Final loss as colour, exact match written in each cell, certified cells outlined."""
    ratios = _ratios(points)
    ranks, lengths = sorted(set(points.rank.tolist())), sorted(set(points.length.tolist()))
    final = points.final_loss if points.final_loss is not None else np.full(len(points.rank), np.nan)
    figure = Figure(figsize=(4.2 * len(ratios), 3.8))
    panels = figure.subplots(1, len(ratios), squeeze=False)
    for panel, ratio in zip(panels[0], ratios, strict=True):
        grid = np.full((len(ranks), len(lengths)), np.nan)
        for i in np.flatnonzero(_of_ratio(points, ratio)):
            row, column = ranks.index(points.rank[i]), lengths.index(points.length[i])
            grid[row, column] = final[i]
            if points.exact_match is not None:
                dark = final[i] > np.nanmean(final)
                panel.text(column, row, f"{points.exact_match[i]:.2f}", ha="center", va="center", fontsize=8,
                           color="white" if dark else "black")  # fmt: skip
            if points.certified is not None and points.certified[i] == 1:
                panel.add_patch(Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
        image = panel.imshow(grid, origin="lower", cmap="magma_r", aspect="auto")
        panel.set_xticks(range(len(lengths)), [f"{n:g}" for n in lengths])
        panel.set_yticks(range(len(ranks)), [f"{r:g}" for r in ranks])
        panel.set(xlabel="answer tokens ℓ", ylabel="rank r", title="" if ratio is None else f"ρ = {ratio:g}")
        figure.colorbar(image, ax=panel, label="final loss (nats/token)")
    figure.suptitle("final loss (colour), greedy exact match (text), certified (red outline)", fontsize=9)
    _save(figure, path)


def _plain_log_ticks(axes) -> None:
    """'30', '100' rather than '3×10¹', '10²' on log axes."""
    for axis in (axes.xaxis, axes.yaxis):
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_formatter(FormatStrFormatter("%g"))


def _save(figure: Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=120)

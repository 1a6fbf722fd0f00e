"""A report folder: the law, its figures, every cell with its efficiency, and a plan."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from memlaw.errors import MemlawInputError
from memlaw.io import whole, write_dir_atomic
from memlaw.law.fit import MemoryLaw
from memlaw.law.plan import plan_rank
from memlaw.law.points import LawPoints
from memlaw.law.summary import describe_fit

FIGURES = {
    "predicted_vs_measured": "Predicted vs measured ΔL",
    "delta_vs_length": "ΔL vs ℓ per rank, with the fitted law",
    "recall_heatmap": "Final loss and exact match over (r, ℓ)",
}


def write_report(
    out: str | Path,
    law: MemoryLaw,
    points: LawPoints,
    *,
    plan_length: float | None = None,
    image_format: str = "png",
) -> Path:
    """Write ``out/`` (which must not exist or be empty) atomically; returns the summary's path."""
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise MemlawInputError(f"{target} already exists and is not empty: remove it or choose another out=")

    def fill(folder: Path) -> None:
        from memlaw.report.plots import delta_vs_length, predicted_vs_measured, recall_heatmap  # matplotlib

        (folder / "law.json").write_text(json.dumps(law.to_dict(), indent=2) + "\n", encoding="utf-8")
        rows = _rows(law, points)
        _write_cells(folder / "cells.csv", rows)
        predicted_vs_measured(law, points, folder / f"predicted_vs_measured.{image_format}")
        delta_vs_length(law, points, folder / f"delta_vs_length.{image_format}")
        recall_heatmap(points, folder / f"recall_heatmap.{image_format}")
        (folder / "summary.md").write_text(_summary(law, points, rows, plan_length, image_format), encoding="utf-8")

    write_dir_atomic(target, fill)
    return target / "summary.md"


def _rows(law: MemoryLaw, points: LawPoints) -> list[dict]:
    predicted = law.predict(law.x_of(points), points.length, points.initial_loss)
    efficiency = points.bits_per_param()
    optional = lambda values, i: None if values is None else float(values[i])
    excluded, stored_bits = ~law.usable(points), points.stored_bits()
    rows = []
    for i in range(len(points.rank)):
        rows.append({
            "rank": whole(points.rank[i]), "length": whole(points.length[i]), "ratio": optional(points.ratio, i),
            "initial_loss": optional(points.initial_loss, i), "final_loss": optional(points.final_loss, i),
            "delta_loss": float(points.delta_loss[i]), "predicted_delta_loss": float(predicted[i]),
            "excluded": bool(excluded[i]),
            "trainable_params": None if points.params is None else whole(points.params[i]),
            "stored_bits": float(stored_bits[i]), "bits_per_param": optional(efficiency, i),
            "exact_match": optional(points.exact_match, i), "certified": optional(points.certified, i),
        })  # fmt: skip
    return rows


def _write_cells(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _summary(law: MemoryLaw, points: LawPoints, rows: list[dict], plan_length: float | None, image_format: str) -> str:
    provenance = ", ".join(f"{k}: {v}" for k, v in law.provenance_.settings.items())
    parts = ["# memlaw report", "", f"Probes: {len(points.rank)} cells ({provenance}).", "", "## The law", "", "```"]
    parts += describe_fit(law, points) + ["```", ""]
    if plan_length is not None:
        parts += [f"## Plan for ℓ = {plan_length:g} tokens", "", "```"]
        ratios = sorted(law.reference_.ratios(), key=lambda r: r or 0)
        for ratio in ratios or [None]:
            if ratio is not None:
                parts.append(f"content like ρ = {ratio:g}:")
            parts += plan_rank(law, plan_length, ratio=ratio).describe("rank")
        parts += ["```", ""]
    parts += ["## Figures", ""]
    parts += [f"### {title}\n\n![{title}]({name}.{image_format})\n" for name, title in FIGURES.items()]
    parts += [
        "## Cells",
        "",
        "| rank | ℓ | ρ | L_init | L_final | ΔL | predicted ΔL | bits/param | exact match | certified |",
    ]
    parts.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    show = lambda v, f: "–" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, f)
    for row in rows:
        mark = " (excluded)" if row["excluded"] else ""
        parts.append(
            f"| {row['rank']:g} | {row['length']:g} | {show(row['ratio'], 'g')} | {show(row['initial_loss'], '.3f')} "
            f"| {show(row['final_loss'], '.3f')}{mark} | {row['delta_loss']:.3f} | {row['predicted_delta_loss']:.3f} "
            f"| {show(row['bits_per_param'], '.3g')} | {show(row['exact_match'], '.2f')} "
            f"| {show(row['certified'], 'g')} |"
        )
    return "\n".join(parts) + "\n"

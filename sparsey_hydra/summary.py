"""The end-of-run table: per layer, activity, familiarity and basis-set growth."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def print_summary(summary: dict[str, Any], experiment_id: int | None = None,
                  wandb_dir: str | None = None, console: Console | None = None) -> None:
    console = console or Console(width=140)
    table = Table(title="Sparsey run summary (per layer)")
    cols = ["layer", "num_macs", "train_active_fraction", "eval_active_fraction",
            "train_mean_g", "eval_mean_g", "basis_set_mean", "basis_set_max"]
    heads = ["layer", "MACs", "active (train)", "active (eval)", "mean G (train)",
             "mean G (eval)", "basis set mean", "basis set max"]
    metric_cols = []
    for phase in ("train", "eval"):
        for name in summary[phase]["metrics"]:
            metric_cols.append((phase, name))
    for h in heads:
        table.add_column(h, justify="right")
    for phase, name in metric_cols:
        table.add_column(f"{name} ({phase})", justify="right")
    for row in summary["layers"]:
        ell = row["layer"] - 1
        cells = [_fmt(row.get(c)) for c in cols]
        cells += [_fmt(summary[p]["metrics"][n][ell]) for p, n in metric_cols]
        table.add_row(*cells)
    console.print(table)
    for phase in ("train", "eval"):
        st = summary[phase]
        fps = st["frames_per_second"]
        console.print(f"{phase}: {st['frames']} frames, "
                      f"{_fmt(fps)} frames/s" if fps else f"{phase}: {st['frames']} frames")
    if "model" in summary:
        m = summary["model"]
        console.print(f"model: {m['name']} v{m['version']} → {m['path']}")
    if experiment_id is not None:
        console.print(f"experiment id: {experiment_id}")
    if wandb_dir:
        console.print(f"W&B offline run: {wandb_dir}")

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


def _print_metrics(summary: dict[str, Any], console: Console) -> None:
    """Every configured metric per layer and phase: the mean over frames of its per-frame
    layer value (— where it is undefined, e.g. match_accuracy in training)."""
    names = list(dict.fromkeys([*summary.get("configured_metrics", []),
                                *(n for p in ("train", "eval") for n in summary[p]["metrics"])]))
    if not names:
        return
    n_layers = len(summary["layers"])
    table = Table(title="Metrics (mean per frame; layer = its reduction over MACs)")
    table.add_column("metric")
    table.add_column("phase")
    for ell in range(n_layers):
        table.add_column(f"layer {ell + 1}", justify="right")
    table.add_column("model", justify="right")
    for name in names:
        for phase in ("train", "eval"):
            per_layer = summary[phase]["metrics"].get(name)
            model = summary[phase].get("model_metrics", {}).get(name)
            cells = [_fmt(v) for v in per_layer] if per_layer else ["—"] * n_layers
            table.add_row(name, phase, *cells, _fmt(model))
    console.print(table)


def print_summary(summary: dict[str, Any], experiment_id: int | None = None,
                  wandb_dir: str | None = None, console: Console | None = None) -> None:
    console = console or Console(width=140)
    table = Table(title="Sparsey run summary (per layer)")
    cols = ["layer", "num_macs", "train_active_fraction", "eval_active_fraction",
            "train_mean_g", "eval_mean_g", "basis_set_mean", "basis_set_max"]
    heads = ["layer", "MACs", "active (train)", "active (eval)", "mean G (train)",
             "mean G (eval)", "basis set mean", "basis set max"]
    for h in heads:
        table.add_column(h, justify="right")
    for row in summary["layers"]:
        table.add_row(*[_fmt(row.get(c)) for c in cols])
    console.print(table)
    _print_metrics(summary, console)
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

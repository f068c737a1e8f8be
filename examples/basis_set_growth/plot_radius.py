"""Basis-set size against receptive-field radius, from a finished `basis_set_growth` study.

Reads only what the sweep left in the launch directory's `sparsey.db`: the Optuna study
(parameters of each trial) and, through each trial's `experiment_id`, the experiment's
summary and per-step metrics. Draws

- left: final basis-set size per layer-1 MAC (distinct codes learned) for every completed
  trial against its receptive-field radius, coloured by MAC count, with the mean per radius;
- right: basis-set growth over training (mean over MACs, per step), averaged per radius.

    python plot_radius.py --db bsg_run/sparsey.db --study readme_basis_set --out fig.png
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402

RADIUS = "network.layers.0.receptive_field_radius"
MACS = "network.layers.0.num_macs"


def trial_rows(db: Path, study_name: str) -> list[dict]:
    """One row per completed trial: radius, MAC count, final basis set, growth curve."""
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{db.resolve()}")
    con = sqlite3.connect(db)
    rows = []
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        exp_id = t.user_attrs.get("experiment_id")
        if exp_id is None or RADIUS not in t.params:
            continue
        (summary,) = con.execute("SELECT summary FROM experiments WHERE id = ?",
                                 (exp_id,)).fetchone()
        layer1 = json.loads(summary)["layers"][0]
        curve = [v for (v,) in con.execute(
            "SELECT value FROM step_metrics WHERE experiment_id = ? AND phase = 'train' "
            "AND layer = 1 AND metric = 'basis_set_size' ORDER BY step", (exp_id,))]
        rows.append({"radius": float(t.params[RADIUS]),
                     "macs": int(t.params.get(MACS, layer1["num_macs"])),
                     "final": float(layer1["basis_set_mean"]),
                     "objective": float(t.value), "curve": curve})
    con.close()
    return rows


def draw(rows: list[dict], out: Path, title: str) -> None:
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    macs = sorted({r["macs"] for r in rows})
    cmap = plt.get_cmap("viridis", max(len(macs), 2))
    rng = np.random.default_rng(0)
    for i, m in enumerate(macs):
        pts = [r for r in rows if r["macs"] == m]
        x = np.array([r["radius"] for r in pts]) * (1 + rng.uniform(-0.03, 0.03, len(pts)))
        ax.scatter(x, [r["final"] for r in pts], color=cmap(i), alpha=0.75, s=28,
                   label=f"{m} MACs")
    by_r: dict[float, list[float]] = defaultdict(list)
    for r in rows:
        by_r[r["radius"]].append(r["final"])
    radii = sorted(by_r)
    ax.plot(radii, [np.mean(by_r[x]) for x in radii], "k-o", lw=2, label="mean per radius")
    ax.set_xlabel("layer-1 receptive-field radius (unit-square units)")
    ax.set_ylabel("final basis-set size per MAC (distinct codes)")
    ax.set_title("basis-set size vs receptive-field radius")
    ax.legend(fontsize=8)
    rcmap = plt.get_cmap("plasma", max(len(radii), 2))
    for i, x in enumerate(radii):
        curves = [r["curve"] for r in rows if r["radius"] == x and r["curve"]]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        ax2.plot(np.arange(1, n + 1), np.mean([c[:n] for c in curves], axis=0),
                 color=rcmap(i), label=f"r = {x:g} ({len(curves)} trials)")
    ax2.set_xlabel("training frame")
    ax2.set_ylabel("basis-set size per MAC (mean over trials)")
    ax2.set_title("basis-set growth during training")
    ax2.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"saved {out} ({len(rows)} trials)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, default=Path("sparsey.db"))
    ap.add_argument("--study", default="readme_basis_set")
    ap.add_argument("--out", type=Path, default=Path("basis_set_vs_radius.png"))
    args = ap.parse_args()
    rows = trial_rows(args.db, args.study)
    if not rows:
        raise SystemExit(f"no completed trials with a radius in study '{args.study}' ({args.db})")
    for x in sorted({r["radius"] for r in rows}):
        vals = [r["final"] for r in rows if r["radius"] == x]
        print(f"radius {x:>5g}: {len(vals):3d} trials, basis-set size per MAC "
              f"mean {np.mean(vals):7.2f} (min {min(vals):.2f}, max {max(vals):.2f})")
    draw(rows, args.out, f"study '{args.study}': sparseypy README experiment on the digits")


if __name__ == "__main__":
    main()

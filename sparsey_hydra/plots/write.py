"""Draw every picture the data allows and save it as PNG."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sparsey_hydra.plots.basis_average import basis_average_figure
from sparsey_hydra.plots.data import PlotData
from sparsey_hydra.plots.g_histogram import g_histogram_figure
from sparsey_hydra.plots.growth import growth_figure
from sparsey_hydra.plots.heatmaps import heatmap_figure


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)  # Agg: no display, no pyplot
    fig.savefig(path)
    return path


def write_plots(data: PlotData, out_dir: str | Path, prefix: str = "") -> dict[str, Path]:
    """PNG files in `out_dir`, keyed `plots/<name>` for W&B."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def save(name: str, fig: Figure) -> None:
        written[f"plots/{name}"] = _save(fig, out / f"{prefix}{name}.png")

    if data.growth is not None and data.growth.shape[0]:
        save("growth", growth_figure(data.growth, data.layers))
    for phase, quantities in data.mac_values.items():
        for ell, grid in enumerate(data.layers):
            per_layer = {k: v[ell] for k, v in quantities.items() if ell < len(v)}
            if per_layer:
                save(f"heatmaps_{phase}_layer{ell + 1}",
                     heatmap_figure(per_layer, grid,
                                    f"layer {ell + 1} ({phase}): {grid.rows}×{grid.cols} "
                                    f"{grid.layout} grid, {grid.num_macs} MACs"))
    hists = {p: h for p, h in data.g_hist.items() if h and any(float(x.sum()) for x in h)}
    if hists:
        save("g_histogram", g_histogram_figure(hists))
    if data.basis_average is not None and data.fields is not None:
        for ell, (images, fields) in enumerate(zip(data.basis_average, data.fields,
                                                   strict=True)):
            save(f"basis_average_layer{ell + 1}",
                 basis_average_figure(images, fields, data.layers[ell],
                                      f"layer {ell + 1}: basis average per MAC "
                                      "(mean input while active, cropped to its projected RF)"))
    return written

"""Pictures of a run, drawn headless (matplotlib's Agg canvas, no pyplot state).

`collect` gathers what a run measured into `PlotData`; `write_plots` draws every picture the
data allows into PNG files and returns them by W&B key:
- `growth.png`: distinct codes per layer vs training frame (the basis-set growth curve);
- `heatmaps_<phase>_layer<ℓ>.png`: activation rate, mean G, basis-set size and feature
  coverage of every MAC, laid out on the layer's MAC grid;
- `g_histogram.png`: the distribution of G per layer, training vs evaluation;
- `basis_average_layer<ℓ>.png`: each MAC's basis average, the mean input it saw.
"""

from sparsey_hydra.plots.collect import collect
from sparsey_hydra.plots.data import LayerGrid, PlotData
from sparsey_hydra.plots.write import write_plots

__all__ = ["LayerGrid", "PlotData", "collect", "write_plots"]

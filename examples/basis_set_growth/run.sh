#!/usr/bin/env bash
# sparseypy's README experiment, end to end: an HPO study over layer-1 receptive-field radius,
# MAC count and neurons per CM (2 CMs per MAC, random search, as in the README), on the embedded
# digits, then basis-set size drawn against receptive-field radius.
#
#   bash examples/basis_set_growth/run.sh [WORK_DIR] [N_TRIALS] [OVERRIDE...]
#
# Extra overrides go to every trial, e.g. dataset.limit=300 for a quick look, or
# hydra/launcher=joblib hydra.launcher.n_jobs=4 to run four trials at a time.
# Rerunning resumes the study (same study name): only missing trials run.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="${1:-$PWD/bsg_run}"
N_TRIALS="${2:-60}"
shift $(( $# < 2 ? $# : 2 ))
mkdir -p "$WORK" && cd "$WORK"

# The README's space: 2 CMs per MAC, 4 or 9 MACs, 2..10 neurons per CM, a set of radii (ours
# are unit-square radii: r >= 1.42 covers the whole input). The CSA parameters are pinned at the
# model's defaults so the radius effect is not mixed with theirs; drop those four overrides to
# search them too (hpo=basis_set_growth searches λ/φ/χ and min_familiarity as well).
sparsey -m hpo=basis_set_growth \
  hpo.study_name=readme_basis_set hpo.n_trials="$N_TRIALS" hpo.strategy=random \
  network.layers.0.num_cms_per_mac=2 \
  'network.layers.0.num_macs=choice(4,9)' \
  'network.layers.0.num_neurons_per_cm=range(2,11)' \
  'network.layers.0.receptive_field_radius=choice(0.2,0.3,0.5,0.75,1.0,1.5)' \
  ++network.layers.0.sigmoid_lambda=28.0 ++network.layers.0.sigmoid_phi=0.5 \
  ++network.layers.0.sigmoid_chi=100.0 ++network.layers.0.min_familiarity=0.1 \
  system.wandb.mode="${WANDB_MODE:-offline}" "$@"

python "$HERE/plot_radius.py" --db sparsey.db --study readme_basis_set \
  --out "$WORK/basis_set_vs_radius.png"

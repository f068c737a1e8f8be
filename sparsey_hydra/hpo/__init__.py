"""Hyperparameter optimisation: `sparsey -m hpo=NAME` runs an Optuna study over Hydra jobs.

- `config`: the `hpo` block (search space, objective, strategy, trial count, storage);
- `space`: search dimensions → Optuna distributions → Hydra overrides;
- `objective`: a trial's value(s) from its run summary;
- `samplers`: strategies by name (random, grid, tpe, cmaes, nsga2), seeded;
- `study`: durable studies, resuming, recovering trials of dead processes;
- `sweep`: the ask → launch → tell loop used by the `sparsey_optuna` Hydra sweeper;
- `report`: the per-trial line, the best config YAML, the Pareto front and the plots.
"""

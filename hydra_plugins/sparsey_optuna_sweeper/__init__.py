"""Hydra sweeper `hydra/sweeper=sparsey_optuna`: Optuna studies for `sparsey -m hpo=NAME`.

Why not hydra-optuna-sweeper: its releases (1.2.0, 1.3.0) declare `optuna<3`, and optuna
2.10 fails against SQLAlchemy 2 (its RDB storage asserts on the schema version), so no plain
`pip install` resolves it next to this project. This sweeper implements Hydra's Sweeper
interface on optuna 4/5 and reads the whole study from the `hpo` config group.
"""

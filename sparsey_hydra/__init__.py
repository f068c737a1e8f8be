"""sparsey-hydra: a plugin-driven Sparsey experiment framework built on Hydra."""

__version__ = "0.1.0"

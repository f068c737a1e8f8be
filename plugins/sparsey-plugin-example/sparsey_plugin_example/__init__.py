"""Example sparsey-hydra plugin: one component of each kind, plus a config directory."""

__version__ = "0.1.0"

"""Experiments selectable with +experiment=NAME."""

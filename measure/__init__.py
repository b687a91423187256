"""Measurements behind figures in the docs, run from the repository root (`python -m
measure.NAME`), not installed: what a regions job looks like against stylising twice
(regions.py), what the plug-in's bridge costs (bridge_cost.py)."""

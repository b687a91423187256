"""`neural-style bench`: this engine against a naive PyTorch-tutorial-style implementation, on
the same images, device and weights, judged by one reference loss (see run.py)."""

from __future__ import annotations

from .command import add_arguments, run_from_args

__all__ = ["add_arguments", "run_from_args"]

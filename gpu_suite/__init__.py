"""The GPU measurement suite: a developer's harness, not part of the installed package. It
imports the package (neural_style_daemon, neural_style_protocol), never the other way round.
Run it from the repository root as `python -m gpu_suite` (docs/benchmarks.md, "GPU suite")."""

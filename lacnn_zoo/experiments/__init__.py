"""Experiments built on the library: model comparisons, benchmarks and the depth study."""

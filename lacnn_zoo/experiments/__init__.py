"""Experiments built on the library: model comparisons, benchmarks and the depth study."""

from lacnn_zoo.experiments.bench import flops_per_image
from lacnn_zoo.experiments.statistics import mean_std, welch

__all__ = ["flops_per_image", "mean_std", "welch"]

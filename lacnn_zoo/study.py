"""Deprecated since 0.2.0, removed in 0.3.0: moved to `lacnn_zoo.experiments.study`."""

from lacnn_zoo._deprecation import moved_module

__getattr__, __dir__ = moved_module(__name__)

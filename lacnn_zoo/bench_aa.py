"""Deprecated since 0.2.0, removed in 0.3.0: moved to `lacnn_zoo.experiments.bench_aa`
(`python -m lacnn_zoo.experiments.bench_aa`)."""

from lacnn_zoo._deprecation import moved_module, run_moved_main

if __name__ == "__main__":
    raise SystemExit(run_moved_main("lacnn_zoo.bench_aa"))

__getattr__, __dir__ = moved_module(__name__)

"""Hyperparameter search over the attention mechanism with Keras Tuner.

    from tuning import run_search
    result = run_search(["plain", "static_vector", "self_attention"], max_trials=6, epochs=5)

Attributes are imported lazily (PEP 562): `python -m tuning --help` and `lacnn-zoo tune --help` read the
parser's tables from `tuning.options` without loading Keras Tuner or TensorFlow through this package.
"""

__all__ = ["CANDIDATES", "MechanismHyperModel", "run_search"]


def __getattr__(name):
    if name in ("CANDIDATES", "MechanismHyperModel"):
        from tuning import hypermodel  # lazy: --help answers without Keras Tuner and TensorFlow

        return getattr(hypermodel, name)
    if name == "run_search":
        from tuning.search import run_search  # lazy: --help answers without Keras Tuner and TensorFlow

        return run_search
    raise AttributeError(f"module 'tuning' has no attribute {name!r}")

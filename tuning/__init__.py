"""Hyperparameter search over the attention mechanism with Keras Tuner.

    from tuning import run_search
    result = run_search(["plain", "static_vector", "self_attention"], max_trials=6, epochs=5)
"""

from tuning.hypermodel import MECHANISMS, MechanismHyperModel
from tuning.search import run_search

__all__ = ["MECHANISMS", "MechanismHyperModel", "run_search"]

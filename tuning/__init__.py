"""Hyperparameter search over the attention mechanism with Keras Tuner (see the tuning issue)."""

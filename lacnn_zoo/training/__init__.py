"""Training: the run folder, the loop, recipes, callbacks, the layer-attention monitor, distribution, and the
evaluation and prediction of trained runs."""

from lacnn_zoo.training.compiling import compile_model, compile_with_recipe
from lacnn_zoo.training.loop import DEFAULT_MODEL, TrainResult, resume, train
from lacnn_zoo.training.run_folder import RUN_KEY_DEFAULTS, RunFolder

__all__ = ["DEFAULT_MODEL", "RUN_KEY_DEFAULTS", "RunFolder", "TrainResult", "compile_model", "compile_with_recipe",
           "resume", "train"]

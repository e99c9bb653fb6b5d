"""Training: the run folder, the loop, recipes, callbacks, the layer-attention monitor, distribution, and the
evaluation and prediction of trained runs."""

from lacnn_zoo.training.callbacks import EpochTimer
from lacnn_zoo.training.compiling import compile_model, compile_with_recipe
from lacnn_zoo.training.inference import check_output_option, evaluate, predict, top1
from lacnn_zoo.training.loop import DEFAULT_MODEL, TrainResult, resume, train
from lacnn_zoo.training.monitor import LayerAttentionMonitor, is_layer_attended, layer_weights, plot_layer_attention
from lacnn_zoo.training.run_folder import RUN_KEY_DEFAULTS, RunFolder

__all__ = ["DEFAULT_MODEL", "EpochTimer", "LayerAttentionMonitor", "RUN_KEY_DEFAULTS", "RunFolder",
           "TrainResult", "check_output_option", "compile_model", "compile_with_recipe", "evaluate",
           "is_layer_attended", "layer_weights", "plot_layer_attention", "predict", "resume", "top1",
           "train"]

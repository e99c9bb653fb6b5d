"""Training: the run folder, the loop, recipes, callbacks, the layer-attention monitor, distribution, and the
evaluation and prediction of trained runs."""

from lacnn_zoo.training.loop import (  # noqa: F401
    DEFAULT_MODEL,
    RUN_KEY_DEFAULTS,
    TrainResult,
    compile_model,
    compile_with_recipe,
    load_dataset,
    resume,
    train,
)

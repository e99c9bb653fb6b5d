"""Plain tables of the zoo's named options, and `parse_override`: nothing here imports Keras or TensorFlow.

The command lines (`lacnn-zoo`, `python -m tuning`, `python -m export`) build their parsers from these tables,
so `lacnn-zoo --help` starts without loading TensorFlow.  The library modules that use a table re-export it
from here (`lacnn_zoo.data.AUGMENTS`, `lacnn_zoo.training.recipes.RECIPES`, ...), so both spellings name the
same object.
"""

import argparse
import ast

# Training-time augmentation (`augment`): what each name applies to every training image, in this order.
AUGMENTS = ("none", "crop-flip", "randaugment")

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "step", "constant")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
DISTRIBUTES = ("none", "mirrored", "multi-worker")
TAP_RULES = ("blocks", "stages")

# Every option a recipe sets; `train` records the resolved values in run.json.
DEFAULT_RECIPE = dict(
    optimizer="adamw", learning_rate=3e-3, momentum=0.9, nesterov=False, weight_decay=1e-4, batch_size=64,
    schedule="cosine", milestones=(0.5, 0.75), decay_factor=0.1, warmup_epochs=0, label_smoothing=0.0,
    clipnorm=None, ema=False, augment="none", mixup=0.0, cutmix=0.0, random_erasing=0.0, dropout=None,
)

RECIPES = {
    # The zoo's default: fast on the embedded digits (the main job).
    "default": dict(DEFAULT_RECIPE),
    # He et al. 2016, "Deep Residual Learning", section 4.2 (CIFAR-10): SGD, batch 128, lr 0.1, momentum 0.9,
    # weight decay 1e-4, lr / 10 at 32k and 48k of 64k iterations (50% and 75%), 4-pixel pad + crop and flip.
    "he2016": dict(DEFAULT_RECIPE, optimizer="sgd", learning_rate=0.1, momentum=0.9, nesterov=False,
                   weight_decay=1e-4, batch_size=128, schedule="step", milestones=(0.5, 0.75), decay_factor=0.1,
                   augment="crop-flip"),
    # Zagoruyko & Komodakis 2016, "Wide Residual Networks", section 3 (CIFAR): SGD with Nesterov momentum 0.9,
    # lr 0.1 x 0.2 at epochs 60, 120, 160 of 200 (30%, 60%, 80%), weight decay 5e-4, batch 128, dropout 0.3
    # between the convolutions of a block, pad + crop and flip.
    "zagoruyko2016": dict(DEFAULT_RECIPE, optimizer="sgd", learning_rate=0.1, momentum=0.9, nesterov=True,
                          weight_decay=5e-4, batch_size=128, schedule="step", milestones=(0.3, 0.6, 0.8),
                          decay_factor=0.2, augment="crop-flip", dropout=0.3),
    # Bello et al. 2019 train AA-WRN-28-10 on CIFAR-100 against the WRN-28-10 baseline; the documents in this
    # project state no optimiser, schedule or epoch count for it, so this recipe is the WRN baseline's
    # (zagoruyko2016) setting. That choice is ours, not the paper's.
    "bello2019": dict(DEFAULT_RECIPE, optimizer="sgd", learning_rate=0.1, momentum=0.9, nesterov=True,
                      weight_decay=5e-4, batch_size=128, schedule="step", milestones=(0.3, 0.6, 0.8),
                      decay_factor=0.2, augment="crop-flip", dropout=0.3),
}

# The depth study's variants: variant -> (registered model, fixed overrides, family)
VARIANTS = {
    "plain": ("plain_cnn_tiny", {}, "plain"),
    "resnet_add": ("resnet8", {"mixing": "add"}, "residual"),
    "resnet_beta": ("resnet8", {"mixing": "beta"}, "residual"),
    "resnet_projection": ("resnet8", {"mixing": "projection"}, "residual"),
    "lacnn_innate_static": ("lacnn_innate_static_tiny", {"backbone": "plain"}, "layer_attended"),
    "lacnn_static_vector": ("lacnn_static_vector_tiny", {"backbone": "plain"}, "layer_attended"),
    "lacnn_self_attention": ("lacnn_self_attention_tiny", {"backbone": "plain"}, "layer_attended"),
    "lacnn_dynamic_recurrent": ("lacnn_dynamic_recurrent_tiny", {"backbone": "plain"}, "layer_attended"),
}


def parse_override(text):
    """`key=value`, the value read as a Python literal when it is one (`widths=(16,32)`, `mixing=beta`)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set takes key=value; received {text!r}.")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value

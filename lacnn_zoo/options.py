"""Plain tables of the zoo's named options, and `parse_override`: nothing here imports Keras or TensorFlow.

The command lines (`lacnn-zoo`, `python -m tuning`, `python -m export`) build their parsers from these tables,
so `lacnn-zoo --help` starts without loading TensorFlow.  The library modules that use a table re-export it
from here (`lacnn_zoo.data.AUGMENTS`, `lacnn_zoo.training.recipes.RECIPES`, ...), so both spellings name the
same object.

`BOUNDS` holds the range of every number an option takes: the parsers' types (`bounded`) and the library's
checks (`check_bounded`) read it, so an absurd count, size or thread number is refused before any work, with
the option's name and the accepted range, on the command line and in Python alike.
"""

import argparse
import ast
import math
import numbers
import os
from typing import Callable, NamedTuple, Union

from lacnn_zoo.errors import spell

__all__ = ["AUGMENTS", "BOUNDS", "DEFAULT_RECIPE", "DEPTH_MAX", "DISTRIBUTES", "IMAGE_SIDE_MAX", "INT32_MAX",
    "LOOP_MAX", "OPSETS", "OPTIMIZERS", "PRECISIONS", "RECIPES", "SCHEDULES", "SEED_MAX", "TAP_RULES",
    "THREADS_PER_CPU", "VARIANTS", "ArgumentParser", "Bound", "accepted", "bounded", "check_bounded",
    "check_fits_in_memory", "check_input_batch", "machine_memory", "milestone", "parse_override", "thread_limit",
    "within"]

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
    clipnorm=None, ema=False, ema_decay=0.99, augment="none", mixup=0.0, cutmix=0.0, random_erasing=0.0, dropout=None,
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
    """`key=value`, the value read as a Python literal when it is one (`widths=(16,32)`, `mixing=beta`).

    Args:
        text: one `--set` argument, `key=value`.

    Returns:
        `(key, value)`: the key stripped of surrounding spaces, and the value as the literal it spells or else
        the text after the first "=" as a str.

    Raises:
        argparse.ArgumentTypeError: `text` holds no "=".
    """
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set takes key=value; received {text!r}.")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


# ------------------------------------------------------------------------------------- the range of every number

INT32_MAX = 2**31 - 1  # TensorFlow counts epochs and steps, and sizes batch and class dimensions, in int32
SEED_MAX = 2**32 - 1  # what numpy.random.seed and scikit-learn's random_state accept
LOOP_MAX = 10_000  # benchmark rounds, steps and calls, search trials: beyond this a command runs for days
IMAGE_SIDE_MAX = 4096  # = lacnn_zoo.data.splits.MAX_IMAGE_SIDE: a larger image batch no longer fits in memory
DEPTH_MAX = 1202  # the depth study's deepest network: He et al.'s ResNet-1202, the deepest of the papers
THREADS_PER_CPU = 4  # runtime threads beyond 4 per CPU only queue for the same cores
OPSETS = (13, 18)  # = export.core.MIN_OPSET, MAX_OPSET: the ONNX opsets Keras' exporter writes


def thread_limit():
    """The most threads a runtime may be given on this machine.

    Returns:
        An int, `THREADS_PER_CPU` times the number of CPUs (1 where Python cannot count them).
    """
    return THREADS_PER_CPU * (os.cpu_count() or 1)


class Bound(NamedTuple):
    """The numbers an option takes: integers (or finite reals) from `low` to `high` (None: no upper limit; a
    callable: this machine's), `open_low`/`open_high` leaving that end out; `why` explains an upper limit.

    Other Args:
        integer: True for integers, False for finite real numbers.
        low: the lowest value.
        high: the highest value; None for no upper limit, or a callable returning this machine's limit.
        why: the reason for the upper limit, shown in messages.
        open_low: leave `low` itself out.
        open_high: leave `high` itself out.
    """
    integer: bool
    low: float
    high: Union[float, Callable, None]
    why: str = ""
    open_low: bool = False
    open_high: bool = False


def _count(low, high, why=""):
    return Bound(True, low, high, why)


def _real(low, high=None, why="", *, open_low=False, open_high=False):
    return Bound(False, low, high, why, open_low, open_high)


BOUNDS = {
    # Counts the backends hold in int32.
    "epochs": _count(1, INT32_MAX, "TensorFlow counts epochs and steps in int32"),
    "batch_size": _count(1, INT32_MAX, "a batch dimension is an int32 in TensorFlow"),
    "num_classes": _count(1, INT32_MAX, "labels are int32"),
    "top_k": _count(1, INT32_MAX, "class indices are int32"),
    "examples": _count(1, INT32_MAX, "a count of images, an int32"),
    "size": _count(1, INT32_MAX, "a tensor dimension, an int32"),
    "seed": _count(0, SEED_MAX, "what NumPy and scikit-learn accept"),
    # Loops: each pass is a training step, a timed call or a trained model.
    "rounds": _count(1, LOOP_MAX, "more rounds measure nothing new and run for days"),
    "steps": _count(1, LOOP_MAX, "more steps per round measure nothing new and run for days"),
    "calls": _count(1, LOOP_MAX, "more calls per round measure nothing new and run for days"),
    "warmup": _count(0, LOOP_MAX, "a warm-up longer than this runs for days"),
    "trials": _count(1, LOOP_MAX, "every trial trains a model and Bayesian optimisation refits over all of them"),
    "executions_per_trial": _count(1, 1000, "repeats of one trial beyond this only cost time"),
    # Sizes.
    "image_side": _count(1, IMAGE_SIDE_MAX, "a larger image batch no longer fits in memory"),
    "depth": _count(8, DEPTH_MAX, "ResNet-1202, the deepest network of He et al. 2016"),
    "threads": _count(1, thread_limit, f"{THREADS_PER_CPU} per CPU of this machine"),
    "opset": _count(*OPSETS, "the ONNX opsets Keras' exporter writes"),
    # Real numbers (finite, never NaN).
    "accuracy": _real(0, 1, "an accuracy"),
    "accuracy_drop": _real(0, 100, "percentage points of top-1"),
    "tolerance": _real(0, 1, "a tolerance of 1 or more accepts any output", open_high=True),
    "learning_rate": _real(0, open_low=True),
    "momentum": _real(0, 1, open_high=True),
    "ema_decay": _real(0, 1, open_low=True, open_high=True),  # Keras' ema_momentum
    "weight_decay": _real(0),
    "decay_factor": _real(0, open_low=True),
    "warmup_epochs": _real(0, INT32_MAX, "TensorFlow counts epochs in int32"),
    "label_smoothing": _real(0, 1, open_high=True),
    "clipnorm": _real(0, open_low=True),
    "alpha": _real(0),  # MixUp's and CutMix's Beta(alpha, alpha); 0 is off
    "probability": _real(0, 1),
    "fraction": _real(0, 1, open_high=True),
}


def _high(bound):
    return bound.high() if callable(bound.high) else bound.high


def _number(x):
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def accepted(key):
    """The range of option `key` in words, e.g. "an integer from 1 to 10000 (...)".

    Args:
        key: a key of `BOUNDS`.

    Returns:
        The range as a str, with the reason for its upper limit where there is one.
    """
    bound, high = BOUNDS[key], _high(BOUNDS[key])
    why = f" ({bound.why})" if bound.why and high is not None else ""
    if bound.integer:
        return f"an integer from {bound.low} to {high}{why}"
    if high is None:
        return f"a finite number {'>' if bound.open_low else '>='} {_number(bound.low)}"
    left, right = "(" if bound.open_low else "[", ")" if bound.open_high else "]"
    return f"a number in {left}{_number(bound.low)}, {_number(high)}{right}{why}"


def within(key, value):
    """Whether `value` (a number, not a bool) is in option `key`'s range.

    Args:
        key: a key of `BOUNDS`.
        value: the value to test, of any type.

    Returns:
        True when `value` is an integer (for an integer option) or a finite real number in the range; False for
        anything else, a bool included.
    """
    bound, high = BOUNDS[key], _high(BOUNDS[key])
    kind = numbers.Integral if bound.integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        return False
    if not bound.integer:
        try:
            if not math.isfinite(value):
                return False
        except OverflowError:  # an int beyond any float
            return False
    above = value > bound.low if bound.open_low else value >= bound.low
    below = high is None or (value < high if bound.open_high else value <= high)
    return above and below


def check_bounded(key, value, name=None, flag=None):
    """`value` as an int or float when it is in option `key`'s range; otherwise a ValueError naming the argument
    (`name`, default `key`; the command-line `flag` inside a command) and the accepted range.

    Args:
        key: a key of `BOUNDS`.
        value: the value to check.
        name: the argument's name in the message; None for `key`.
        flag: the command-line option named instead when called inside a command; None for none.

    Returns:
        `value` as an int for an integer option, a float otherwise.

    Raises:
        ValueError: `value` is not in the range.
    """
    if not within(key, value):
        shown = f"`{name or key}`"
        if flag is not None:
            shown = spell(shown, flag)
        raise ValueError(f"{shown} must be {accepted(key)}; received {value!r}.")
    return int(value) if BOUNDS[key].integer else float(value)


def bounded(key):
    """An argparse `type` for one number of option `key`: a value out of range is a usage error that names the
    flag (argparse adds it) and the accepted range.

    Args:
        key: a key of `BOUNDS`.

    Returns:
        A function of one str, named `key`, returning the number (an int for an integer option, else a float) and
        raising `argparse.ArgumentTypeError` for a value that is not a number in the range.
    """
    def parse(text):
        try:
            value = int(text) if BOUNDS[key].integer else float(text)
        except ValueError:
            value = None
        if value is None or not within(key, value):
            raise argparse.ArgumentTypeError(f"takes {accepted(key)}; received {text!r}.")
        return value

    parse.__name__ = key
    return parse


def milestone(text):
    """An argparse `type` for one `--milestones` value: a fraction of training or an epoch number.

    Args:
        text: the value as typed.

    Returns:
        The value as a float, in (0, 1) or a whole number from 1 to `INT32_MAX - 1`.

    Raises:
        argparse.ArgumentTypeError: `text` is neither.
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value < 1 or (value.is_integer() and 1 <= value < INT32_MAX)):
        raise argparse.ArgumentTypeError(f"takes fractions of training in (0, 1) or epoch numbers from 1 to "
                                         f"{INT32_MAX - 1}; received {text!r}.")
    return value


def machine_memory():
    """Bytes of physical memory of this machine, or None where the system does not say.

    Returns:
        An int, or None.
    """
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _bytes(n):
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def check_fits_in_memory(nbytes, what):
    """Refuse `what` (a phrase naming the options it comes from) when its `nbytes` exceed this machine's memory.

    Args:
        nbytes: the size of what would be allocated, in bytes.
        what: the message's subject, a phrase naming the options the size comes from.

    Raises:
        ValueError: `nbytes` exceeds `machine_memory()` (never where the memory is unknown).
    """
    memory = machine_memory()
    if memory is not None and nbytes > memory:
        raise ValueError(f"{what} takes {_bytes(nbytes)}, more than this machine's {_bytes(memory)} of memory; "
                         "ask for less.")


def check_input_batch(batch_size, input_shape, *, batch="`batch_size`", shape="`input_shape`"):
    """Refuse a float32 input batch of `batch_size` images of `input_shape` that exceeds this machine's memory;
    `batch` and `shape` name the two options.

    Args:
        batch_size: the number of images in the batch.
        input_shape: the shape of one image, e.g. `(32, 32, 3)` (every dimension known).
        batch: how the message names the batch-size option.
        shape: how the message names the input-shape option.

    Returns:
        The batch's size in bytes, an int.

    Raises:
        ValueError: the batch exceeds this machine's memory.
    """
    nbytes = 4 * math.prod([int(batch_size), *(int(s) for s in input_shape)])
    shown = " ".join(str(s) for s in input_shape)
    check_fits_in_memory(nbytes, f"One float32 input batch of {batch} {batch_size} x {shape} {shown}")
    return nbytes


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line, `prog: error: message`, with exit status 2.

    Other Args:
        prog: the program's name; None for the name it was run as.
        usage: the usage line; None to build it from the arguments.
        description: text shown before the arguments in `--help`.
        epilog: text shown after the arguments in `--help`.
        parents: parsers whose arguments are added to this one.
        formatter_class: the class that formats the help.
        prefix_chars: the characters that start an option.
        fromfile_prefix_chars: the characters that start a file of further arguments; None for none.
        argument_default: the default of every argument; None for argparse's.
        conflict_handler: what to do with conflicting options, "error" or "resolve".
        add_help: add `-h`/`--help`.
        allow_abbrev: accept unambiguous prefixes of long options.
        exit_on_error: exit on a usage error (the one-line message above) rather than raise `ArgumentError`.
    """

    def add_version(self, version):
        """`--version`, printing `lacnn-zoo VERSION` (the caller passes `lacnn_zoo.__version__`, its one place)."""
        self.add_argument("--version", action="version", version=f"lacnn-zoo {version}")
        return self

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")

"""Argument checks shared by layers and builders: every error names the argument and what is accepted."""

import math
import numbers

__all__ = ["check_choice", "check_classifier_activation", "check_finite", "check_input_shape", "check_positive_int",
    "check_positive_int_sequence", "check_unit_interval"]


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; received {name}={value!r}.")
    return int(value)


def check_finite(name, value, *, minimum=None, inclusive=True):
    """A finite real number (not NaN or infinite), at least `minimum` (or above it, with inclusive=False)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value >= minimum if inclusive else value > minimum
    if not ok:
        bound = "" if minimum is None else (f" >= {minimum}" if inclusive else f" > {minimum}")
        raise ValueError(f"`{name}` must be a finite number{bound}; received {name}={value!r}.")
    return float(value)


def check_choice(name, value, choices):
    if value not in choices:
        accepted = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {accepted}; received {name}={value!r}.")
    return value


def check_unit_interval(name, value, *, open_right=False):
    """A real number in [0, 1] (or [0, 1) with open_right)."""
    upper_ok = (lambda v: v < 1) if open_right else (lambda v: v <= 1)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 <= value and upper_ok(value)):
        interval = "[0, 1)" if open_right else "[0, 1]"
        raise ValueError(f"`{name}` must be a number in {interval}; received {name}={value!r}.")
    return float(value)


def check_positive_int_sequence(name, value):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"`{name}` must be a non-empty sequence of positive integers; received {name}={value!r}.")
    value = tuple(value)
    if not value:
        raise ValueError(f"`{name}` must be a non-empty sequence of positive integers; received {name}={value!r}.")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(
                f"`{name}` must be a non-empty sequence of positive integers; received {name}={value!r}."
            )
    return tuple(int(v) for v in value)


def check_input_shape(input_shape, *, min_size=1, allow_dynamic=True):
    """Validate `(height, width, channels)`; height/width may be None when the model allows it."""
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__") or len(input_shape) != 3:
        raise ValueError(
            "`input_shape` must be (height, width, channels), e.g. (32, 32, 3); "
            f"received input_shape={input_shape!r}."
        )
    height, width, channels = input_shape
    check_positive_int("input_shape[2] (channels)", channels)
    for axis, size in (("height", height), ("width", width)):
        if size is None:
            if not allow_dynamic:
                raise ValueError(
                    f"This model needs a fixed input {axis}; received input_shape={tuple(input_shape)!r}."
                )
            continue
        check_positive_int(f"input_shape ({axis})", size)
        if size < min_size:
            raise ValueError(
                f"`input_shape` {axis} must be at least {min_size} for this network's downsampling; "
                f"received input_shape={tuple(input_shape)!r}."
            )
    return tuple(input_shape)


def check_classifier_activation(classifier_activation):
    """None (logits) or anything `keras.activations.get` accepts."""
    if classifier_activation is None:
        return None
    import keras

    try:
        keras.activations.get(classifier_activation)
    except ValueError as e:
        raise ValueError(
            "`classifier_activation` must be None or a Keras activation name such as 'softmax'; "
            f"received classifier_activation={classifier_activation!r}."
        ) from e
    return classifier_activation

"""Argument checks shared by layers and builders: every error names the argument and what is accepted."""

import math
import numbers

__all__ = ["check_choice", "check_classifier_activation", "check_finite", "check_input_shape", "check_positive_int",
    "check_positive_int_sequence", "check_unit_interval"]


def check_positive_int(name, value):
    """A positive integer (not a bool).

    Args:
        name: the argument's name in the message.
        value: the value to check.

    Returns:
        `value` as an int.

    Raises:
        ValueError: `value` is not an integer of at least 1.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; received {name}={value!r}.")
    return int(value)


def check_finite(name, value, *, minimum=None, inclusive=True):
    """A finite real number (not NaN or infinite), at least `minimum` (or above it, with inclusive=False).

    Args:
        name: the argument's name in the message.
        value: the value to check; a bool is refused.
        minimum: the lowest value accepted; None for no lower limit.
        inclusive: whether `minimum` itself is accepted.

    Returns:
        `value` as a float.

    Raises:
        ValueError: `value` is not a finite real number in the range.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value >= minimum if inclusive else value > minimum
    if not ok:
        bound = "" if minimum is None else (f" >= {minimum}" if inclusive else f" > {minimum}")
        raise ValueError(f"`{name}` must be a finite number{bound}; received {name}={value!r}.")
    return float(value)


def check_choice(name, value, choices):
    """One of the accepted values.

    Args:
        name: the argument's name in the message.
        value: the value to check.
        choices: the accepted values (a sequence, listed in the message).

    Returns:
        `value`, unchanged.

    Raises:
        ValueError: `value` is not in `choices`.
    """
    if value not in choices:
        accepted = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {accepted}; received {name}={value!r}.")
    return value


def check_unit_interval(name, value, *, open_right=False):
    """A real number in [0, 1] (or [0, 1) with open_right).

    Args:
        name: the argument's name in the message.
        value: the value to check; a bool is refused.
        open_right: whether 1 itself is refused.

    Returns:
        `value` as a float.

    Raises:
        ValueError: `value` is not a real number in the interval.
    """
    upper_ok = (lambda v: v < 1) if open_right else (lambda v: v <= 1)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 <= value and upper_ok(value)):
        interval = "[0, 1)" if open_right else "[0, 1]"
        raise ValueError(f"`{name}` must be a number in {interval}; received {name}={value!r}.")
    return float(value)


def check_positive_int_sequence(name, value):
    """A non-empty sequence of positive integers (not bools).

    Args:
        name: the argument's name in the message.
        value: the value to check, any iterable but a str or bytes.

    Returns:
        The integers as a tuple of ints.

    Raises:
        ValueError: `value` is not iterable, is a str or bytes, is empty, or holds anything but integers >= 1.
    """
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
    """Validate `(height, width, channels)`; height/width may be None when the model allows it.

    Args:
        input_shape: the shape of one image, three items.
        min_size: the smallest height and width accepted (the network's downsampling).
        allow_dynamic: whether the height and width may be None.

    Returns:
        `input_shape` as a tuple.

    Raises:
        ValueError: `input_shape` is not three items, `channels` is not a positive integer, or the height or
            width is None where that is not allowed, not a positive integer, or below `min_size`.
    """
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
    """None (logits) or anything `keras.activations.get` accepts.

    Args:
        classifier_activation: the activation of a classifier's output layer.

    Returns:
        `classifier_activation`, unchanged.

    Raises:
        ValueError: `keras.activations.get` does not accept it.
    """
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

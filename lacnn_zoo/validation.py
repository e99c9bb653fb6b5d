"""Argument checks shared by layers and builders: every error names the argument and what is accepted."""

import numbers


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; received {name}={value!r}.")
    return int(value)


def check_non_negative_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer; received {name}={value!r}.")
    return int(value)


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

"""Argument checks that raise errors naming the argument and its allowed values."""

import math
import numbers


def check_number(name, value, *, low=None, high=None, low_open=False, high_open=False, integer=False):
    """Raises a ValueError naming `name` unless `value` lies in the given range.

    Args:
        name: the argument's name, used in the message.
        value: the value to check.
        low, high: bounds, `None` for unbounded.
        low_open, high_open: whether the bound itself is excluded.
        integer: whether the value must be a whole number.

    Returns:
        The value as a Python float, or int when `integer=True`.
    """
    allowed = "{}{}, {}{}".format(
        "(" if low_open else "[",
        "-inf" if low is None else low,
        "inf" if high is None else high,
        ")" if high_open else "]",
    )
    message = (
        f"`{name}` must be {'an integer' if integer else 'a number'} in {allowed}. "
        f"Received: {name}={value!r}"
    )
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(message)
    if integer and float(value) != int(value):
        raise ValueError(message)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ValueError(message)
    return int(value) if integer else float(value)


def check_choice(name, value, choices):
    """Raises a ValueError naming `name` unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}. Received: {name}={value!r}")
    return value


def check_rank_2_shape(layer_name, shape, argument="embeddings"):
    """Raises unless `shape` is `(batch, dim)` with a known dim; returns dim."""
    shape = tuple(shape)
    if len(shape) != 2 or shape[-1] is None:
        raise ValueError(
            f"{layer_name} expects `{argument}` of shape (batch, dim) with a known dim. "
            f"Received: {argument}.shape={shape}"
        )
    return shape[-1]

"""The documentation's table of rejected arguments and inputs (docs/guides/errors.md), executed row by row."""

import pathlib
import re

import numpy as np
import pytest

from keras_margin import callbacks, data, evaluation, layers, losses, metrics

ERRORS_PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "guides" / "errors.md"
ROW = re.compile(r"^\| `(?P<call>.+)` \| (?P<error>\w+) \| (?P<message>.+) \|$")


def error_rows():
    lines = ERRORS_PAGE.read_text().splitlines()
    return [ROW.match(line).groupdict() for line in lines if ROW.match(line)]


def test_the_table_is_there():
    assert len(error_rows()) >= 50


@pytest.mark.parametrize("row", error_rows(), ids=lambda row: row["call"][:60])
def test_documented_error(row):
    namespace = {"np": np, "layers": layers, "losses": losses, "data": data, "metrics": metrics,
                 "evaluation": evaluation, "callbacks": callbacks}
    with pytest.raises(Exception) as info:
        eval(row["call"], namespace)  # noqa: S307 - our own documentation's rows
    assert type(info.value).__name__ == row["error"]
    message = re.sub(r"\x1b\[[0-9;]*m", "", str(info.value))  # Keras wraps call() errors in bold
    assert row["message"] in message

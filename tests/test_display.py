"""judgelab.display: tables with fixed decimals, every row, and a CSV of the full table."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest

from judgelab.display import table_html


def cells(html: str) -> list[str]:
    return [c.strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", html, re.S)]


def test_fixed_decimals_and_no_scientific_notation():
    df = pd.DataFrame({"p_yes": [0.9339, 0.5], "delta": [-3.485e-04, 0.01234], "words": [361.98, 12.0],
                       "n": [3, 4], "judge": ["a", "b"]})
    html = table_html(df, columns={"words": 1})
    got = cells(html)
    assert got[:5] == ["0.934", "0.000", "362.0", "3", "a"]  # -0.000 prints as 0.000
    assert "e-0" not in html and "361.980000" not in html


def test_p_values_below_the_last_decimal_say_so():
    df = pd.DataFrame({"tau": [0.2], "p_value": [3e-12]})
    assert cells(table_html(df)) == ["0.200", "< 0.001"]


def test_every_row_is_on_the_page_and_the_csv_is_the_full_table():
    df = pd.DataFrame({"x": np.linspace(0, 1, 64) / 7, "i": range(64)})
    html = table_html(df, name="long")
    assert len(cells(html)) == 2 * 64  # no "..." rows
    assert "judgelab-table-scroll" in html
    payload = re.search(r'download="long.csv" href="data:text/csv;base64,([^"]+)"', html).group(1)
    back = pd.read_csv(io.BytesIO(base64.b64decode(payload)))
    pd.testing.assert_frame_equal(back, df)  # full precision, not the rounded display


def test_bad_input_is_named():
    with pytest.raises(KeyError, match="nope"):
        table_html(pd.DataFrame({"a": [1.0]}), columns={"nope": 2})
    with pytest.raises(ValueError, match="file name"):
        table_html(pd.DataFrame({"a": [1.0]}), name="../x")
    with pytest.raises(TypeError, match="DataFrame"):
        table_html([1, 2])


def test_named_row_labels_are_shown_row_numbers_are_not():
    crosstab = pd.DataFrame({"2": [1, 2]}, index=pd.Index(["gpt35", "llama"], name="evaluator"))
    assert "gpt35" in table_html(crosstab)
    filtered = pd.DataFrame({"x": [0.5, 0.25]}, index=[7, 9])
    assert ">7<" not in table_html(filtered).replace(" ", "")

"""Tables and figures as a reader meets them on the book's pages.

pandas' notebook display prints floats with its global precision, switches to scientific notation when a
column mixes magnitudes ("9.339e-01", "-3.485e-04" for probabilities), and cuts long tables to "64 rows x
10 columns" with the middle rows hidden -- rows the prose may be quoting. :func:`show_table` instead gives
every float column a fixed number of decimals (never scientific notation: p-values below the last decimal
print as "< 0.001"), shows every row in a box that scrolls once a table is long, and adds a CSV download
of the full-precision table (a ``data:`` link, so it works offline, on Colab and in the built book alike).

:func:`figure` numbers a figure: it glues the matplotlib figure for a ``{glue:figure}`` directive in the
next Markdown cell, which gives it a number and a caption, and closes it so it is not shown twice.
Statistics are never computed here: like :mod:`judgelab.plots`, this module only presents tables.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

#: columns whose values are p-values: fixed decimals would print them as 0.000
P_VALUE = re.compile(r"(^|_)p(_value|value)?($|_)")
#: a table longer than this scrolls (all rows stay on the page)
SCROLL_ROWS = 15


def _float_format(decimals: int, p_value: bool):
    floor = 10.0 ** -decimals

    def fmt(x) -> str:
        if x is None or (isinstance(x, float) and np.isnan(x)):
            return ""
        if p_value and 0 <= x < floor:
            return f"< {floor:.{decimals}f}"
        out = f"{x:.{decimals}f}"
        return out[1:] if out.startswith("-") and float(out) == 0 else out  # "-0.000" is 0.000

    return fmt


def table_html(df: pd.DataFrame, decimals: int = 3, *, columns: Mapping[str, int] | None = None,
               name: str = "table", scroll_rows: int = SCROLL_ROWS, index: bool | None = None) -> str:
    """HTML of ``df`` for a page: fixed decimals per float column, every row, a CSV link.

    ``decimals`` for every float column, ``columns`` (column -> decimals) for exceptions. Integer and text
    columns print as they are. ``name`` names the CSV download. ``index``: show the row labels; by default
    only when they are named (a crosstab's, a groupby's), not the row numbers left over from a filter.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"show_table needs a DataFrame, got {type(df).__name__}")
    if not re.fullmatch(r"[\w.-]+", name):
        raise ValueError(f"table name {name!r} must be a plain file name (letters, digits, ._-)")
    per_column = dict(columns or {})
    unknown = set(per_column) - set(map(str, df.columns))
    if unknown:
        raise KeyError(f"decimals given for columns the table does not have: {sorted(unknown)}")
    default = int(decimals)
    if index is None:
        index = any(n is not None for n in df.index.names)
    formats = {}
    for col in df.columns:
        if pd.api.types.is_float_dtype(df[col]):
            formats[col] = _float_format(per_column.get(str(col), default), bool(P_VALUE.search(str(col))))
    styler = df.style.format(formats, na_rep="").set_table_attributes('class="dataframe judgelab"')
    if not index:
        styler = styler.hide(axis="index")
    table = styler.to_html()
    csv = df.to_csv(index=index).encode()
    link = (f'<a download="{html.escape(name)}.csv" href="data:text/csv;base64,{base64.b64encode(csv).decode()}">'
            f"download the full table (CSV, {len(df)} rows, full precision)</a>")
    box = f'<div class="judgelab-table-scroll">{table}</div>' if len(df) > scroll_rows else f"<div>{table}</div>"
    return f'<div class="judgelab-table">{box}<p class="judgelab-table-note">{len(df)} rows; {link}</p></div>'


def show_table(df: pd.DataFrame, decimals: int = 3, *, columns: Mapping[str, int] | None = None,
               name: str = "table", scroll_rows: int = SCROLL_ROWS, index: bool | None = None) -> None:
    """Display ``df`` in the notebook as :func:`table_html` renders it."""
    from IPython.display import HTML, display

    display(HTML(table_html(df, decimals, columns=columns, name=name, scroll_rows=scroll_rows, index=index)))


def figure(name: str, fig) -> None:
    """Glue ``fig`` under ``name`` for a ``{glue:figure}`` directive (number + caption) and close it.

    Without myst-nb (Colab, plain Jupyter) the figure is displayed in place instead.
    """
    import matplotlib.pyplot as plt

    try:
        from myst_nb import glue
    except ImportError:  # Colab, plain Jupyter: no book to number it in, so show it where it is
        from IPython.display import display

        display(fig)
    else:
        glue(name, fig, display=False)
    plt.close(fig)

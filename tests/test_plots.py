"""judgelab.plots: R/S bars drawn from chance on an axis centred on it, legends that cover no data."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from judgelab import plots  # noqa: E402


def table():
    return pd.DataFrame({
        "other": ["human", "human", "gpt4", "gpt4"], "evaluator": ["llama", "gpt35", "llama", "gpt35"],
        "recognition": [0.51, 0.49, 0.505, 0.52], "recognition_low": [0.50, 0.48, 0.50, 0.51],
        "recognition_high": [0.52, 0.50, 0.51, 0.53]})


def test_around_chance_is_symmetric_and_holds_every_interval():
    lo, hi = plots.around_chance([0.48, 0.50], [0.53, 0.51])
    assert lo < 0.48 and hi > 0.53 and pytest.approx(0.5 - lo) == hi - 0.5
    assert plots.around_chance([0.5], [0.5]) == pytest.approx((0.5 - 0.02 * 1.12, 0.5 + 0.02 * 1.12))


def test_bars_start_at_chance_and_the_axis_shows_a_small_effect():
    fig = plots.bars_with_ci(table(), "recognition")
    ax = fig.axes[0]
    bars = [p for p in ax.patches]
    assert len(bars) == 4
    assert all(b.get_y() == pytest.approx(0.5) for b in bars)  # bars grow up or down from chance
    heights = sorted(round(b.get_height(), 3) for b in bars)
    assert heights == [-0.01, 0.005, 0.01, 0.02]
    lo, hi = ax.get_ylim()
    assert hi - lo < 0.1  # a 0.02 effect is a fifth of the axis, not a fiftieth of 0..1
    plt.close(fig)


def test_legend_sits_outside_the_axes():
    fig = plots.bars_with_ci(table(), "recognition")
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # to the right of the plotting area: covers no bar
    plt.close(fig)


def test_plots_import_no_experiment():
    """Layering: figures take tables; importing the plotting module loads no experiment (and no torch)."""
    import subprocess
    import sys

    code = ("import sys, judgelab.plots; "
            "print([m for m in sys.modules if m.startswith('judgelab.experiments') or m == 'torch'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_score_histograms_show_shares_per_panel_and_name_missing_judges():
    hist = pd.DataFrame({
        "judge": ["gold", "gold", "a", "a", "a", "b"], "form": [None, None, "chat", "chat", "chat", "chat"],
        "subset": ["en-de"] * 6, "kind": [None, None, "main", "main", "main", "main"],
        "what": ["gold", "gold", "mean10", "mean10", "mean10", "mean10"],
        "score": [40.0, 80.0, 8.0, 8.2, 3.0, 5.0], "score_0_10": [4.0, 8.0, None, None, None, None],
        "count": [1.0, 3.0, 6.0, 2.0, 2.0, 0.0]})
    fig = plots.score_histograms(hist, "en-de", [("a", "chat"), ("b", "chat")])
    gold_ax, a_ax, b_ax = fig.axes
    assert sorted(round(p.get_height(), 3) for p in gold_ax.patches if p.get_height() > 0) == [0.25, 0.75]
    # 8.0 and 8.2 fall in the bin around 8 (width 0.5): 8 of the 10 items, the tallest bin
    assert max(p.get_height() for p in a_ax.patches) == pytest.approx(0.8)
    assert "10 items, top bin 80%" in a_ax.get_title()
    assert "not scored" in b_ax.get_title() and not b_ax.patches
    plt.close(fig)

"""Figures for the book, in one consistent style.

Call :func:`set_book_style` once at the top of a notebook; every plotting function here returns the
matplotlib ``Figure`` so a notebook can show it inline or save it. Functions take tidy tables (one row
per bar / point) and never compute statistics themselves: the numbers come from the experiment
modules, so a figure can never disagree with the table printed beside it. This module imports no
experiment (variant names come from :mod:`judgelab.variants`), so drawing a figure loads no model code.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from judgelab.variants import variant_kind, variant_label

#: One colour per summary source / evaluator, reused by every chapter.
SOURCE_COLORS = {
    "human": "#4C72B0", "claude": "#DD8452", "gpt35": "#55A868", "gpt4": "#C44E52", "llama": "#8172B3",
    # open judges (chapter 3 on)
    "smollm2-135m-instruct": "#937860", "qwen2.5-coder-0.5b-instruct": "#DA8BC3",
    "qwen2.5-coder-1.5b-instruct": "#8C8C8C", "gemma-3-270m": "#CCB974",
    "all": "#4d4d4d",
}
#: Display names for labels.
LABELS = {"human": "Human", "claude": "Claude 2", "gpt35": "GPT-3.5", "gpt4": "GPT-4", "llama": "Llama 2",
          "all": "All", "xsum": "XSUM", "cnn": "CNN/DailyMail", "recognition": "Self-recognition",
          "preference": "Self-preference", "smollm2-135m-instruct": "SmolLM2-135M",
          "qwen2.5-coder-0.5b-instruct": "Qwen2.5-Coder-0.5B", "qwen2.5-coder-1.5b-instruct": "Qwen2.5-Coder-1.5B",
          "gemma-3-270m": "Gemma-3-270M"}


def label(name: str) -> str:
    """Human-readable name of a source, dataset or quantity."""
    return LABELS.get(name, name)


def set_book_style() -> None:
    """Clean, consistent style for all figures of the book (white grid, readable fonts, no top/right spines)."""
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)
    plt.rcParams.update({
        "figure.figsize": (7.5, 3.6), "figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight",
        "axes.spines.top": False, "axes.spines.right": False, "axes.titleweight": "bold",
        "axes.titlesize": 11, "legend.frameon": False,
    })


def _errorbar(ax, x, table: pd.DataFrame, value: str, color="black"):
    lo, hi = table[f"{value}_low"].to_numpy(), table[f"{value}_high"].to_numpy()
    v = table[value].to_numpy()
    ax.errorbar(x, v, yerr=np.vstack([v - lo, hi - v]), fmt="none", ecolor=color, capsize=3, lw=1)


def around_chance(lows, highs, chance: float = 0.5, min_half_span: float = 0.02, pad: float = 0.12):
    """y-limits centred on ``chance`` that hold every interval: an effect of 0.01 stays visible, and the
    axis is symmetric, so above and below chance look alike. ``min_half_span`` keeps a flat result from
    being blown up into noise."""
    values = np.concatenate([np.asarray(lows, float), np.asarray(highs, float)])
    values = values[np.isfinite(values)]
    half = max(min_half_span, float(np.max(np.abs(values - chance))) if len(values) else 0.0)
    half *= 1 + pad
    return chance - half, chance + half


def bars_with_ci(
    table: pd.DataFrame,
    value: str,
    x: str = "other",
    hue: str = "evaluator",
    ax=None,
    chance: float | None = 0.5,
    title: str | None = None,
    ylim=None,
    legend: str = "right",
):
    """Grouped bar chart of ``value`` per ``x`` and ``hue`` with CI error bars from ``{value}_low/_high``.

    The paper's style for R and S: one group per comparison source, one bar per evaluator. With a
    ``chance`` level the bars start at chance (up: above chance, down: below) and the axis is centred on it
    (:func:`around_chance`), so effects of a few hundredths are visible; ``ylim`` overrides the axis.
    ``legend``: ``"right"`` (outside the axes, never over a bar), ``"below"``, or ``"none"``.
    """
    ax = ax or plt.subplots()[1]
    order = list(SOURCE_COLORS)
    xs = sorted(pd.unique(table[x]), key=lambda v: order.index(v) if v in order else len(order))
    hues = list(pd.unique(table[hue]))
    width = 0.8 / len(hues)
    base = 0.0 if chance is None else chance
    for i, h in enumerate(hues):
        sub = table[table[hue] == h].set_index(x).reindex(xs)
        pos = np.arange(len(xs)) + (i - (len(hues) - 1) / 2) * width
        ok = sub[value].notna().to_numpy()
        ax.bar(pos[ok], sub[value].to_numpy()[ok] - base, width * 0.95, bottom=base, color=SOURCE_COLORS.get(h),
               label=label(h))
        _errorbar(ax, pos[ok], sub[ok], value)
    if chance is not None:
        ax.axhline(chance, ls="--", lw=1, color="grey", label=f"chance ({chance:g})")
    ax.set_xticks(np.arange(len(xs)), [label(v) for v in xs])
    if len(xs) > 6:  # long author or variant lists: slanted labels that do not run into each other
        plt.setp(ax.get_xticklabels(), rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_ylabel(label(value))
    ax.set_xlabel("")
    if ylim:
        ax.set_ylim(*ylim)
    elif chance is not None:
        ax.set_ylim(*around_chance(table[f"{value}_low"], table[f"{value}_high"], chance))
    if title:
        ax.set_title(title)
    name = label(hue) if hue not in ("evaluator",) else "Evaluator"
    if legend == "right":
        ax.legend(title=name, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    elif legend == "below":
        ax.legend(title=name, loc="upper center", bbox_to_anchor=(0.5, -0.25), fontsize=8,
                  ncol=min(len(hues) + 1, 4))
    return ax.figure


def rs_bars(pairwise: pd.DataFrame, dataset: str):
    """Two panels (R, S) for one dataset: bars per other source, one bar per evaluator, 95 % CIs.

    Both panels share one y-axis centred on chance, so R and S are read on the same scale; one legend, to
    the right of both.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    sub = pairwise[pairwise["dataset"] == dataset]
    lim = around_chance(pd.concat([sub["recognition_low"], sub["preference_low"]]),
                        pd.concat([sub["recognition_high"], sub["preference_high"]]))
    for ax, value in zip(axes, ("recognition", "preference")):
        bars_with_ci(sub, value, ax=ax, title=f"{label(value)} ({label(dataset)})", ylim=lim,
                     legend="right" if value == "preference" else "none")
    fig.tight_layout()
    return fig


def scatter_with_fit(
    data: pd.DataFrame,
    x: str,
    y: str,
    hue: str | None = None,
    style: str | None = None,
    fit: dict | None = None,
    ax=None,
    title: str | None = None,
    annotate: str | None = None,
    diagonal: bool = False,
    legend: str = "right",
):
    """Scatter of ``y`` against ``x`` with an optional fitted line (``fit``: ``slope``, ``intercept``,
    and optionally ``r``, ``r_low``, ``r_high`` for the legend). ``annotate`` names the column whose value
    labels each point; the legend sits outside the axes (``"right"`` or ``"below"``), never on a point."""
    ax = ax or plt.subplots(figsize=(8.5, 6.4) if annotate else (5.2, 4.4))[1]  # labels need room
    palette = {k: v for k, v in {**SOURCE_COLORS, **KIND_COLORS}.items() if hue and k in set(data[hue])} or None
    sns.scatterplot(data=data, x=x, y=y, hue=hue, style=style, ax=ax, palette=palette, s=45, alpha=0.85)
    lo, hi = np.nanmin(data[[x, y]].to_numpy()), np.nanmax(data[[x, y]].to_numpy())
    grid = np.linspace(lo - 0.02, hi + 0.02, 50)
    if fit is not None:
        lab = "OLS fit"
        if "r" in fit:
            lab += f": r = {fit['r']:.2f} [{fit['r_low']:.2f}, {fit['r_high']:.2f}]"
        ax.plot(grid, fit["intercept"] + fit["slope"] * grid, color="black", lw=1.2, label=lab)
    if diagonal:
        ax.plot(grid, grid, ls=":", color="grey", lw=1)
    if annotate:
        # adjustText moves the labels apart (with a thin line back to their point), so that points in a
        # cluster stay identifiable instead of printing their names on top of each other
        from adjustText import adjust_text

        texts = [ax.text(row[x], row[y], str(row[annotate]), fontsize=6, alpha=0.85)
                 for _, row in data.iterrows() if pd.notna(row[x]) and pd.notna(row[y])]
        adjust_text(texts, ax=ax, arrowprops=dict(arrowstyle="-", lw=0.4, color="grey"))
    ax.set_xlabel(label(x))
    ax.set_ylabel(label(y))
    if title:
        ax.set_title(title)
    if legend == "below":
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    else:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax.figure


def stacked_shares(table: pd.DataFrame, columns, index: str, ax=None, title: str | None = None, colors=None):
    """Horizontal stacked bars of shares (rows of ``table`` sum to 1 over ``columns``)."""
    ax = ax or plt.subplots(figsize=(7.5, 0.35 * len(table) + 1.2))[1]
    left = np.zeros(len(table))
    colors = colors or sns.color_palette("Set2", len(columns))
    for col, c in zip(columns, colors):
        vals = table[col].to_numpy()
        ax.barh(table[index].astype(str), vals, left=left, color=c, label=col)
        left += vals
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.legend(ncol=len(columns), fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    if title:
        ax.set_title(title, pad=24)
    return ax.figure


#: Colours of the fine-tuning chapter's variant kinds (base judge, recognition fine-tunes, controls).
KIND_COLORS = {"base": "#4d4d4d", "recognition": "#C44E52", "control": "#4C72B0"}


def loss_curves(log: pd.DataFrame, value: str = "loss", by: str = "trained_on"):
    """Training curves of every fine-tuned variant: ``value`` per optimiser step, one panel per ``by``.

    Recognition variants are drawn in one colour family and controls in another, so a reader sees at a
    glance whether the controls were trained as hard as the recognition variants.
    """
    panels = list(pd.unique(log[by]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), sharey=True, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        sub = log[log[by] == panel]
        variants = list(pd.unique(sub["variant"]))
        recognition = [variant_kind(v) == "recognition" for v in variants]
        reds = sns.color_palette("Reds_d", sum(recognition) or 1)
        blues = sns.color_palette("Blues_d", len(variants) - sum(recognition) or 1)
        for v, is_recognition in zip(variants, recognition):
            g = sub[sub["variant"] == v].sort_values("step")
            color = reds.pop(0) if is_recognition else blues.pop(0)
            name = variant_label(v)
            ax.plot(g["step"], g[value], marker="o", ms=3, lw=1.2, color=color, label=name)
        ax.set_title(f"Trained on {label(panel)}")
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(value.replace("_", " "))
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves, not on them
    fig.tight_layout()
    return fig


def variant_grid(variants: pd.DataFrame, rows: str = "trained_on", cols: str = "evaluated_on"):
    """R and S of every variant with 95 % intervals: one panel per (training set, evaluation set).

    The base judge (same in every row) is the grey band: a variant whose interval clears the band moved.
    """
    base = variants[variants["variant"] == "base"]
    ft = variants[variants["variant"] != "base"]
    rvals, cvals = list(pd.unique(ft[rows])), list(pd.unique(ft[cols]))
    fig, axes = plt.subplots(len(rvals), len(cvals), figsize=(5.6 * len(cvals), 3.3 * len(rvals)),
                             sharey=True, squeeze=False)
    for i, rv in enumerate(rvals):
        for j, cv in enumerate(cvals):
            ax = axes[i][j]
            sub = ft[(ft[rows] == rv) & (ft[cols] == cv)]
            xs = np.arange(len(sub))
            for k, (value, marker) in enumerate((("recognition", "o"), ("preference", "s"))):
                pos = xs + (k - 0.5) * 0.28
                color = SOURCE_COLORS["gpt4"] if value == "recognition" else SOURCE_COLORS["human"]
                ax.scatter(pos, sub[value], marker=marker, color=color, s=28, zorder=3, label=label(value))
                _errorbar(ax, pos, sub, value, color=color)
                b = base[base[cols] == cv][value]
                if len(b):
                    ax.axhline(float(b.iloc[0]), color=color, lw=4, alpha=0.18)
            ax.axhline(0.5, ls="--", lw=1, color="grey")
            ax.set_xticks(xs, [variant_label(v, sep="=") for v in sub["variant"]])
            plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
            ax.set_title(f"trained on {label(rv)}, evaluated on {label(cv)}", fontsize=10)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def score_histograms(hist: pd.DataFrame, subset: str, panels: list[tuple[str, str]], what: str = "mean10",
                     bin_width: float = 0.5, titles: dict[str, str] | None = None):
    """Where each judge puts its scores on one subset, beside the human scores: one panel per
    ``(judge, form)`` in ``panels``, and a first panel of gold.

    ``hist`` is the chapter's histogram table (one row per cell and score: ``what`` = ``mean10``, ``single``,
    ``mass`` or ``gold``; gold mapped onto the judges' 0-10 range in ``score_0_10``). Bars are shares of the
    panel's items in bins of ``bin_width`` on 0-10, so panels of different sizes compare; a panel title
    names its judge, form and items, and the tallest bin's share (the pile-up the paper measures). A
    ``(judge, form)`` without rows in ``hist`` gets an empty panel saying "not scored".
    """
    titles = titles or {}
    edges = np.arange(0, 10 + bin_width + 1e-9, bin_width) - bin_width / 2
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(2.1 * (len(panels) + 1), 2.6), sharex=True, sharey=True)
    gold = hist[(hist["what"] == "gold") & (hist["subset"] == subset)]
    rows = [("gold", "", gold["score_0_10"].to_numpy(float), gold["count"].to_numpy(float))]
    for judge, form in panels:
        h = hist[(hist["what"] == what) & (hist["subset"] == subset) & (hist["judge"] == judge)
                 & (hist["form"] == form) & (hist["kind"] == "main") & hist["score"].notna()]
        rows.append((judge, form, h["score"].to_numpy(float), h["count"].to_numpy(float)))
    for ax, (judge, form, scores, counts) in zip(np.atleast_1d(axes), rows):
        name = "Human (gold)" if judge == "gold" else titles.get(judge, label(judge)) + (f"\n{form}" if form else "")
        if counts.sum() == 0:
            ax.set_title(f"{name}\nnot scored", fontsize=9)
            continue
        share, _ = np.histogram(scores, bins=edges, weights=counts / counts.sum())
        ax.bar(edges[:-1] + bin_width / 2, share, width=bin_width * 0.9,
               color=SOURCE_COLORS.get(judge.split(":")[0], "#4d4d4d") if judge != "gold" else SOURCE_COLORS["human"])
        ax.set_title(f"{name}\n{int(counts.sum())} items, top bin {share.max():.0%}", fontsize=9)
        ax.set_xlim(-0.5, 10.5)
    np.atleast_1d(axes)[0].set_ylabel("share of items")
    fig.supxlabel("score (0-10)", fontsize=10)
    fig.tight_layout()
    return fig


def _message_axes(ax, message: str, width: int = 40) -> None:
    import textwrap

    ax.text(0.5, 0.5, textwrap.fill(message, width), ha="center", va="center", transform=ax.transAxes, fontsize=9,
            color="#4d4d4d")
    ax.set_xticks([])
    ax.set_yticks([])


def selective_curves(curves: pd.DataFrame, panels: list[tuple[str, list[str]]], names: dict[str, str] | None = None,
                     ylabel: str = "mean quality of the accepted answers", message: str = "not computed yet"):
    """Selective instruction following: the mean true quality of the accepted answers against the share
    accepted (coverage), one line per method, with the oracle (black, dashed) and random acceptance (grey,
    dotted) in every panel.

    ``curves`` is a long table with columns ``method``, ``coverage`` and ``mean_quality`` (one row per method
    and coverage, e.g. :func:`judgelab.experiments.self_judge.evaluation.selective_table`'s); ``panels`` lists
    ``(title, methods)``; ``names`` maps a method to its legend label. A panel none of whose methods has rows
    shows ``message`` instead of axes (a stage not run yet), so the figure can be glued in every state.
    """
    names = names or {}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), sharey=True, squeeze=False)
    have = set(curves["method"]) if "method" in curves.columns else set()
    every = list(dict.fromkeys(m for _, ms in panels for m in ms))
    colors = dict(zip(every, sns.color_palette("colorblind", len(every) or 1)))  # one colour per method, all panels
    for ax, (title, methods) in zip(axes[0], panels):
        ax.set_title(title, fontsize=10)
        if not any(m in have for m in methods):
            _message_axes(ax, message)
            continue
        for m in methods:
            color = colors[m]
            g = curves[curves["method"] == m].sort_values("coverage")
            if len(g):
                ax.plot(g["coverage"], g["mean_quality"], lw=1.4, color=color, label=names.get(m, m))
        for m, style, color in (("oracle", "--", "black"), ("random", ":", "grey")):
            g = curves[curves["method"] == m].sort_values("coverage")
            if len(g):
                ax.plot(g["coverage"], g["mean_quality"], ls=style, lw=1.2, color=color, label=names.get(m, m))
        ax.set_xlim(0, 1)
        ax.set_xlabel("coverage (share of answers accepted)")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)  # below: never on a curve
    axes[0][0].set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def pearson_intervals(paper: pd.DataFrame, message: str = "not evaluated yet"):
    """Pearson r x 100 per method: ours pooled over all answers with its 95 % interval (dots and bars), the
    paper's per-model average beside it (open diamonds; another test set), one panel per setting.

    ``paper`` has the columns of :func:`judgelab.experiments.self_judge.evaluation.paper_comparison`
    (``setting``, ``method``, ``paper_r100``, ``ours_pooled_r100``, ``ours_pooled_low``, ``ours_pooled_high``).
    Rows with neither number are left out; a setting with none of ours shows ``message``.
    """
    settings = ["with reference", "without reference"]
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.9), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        ax.set_title(setting.capitalize(), fontsize=10)
        cols = {"setting", "method", "paper_r100", "ours_pooled_r100", "ours_pooled_low", "ours_pooled_high"}
        t = paper[paper["setting"] == setting] if cols <= set(paper.columns) else None
        if t is not None:
            t = t[t["ours_pooled_r100"].notna() | t["paper_r100"].notna()].reset_index(drop=True)
        if t is None or t["ours_pooled_r100"].notna().sum() == 0:
            _message_axes(ax, message)
            continue
        y = np.arange(len(t))[::-1]
        ours = t["ours_pooled_r100"].to_numpy(float)
        lo, hi = t["ours_pooled_low"].to_numpy(float), t["ours_pooled_high"].to_numpy(float)
        ok = np.isfinite(ours)
        ax.errorbar(ours[ok], y[ok], xerr=np.vstack([ours[ok] - lo[ok], hi[ok] - ours[ok]]), fmt="o", ms=5,
                    color=SOURCE_COLORS["human"], ecolor=SOURCE_COLORS["human"], capsize=3, lw=1,
                    label="ours (pooled, 95 % interval)")
        pr = t["paper_r100"].to_numpy(float)
        pk = np.isfinite(pr)
        ax.scatter(pr[pk], y[pk], marker="D", s=34, facecolors="none", edgecolors=SOURCE_COLORS["gpt4"],
                   label="paper (average over models)", zorder=3)
        ax.axvline(0, color="grey", lw=1, ls="--")
        ax.set_yticks(y, t["method"])
        ax.set_xlabel("Pearson r x 100 with GPT-4's score")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)  # below: never on a point
    fig.tight_layout()
    return fig

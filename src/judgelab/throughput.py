"""The benchmark tables of ``results/benchmarks/`` in words, for the chapters that depend on them.

The sentences are generated from the tables (never typed), so a rerun of a benchmark changes the prose with
it. Each names the hardware and load the table recorded, because on a shared 2-core machine a figure without
its load average is not a measurement.
"""

from __future__ import annotations

import pandas as pd

from judgelab.profiles import describe_hardware

#: judging methods of ``benchmarks/judge_throughput.py``, in the order the prose reads them
JUDGE_METHODS = {
    "naive": "one plain forward pass per prompt",
    "prefix": "the earlier group-wise prefix sharing",
    "tree": "the prefix tree (every common prefix computed once, no padding rows)",
    "tree-dense": "the prefix tree with a dense mask over each packed row",
    "llamacpp": "llama.cpp in-process with its key/value-cache reuse",
}


def _load(table: pd.DataFrame) -> str:
    lo = min(table["load_before"].min(), table["load_after"].min())
    hi = max(table["load_before"].max(), table["load_after"].max())
    return f"load average {lo:.1f}" + (f"-{hi:.1f}" if f"{hi:.1f}" != f"{lo:.1f}" else "")


def judging_text(bench: pd.DataFrame) -> str:
    """What the judging benchmark shows: each method's prompts/s against the naive one, tokens computed."""
    rate = bench.set_index("method")["prompts_per_s"]
    if "naive" not in rate:
        raise ValueError(f"judging benchmark has no 'naive' row to compare with; methods: {list(rate.index)}")
    first = bench.iloc[0]
    parts = [f"{JUDGE_METHODS.get(m, m)} {rate[m]:.3f} prompts/s ({rate[m] / rate['naive']:.1f}x naive, "
             f"{int(r.computed_tokens):,} tokens computed)" for m, r in bench.set_index("method").iterrows()
             if m != "naive"]
    best = rate.drop("naive").idxmax() if len(rate) > 1 else "naive"
    return (f"On {describe_hardware(first['hardware'])} ({first['date']}; {_load(bench)}; "
            f"{int(first['prompts'])} pairwise prompts of {int(first['articles'])} articles judged by "
            f"{first['model']}), one plain forward pass per prompt read {rate['naive']:.3f} prompts/s "
            f"({int(bench.set_index('method').loc['naive', 'computed_tokens']):,} tokens); "
            + "; ".join(parts) + f". The fastest is {JUDGE_METHODS.get(best, best).split(' (')[0]}. "
            f"The fewest tokens any method must compute here is {int(first['min_tokens']):,}.")


def tree_text(bench: pd.DataFrame) -> str:
    """The larger same-run judging comparison (prefix, tree, tree-dense) in words: each method's prompts/s
    against the group method's, its tokens computed and its weight GFLOP/s."""
    rows = bench.set_index("method")
    if "prefix" not in rows.index:
        raise ValueError(f"judging benchmark has no 'prefix' row to compare with; methods: {list(rows.index)}")
    base = rows.loc["prefix", "prompts_per_s"]
    first = bench.iloc[0]
    parts = [f"{JUDGE_METHODS.get(m, m)} {r.prompts_per_s:.3f} prompts/s ({r.prompts_per_s / base:.2f}x the group "
             f"method; {int(r.computed_tokens):,} tokens at {r.gflop_per_s:.0f} weight GFLOP/s)"
             for m, r in rows.iterrows() if m != "prefix"]
    return (f"On {describe_hardware(first['hardware'])} ({first['date']}; {_load(bench)}; {int(first['prompts'])} "
            f"pairwise prompts of {int(first['articles'])} articles judged by {first['model']}), the group-wise "
            f"prefix sharing read {base:.3f} prompts/s ({int(rows.loc['prefix', 'computed_tokens']):,} tokens at "
            f"{rows.loc['prefix', 'gflop_per_s']:.0f} weight GFLOP/s); " + "; ".join(parts) + ".")


def generation_text(gen: pd.DataFrame) -> str:
    """Greedy tokens/s per runtime and model, and judgelab's llama.cpp runtime against raw llama-cpp-python."""
    lines = []
    for model, g in gen.groupby("model", sort=False):
        r = g.set_index("method")["tokens_per_s"]
        text = f"**{model}**: " + ", ".join(f"{m} {v:.1f}" for m, v in r.items()) + " tokens/s"
        if {"judgelab-llama.cpp", "llama-cpp-python"} <= set(r.index):
            ratio = r["judgelab-llama.cpp"] / r["llama-cpp-python"]
            verdict = "within" if ratio >= 0.9 else "not within"
            text += (f"; judgelab's llama.cpp runtime reaches {ratio:.2f} of raw llama-cpp-python "
                     f"({verdict} the 10 % goal)")
        lines.append(text)
    first = gen.iloc[0]
    return (f"Greedy generation, {int(first['new_tokens_max'])} new tokens, on "
            f"{describe_hardware(first['hardware'])} ({first['date']}; {_load(gen.rename(columns={'load_avg_before': 'load_before', 'load_avg_after': 'load_after'}))}): "
            + "; ".join(lines) + ".")


def scoring_text(bench: pd.DataFrame) -> str:
    """The numerical-bias scoring benchmark (``benchmarks/numerical_bias_scoring.py``) in words: the exact
    score distribution (every temperature from one enumeration) against the paper's 10 sampled generations
    per item, same model and items, one run; which is faster per item, by how much, at what load."""
    rows = bench.set_index("method")
    if not {"exact", "sampled-10"} <= set(rows.index):
        return "The scoring benchmark has no exact and sampled rows to compare."
    ex, sa = rows.loc["exact"], rows.loc["sampled-10"]
    ratio = sa["seconds_per_item"] / ex["seconds_per_item"]
    faster = (f"the exact distribution is {ratio:.2f}x as fast per item" if ratio > 1
              else f"the exact distribution is {1 / ratio:.2f}x as slow per item")
    lo = min(bench["load_avg_before"].min(), bench["load_avg_after"].min())
    hi = max(bench["load_avg_before"].max(), bench["load_avg_after"].max())
    return (f"On {int(ex['items'])} items with {ex['model']} ({int(ex['threads'])} thread(s), load average "
            f"{lo:.1f}-{hi:.1f}, {describe_hardware(str(ex['hardware']))}): exact {ex['seconds_per_item']:.2f} s per "
            f"item ({int(ex['work'])} {ex['work_unit']}, temperatures {ex['temperatures']} at once) against "
            f"{sa['seconds_per_item']:.2f} s for 10 sampled generations at T = {sa['temperatures']}: {faster}, and "
            "it has no sampling noise. On a machine this loaded the figures are rough.")

"""The benchmark sentences follow their tables (tested on tables that would make the committed wording wrong)."""

from __future__ import annotations

import pandas as pd
import pytest

from judgelab import throughput as t
from judgelab.paths import results_path

HW = "cpu:Test CPU x2 (x86_64; avx2 fma)"


def _judge(rates, tokens):
    return pd.DataFrame([{"method": m, "prompts_per_s": r, "computed_tokens": c, "min_tokens": min(tokens),
                          "prompts": 64, "articles": 4, "model": "m", "hardware": HW, "date": "2026-01-01",
                          "load_before": 0.1, "load_after": 0.3} for m, r, c in zip(
                              ["naive", "prefix", "tree", "llamacpp"], rates, tokens)])


def test_judging_text_names_the_fastest_and_the_ratios_from_the_table():
    text = t.judging_text(_judge([0.1, 0.5, 0.8, 0.9], [300, 120, 100, 100]))
    assert "the prefix tree (every common prefix computed once, no padding rows) 0.800 prompts/s (8.0x naive" in text
    assert "The fastest is llama.cpp in-process" in text and "load average 0.1-0.3" in text
    assert "a 2-core Test CPU (x86_64; with AVX2, FMA)" in text
    slow_tree = t.judging_text(_judge([0.1, 0.5, 0.2, 0.3], [300, 120, 100, 100]))
    assert "The fastest is the earlier group-wise prefix sharing" in slow_tree
    with pytest.raises(ValueError, match="no 'naive' row"):
        t.judging_text(_judge([0.1, 0.5], [300, 120]).iloc[1:])


def test_tree_text_compares_each_method_with_the_group_method_of_the_same_run():
    def bench(rates):
        return pd.DataFrame([{"method": m, "prompts_per_s": r, "computed_tokens": c, "gflop_per_s": g,
                              "prompts": 320, "articles": 20, "model": "m", "hardware": HW, "date": "2026-01-01",
                              "load_before": 2.0, "load_after": 2.0}
                             for m, r, c, g in zip(["prefix", "tree", "tree-dense"], rates, [57, 46, 46],
                                                   [150, 160, 130])])
    text = t.tree_text(bench([1.2, 1.5, 1.3]))
    assert "read 1.200 prompts/s" in text and "1.500 prompts/s (1.25x the group method" in text
    assert "the prefix tree with a dense mask over each packed row 1.300 prompts/s (1.08x" in text
    assert "(0.67x the group method" in t.tree_text(bench([1.5, 1.0, 1.3]))
    with pytest.raises(ValueError, match="no 'prefix' row"):
        t.tree_text(bench([1.2, 1.5, 1.3]).iloc[1:])
    committed = pd.read_csv(results_path("benchmarks", "judge_throughput_tree_20_articles.csv"))
    assert "x the group method" in t.tree_text(committed)


def test_generation_text_says_whether_the_runtime_meets_the_goal():
    def gen(judgelab, raw):
        return pd.DataFrame([{"method": m, "model": "m", "tokens_per_s": v, "new_tokens_max": 64, "hardware": HW,
                              "date": "2026-01-01", "load_avg_before": 0.2, "load_avg_after": 0.2}
                             for m, v in [("judgelab-llama.cpp", judgelab), ("llama-cpp-python", raw)]])
    assert "reaches 0.95 of raw llama-cpp-python (within the 10 % goal)" in t.generation_text(gen(38, 40))
    assert "reaches 0.80 of raw llama-cpp-python (not within the 10 % goal)" in t.generation_text(gen(32, 40))
    assert "load average 0.2)" in t.generation_text(gen(32, 40))


def test_committed_benchmark_tables_read():
    assert "prompts/s" in t.judging_text(pd.read_csv(results_path("benchmarks", "judge_throughput.csv")))
    assert "tokens/s" in t.generation_text(pd.read_csv(results_path("benchmarks", "generation_throughput.csv")))


def test_scoring_text_compares_exact_with_sampled_and_flips_with_the_table():
    from judgelab.throughput import scoring_text

    hw = "cpu:Intel(R) Xeon(R) Processor x2 (x86_64; fma avx f16c avx2)"
    bench = pd.DataFrame({
        "method": ["exact", "sampled-10"], "model": ["m@llama.cpp"] * 2, "items": [10, 10],
        "seconds_per_item": [2.0, 7.0], "work": [210, 100], "work_unit": ["forward evaluations", "generations"],
        "temperatures": ["0.4 0.7 1 1.3", "0.7"], "threads": [1, 1], "load_avg_before": [1.2, 1.4],
        "load_avg_after": [1.4, 1.3], "hardware": [hw, hw]})
    text = scoring_text(bench)
    assert "exact 2.00 s per item (210 forward evaluations" in text and "7.00 s for 10 sampled" in text
    assert "3.50x as fast per item" in text and "load average 1.2-1.4" in text
    slow = bench.assign(seconds_per_item=[7.0, 2.0])
    assert "3.50x as slow per item" in scoring_text(slow)
    assert "no exact and sampled rows" in scoring_text(bench.iloc[:1])
    committed = pd.read_csv(results_path("benchmarks") / "numerical_bias_scoring.csv")
    assert "s per item" in scoring_text(committed)

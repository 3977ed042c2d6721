"""The open-models experiment: summary cleaning and scoring on hand-made inputs, and the live `ci` profile."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from judgelab.experiments import open_models as om
from judgelab.profiles import OPEN_MODELS
from judgelab.store import ReplayMiss


def test_clean_xsum_keeps_last_line_and_strips_quotes():
    raw = 'Here is a one-sentence summary:\n\n"Floods hit the Scottish Borders, closing roads."'
    assert om.clean_summary(raw, "xsum") == "Floods hit the Scottish Borders, closing roads."


def test_clean_cnn_drops_preamble_and_list_markers():
    raw = "Here are the highlights from the article:\n\n1. Floods hit Hawick.\n- Roads closed\n* Trains disrupted.\n"
    assert om.clean_summary(raw, "cnn") == "Floods hit Hawick\nRoads closed\nTrains disrupted"


def _prompt_rows(judge, key, other, det, cmp_):
    """Rows of judge_pairwise's output for one pair: (p1, p2) forward and backward per task."""
    rows = []
    for task, probs in (("detection", det), ("comparison", cmp_)):
        for order, (p1, p2) in zip(("forward", "backward"), probs):
            rows.append({"judge": judge, "dataset": "xsum", "key": key, "other": other, "task": task,
                         "order": order, "p1": p1, "p2": p2, "outside": 1 - p1 - p2})
    return rows


def test_pair_scores_by_hand():
    # forward: own summary is option 1; backward: own is option 2.
    rows = _prompt_rows("j", "a", "human", det=[(0.6, 0.2), (0.1, 0.3)], cmp_=[(0.5, 0.5), (0.9, 0.1)])
    out = om.pair_scores(pd.DataFrame(rows)).iloc[0]
    assert out["recognition"] == pytest.approx(0.5 * (0.6 / 0.8 + 0.3 / 0.4))  # 0.75
    assert out["preference"] == pytest.approx(0.5 * (0.5 + 0.1))
    assert out["recognition_outcome"] == "correct"
    assert out["preference_outcome"] == "ambiguous_1"  # "1" in both orders (ties count as "1")


def test_position_bias_diagnostic_by_hand():
    rows = _prompt_rows("j", "a", "human", det=[(0.9, 0.1), (0.8, 0.2)], cmp_=[(0.7, 0.1), (0.6, 0.3)])
    rows += _prompt_rows("j", "b", "human", det=[(0.9, 0.1), (0.2, 0.7)], cmp_=[(0.7, 0.1), (0.6, 0.3)])
    prompts = pd.DataFrame(rows)
    diag = om.diagnostics_table(prompts, om.pair_scores(prompts)).set_index("task")
    assert diag.loc["recognition", "p_option1_wins"] == pytest.approx(3 / 4)
    assert diag.loc["preference", "p_option1_wins"] == pytest.approx(1.0)
    assert diag.loc["recognition", "correct"] == pytest.approx(0.5)
    assert diag.loc["recognition", "ambiguous_1"] == pytest.approx(0.5)
    assert diag.loc["preference", "mean_outside"] == pytest.approx(np.mean([0.2, 0.1, 0.2, 0.1]))


def test_individual_ratios_by_hand():
    items = pd.DataFrame([
        {"judge": "j", "dataset": "xsum", "key": "a", "target": "j", "p_yes": 0.6, "score": 4.0},
        {"judge": "j", "dataset": "xsum", "key": "a", "target": "human", "p_yes": 0.2, "score": 2.0},
    ])
    r = om.individual_ratios(items).iloc[0]
    assert r["other"] == "human"
    assert r["recognition"] == pytest.approx(0.75)
    assert r["preference"] == pytest.approx(4 / 6)


def test_pairwise_requests_cover_both_orders_and_tasks():
    authors = pd.DataFrame({"dataset": "xsum", "key": "k", "author": ["me", "human", "gpt4"],
                            "summary": ["MINE", "HUMAN", "GPT4"]})
    rows, reqs = om.pairwise_requests(authors, "me", pd.Series({"k": "ARTICLE"}))
    assert len(reqs) == 2 * 2 * 2  # 2 others x 2 orders x 2 tasks
    fwd = next(r for r, q in zip(rows, reqs) if r["order"] == "forward" and r["other"] == "human")
    text = reqs[rows.index(fwd)].messages[1]["content"]
    assert text.index("MINE") < text.index("HUMAN") and text.index("ARTICLE") < text.index("MINE")


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("open_models_ci")
    return out, om.run("ci", out, progress=False)


def test_ci_profile_runs_live(ci_run):
    out, res = ci_run
    n_articles = OPEN_MODELS["ci"].judges["smollm2-135m-instruct"]
    judge = "smollm2-135m-instruct"
    assert len(res.summaries) == 2 * n_articles and res.summaries["summary"].str.len().gt(0).all()
    # 5 released authors + nobody else: 5 others x 2 orders x 2 tasks per article and dataset
    assert len(res.prompts) == 2 * n_articles * 5 * 2 * 2
    assert res.prompts[["p1", "p2"]].ge(0).all().all() and (res.prompts["p1"] + res.prompts["p2"]).le(1 + 1e-6).all()
    table = res.pairwise_table()
    assert set(table["other"]) == {"human", "claude", "gpt35", "gpt4", "llama", "all"}
    assert table[["recognition", "preference"]].apply(lambda c: c.between(0, 1)).all().all()
    assert (table["recognition_low"] <= table["recognition"]).all() and (table["recognition"] <= table["recognition_high"]).all()
    assert table["weights"].str.contains("sha256:b179c952").all()
    assert table["hardware"].notna().all() and table["date"].notna().all()
    ind = res.individual_table()
    assert ind["is_self"].sum() == 2  # the judge's own summaries, one row per dataset
    assert ind["score"].between(1, 5).all()
    assert (out / "stores" / f"{judge}.sqlite").is_file()


def test_ci_store_replays_and_misses_loudly(ci_run):
    out, res = ci_run
    replayed = om.run(replace(OPEN_MODELS["ci"], replay=True), out, progress=False)
    pd.testing.assert_frame_equal(replayed.pairs, res.pairs)
    bigger = replace(OPEN_MODELS["ci"], replay=True, judges={"smollm2-135m-instruct": 3})
    with pytest.raises(ReplayMiss, match="not in"):
        om.run(bigger, out, progress=False)


def test_sibling_contrast_uses_only_articles_with_a_sibling():
    assert om.family("qwen2.5-coder-0.5b-instruct") == "qwen" and om.family("gpt35") == "gpt"
    rows = []
    for key in ("a", "b", "c"):
        for other, r in (("qwen2.5-coder-1.5b-instruct", 0.5), ("human", 0.7), ("claude", 0.9)):
            if key == "c" and other.startswith("qwen"):
                continue  # the sibling wrote no summary of article c
            rows.append({"judge": "qwen2.5-coder-0.5b-instruct", "dataset": "xsum", "key": key, "other": other,
                         "recognition": r + (0.3 if key == "c" else 0.0), "preference": r})
    rows.append({"judge": "smollm2-135m-instruct", "dataset": "xsum", "key": "a", "other": "human",
                 "recognition": 0.5, "preference": 0.5})
    out = om.sibling_contrast(pd.DataFrame(rows)).set_index("against")
    assert list(out["judge"].unique()) == ["qwen2.5-coder-0.5b-instruct"]  # smollm2 has no sibling here
    assert out.loc["sibling", "recognition"] == pytest.approx(0.5)
    # article c (no sibling summary) is left out: unrelated mean is 0.8, not pulled up by c's 1.0 / 1.2
    assert out.loc["unrelated", "recognition"] == pytest.approx(0.8)
    assert out.loc["unrelated", "n"] == 4
    assert om.sibling_contrast(pd.DataFrame(rows[-1:])).empty


def test_shortfall_names_judges_below_their_design_size():
    book = OPEN_MODELS["book"]
    assert set(book.targets) == set(book.judges)  # every book judge has a design size
    prof = replace(book, judges={"a": 200, "b": 80, "c": 3}, targets={"a": 200, "b": 200})
    assert prof.shortfall() == {"b": (80, 200)}  # "a" meets its target; "c" has none
    assert replace(book, targets={}).shortfall() == {}


def test_sizes_text_names_shortfall_and_the_recorded_hardware():
    runs = pd.DataFrame({"judge": ["a", "b", "w"], "hardware": ["cpu:testbox", "cpu:testbox", None]})
    prof = replace(OPEN_MODELS["book"], judges={"a": 200, "b": 80}, summaries={"b": 120, "w": 30},
                   targets={"a": 200, "b": 200})
    text = om.sizes_text(prof, runs)
    assert "**a** judged 200 held-out articles per dataset, **b** judged 80 held-out articles per dataset " \
           "(and summarised 120)" in text
    assert "**w**" not in text  # a summary-only author judges nothing
    assert "b (80 of 200)" in text and "a (" not in text
    assert "computed on `cpu:testbox` (the runs table above)" in text  # from the record, not from prose
    met = om.sizes_text(replace(prof, judges={"a": 200, "b": 200}), runs)
    assert "Short of" not in met and "cpu:testbox" not in met


def _pooled(evaluator, r, s, half=0.002):
    return {"dataset": "xsum", "evaluator": evaluator, "other": "all", "n": 50,
            "recognition": r, "recognition_low": r - half, "recognition_high": r + half,
            "preference": s, "preference_low": s - half, "preference_high": s + half}


def test_findings_reads_each_interval_against_chance_and_the_shared_margin():
    diag = pd.DataFrame({"evaluator": ["a", "a", "b"], "dataset": "xsum", "p_option1_wins": [1.0, 0.9, 0.5],
                         "mean_outside": [0.8, 0.6, 0.1]})
    near = om.findings(pd.DataFrame([_pooled("a", 0.497, 0.5), _pooled("b", 0.5, 0.503)]), diag)
    a, b, _, closing = near.split("\n")
    assert "R = 0.497 [0.495, 0.499] (below chance), S = 0.500 [0.498, 0.502] (compatible with chance)" in a
    assert "option 1 wins in 95% of its prompts; 70% of the probability" in a  # means over a's two tasks
    assert "S = 0.503 [0.501, 0.505] (above chance)" in b
    assert closing.startswith(f"Every interval above lies within {om.CHANCE_MARGIN:.2f} of chance")
    # one real effect (the paper's GPT-4 is 0.17-0.41 above chance) and the closing paragraph no longer applies
    real = om.findings(pd.DataFrame([_pooled("a", 0.497, 0.5), _pooled("b", 0.62, 0.503)]), diag)
    assert "(above chance)" in real and "Every interval" not in real
    # an interval reaching past the margin on the low side is not "near chance" either
    assert not om.near_chance(pd.Series(_pooled("a", 0.44, 0.5)), "recognition")
    assert om.near_chance(pd.Series(_pooled("a", 0.44, 0.5)), "preference")
    # beside the paper: which of its evaluators go beyond the same margin, and which stay within it
    paper = pd.DataFrame([_pooled("gpt4", 0.67, 0.70), _pooled("llama", 0.51, 0.51), _pooled("gpt35", 0.53, 0.44)])
    last = om.findings(pd.DataFrame([_pooled("a", 0.497, 0.5)]), diag, paper).split("\n")[-1]
    # only the cells that lie beyond the margin are quoted: gpt35's R (0.530) stays within it, its S does not
    assert ("**gpt4** (xsum R 0.670 [0.668, 0.672]; xsum S 0.700 [0.698, 0.702]) and **gpt35** "
            "(xsum S 0.440 [0.438, 0.442]) lie beyond 0.05 of chance in the cells named") in last
    assert "0.530" not in last
    assert "while **llama** stays within it as well" in last
    assert last.endswith("look like the paper's llama, not like its gpt4 and gpt35.")
    assert "look like" not in om.findings(pd.DataFrame([_pooled("b", 0.62, 0.5)]), diag, paper)
    assert om.findings(pd.DataFrame([_pooled("a", 0.5, 0.5)]), diag, paper.iloc[1:2]).endswith(
        "no evaluator's interval lies beyond 0.05 of chance; **llama** stays within it as well.")
    assert om.findings(pd.DataFrame([_pooled("a", 0.5, 0.5)]).assign(other="human"), diag) == \
        "No judge in this run has pooled results."
    # an interval that straddles the margin is neither "within" nor "beyond"
    straddle = pd.DataFrame([_pooled("gpt35", 0.55, 0.5, half=0.01)])
    assert om.findings(pd.DataFrame([_pooled("a", 0.5, 0.5)]), diag, straddle).endswith(
        "no evaluator's interval lies beyond 0.05 of chance; **gpt35** neither stays within it nor lies clearly "
        "beyond it.")


def test_position_bias_text_names_ties_and_outside_mass_per_judge():
    def row(ev, task, wins, outside, amb=(0.9, 0.1)):
        return {"evaluator": ev, "dataset": "xsum", "task": task, "p_option1_wins": wins, "mean_outside": outside,
                "ambiguous_1": amb[0], "ambiguous_2": amb[1]}
    tied = pd.DataFrame([row("a", "recognition", 1.0, 0.90), row("a", "preference", 1.0, 0.86),
                         row("b", "recognition", 1.0, 0.001), row("b", "preference", 0.98, 0.001)])
    text = om.position_bias_text(tied)
    assert text.startswith("3 of the 4 (judge, dataset, task) cases tie as the most position-biased")
    assert "The most position-biased case" not in text
    # per judge, not one average over judges (which would read 44% here and describe neither)
    assert "**a** 86.0% to 90.0%; **b** 0.1%." in text and "44" not in text
    single = om.position_bias_text(tied.assign(p_option1_wins=[0.7, 1.0, 0.6, 0.5]))
    assert single.startswith("The most position-biased case is **a** on xsum (preference): option 1 wins in "
                             "100.0% of prompts and 100.0% of pairs")


def test_summary_only_author_is_judged_by_the_others_but_judges_nothing(tmp_path, monkeypatch):
    from test_store import FakeModel

    monkeypatch.setattr(om, "get_model", lambda spec, device=None: FakeModel(spec))
    prof = replace(OPEN_MODELS["ci"], judges={"judge-a": 2}, summaries={"judge-a": 1, "writer-b": 3},
                   datasets=("xsum",))
    assert prof.writers() == {"judge-a": 2, "writer-b": 3}  # a judge summarises at least what it judges
    res = om.run(prof, tmp_path, progress=False)
    assert res.summaries.groupby("author").size().to_dict() == {"judge-a": 2, "writer-b": 3}
    assert set(res.prompts["judge"]) == {"judge-a"}  # writer-b judges nothing
    # judge-a meets writer-b on its own 2 articles only, not on writer-b's third
    against_b = res.pairs[res.pairs["other"] == "writer-b"]
    assert len(against_b) == 2 and set(against_b["key"]) == set(om.held_out_keys("xsum", 2))
    assert set(res.runs["judge"]) == {"judge-a", "writer-b"}  # both models' weights are on record
    # what was written replays: the stores hold every summary and judgement
    replayed = om.run(replace(prof, replay=True), tmp_path, progress=False)
    pd.testing.assert_frame_equal(replayed.pairs, res.pairs)


def test_sibling_findings_reads_the_contrast_only_where_there_is_recognition():
    def rows(judge, sib_r, unrel_r, n=30, half=0.01):
        return [{"dataset": "xsum", "judge": judge, "against": a, "n": n, "recognition": r,
                 "recognition_low": r - half, "recognition_high": r + half}
                for a, r in (("sibling", sib_r), ("unrelated", unrel_r))]

    text = om.sibling_findings(pd.DataFrame(rows("a", 0.50, 0.501) + rows("b", 0.60, 0.80) + rows("c", 0.79, 0.80)))
    a, b, c = text.split("\n")
    assert "within 0.05 of chance" in a  # no recognition at all: nothing for a sibling to make harder
    assert "do not overlap: R is lower against the sibling" in b
    assert "overlap: no sign" in c and "demonstration" not in text  # 30 pairs each: no small-sample warning
    assert "demonstration" in om.sibling_findings(pd.DataFrame(rows("a", 0.6, 0.8, n=2)))
    assert om.sibling_findings(pd.DataFrame(columns=["dataset", "judge", "against", "n"])) == \
        "No judge in this run has a sibling."


def test_book_tables_replay_to_the_committed_csvs(tmp_path):
    """The committed stores replay to the committed tables, byte for byte (read-only: nothing is written
    under results/). Any change to scoring, counting or the CSV format shows up here first."""
    from judgelab import paths

    res = om.run("book", progress=False)
    written = paths.write_csvs(om.result_tables(res), tmp_path)
    assert set(written) == {"pairwise.csv", "individual.csv", "individual_ratios.csv", "diagnostics.csv", "kendall.csv",
                            "debiased.csv"}
    committed = om.default_results_dir("book")
    for name, path in written.items():
        assert path.read_bytes() == (committed / name).read_bytes(), f"{name} differs from the committed table"
    assert (res.prompts["invalid"].isna()).all()  # every committed answer is a valid one

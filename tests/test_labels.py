"""The label experiment with open judges: the paper's labelling, scores and sentences, and one live judge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from judgelab.experiments import labels as L
from judgelab.prompts import panickssery2024 as P
from judgelab.store import CallStore, StoredModel


def test_labels_follow_the_papers_code():
    # correct: the own summary carries the judge's key in both orders; wrong: the other's key
    assert L.labels_for("me", "gpt4", "correct", "k") == (("me", "gpt4"), ("gpt4", "me"))
    assert L.labels_for("me", "gpt4", "wrong", "k") == (("gpt4", "me"), ("me", "gpt4"))
    # random: one shuffle per pair, backward reversed -- so the labels are either both correct or both wrong
    seen = set()
    for key in map(str, range(40)):
        fwd, bwd = L.labels_for("me", "gpt4", "random", key)
        assert bwd == fwd[::-1]
        assert L.labels_for("me", "gpt4", "random", key) == (fwd, bwd)  # seeded: the same prompts on a rerun
        seen.add(fwd)
    assert seen == {("me", "gpt4"), ("gpt4", "me")}
    with pytest.raises(ValueError, match="unknown label condition 'swapped'"):
        L.labels_for("me", "gpt4", "swapped", "k")


def _authors():
    rows = []
    for key in ("a1", "a2"):
        for author in ("judge-x", *L.LABEL_AUTHORS, "other-open-model"):
            rows.append({"dataset": "xsum", "key": key, "author": author, "summary": f"{author} on {key}."})
    return pd.DataFrame(rows)


def test_requests_show_each_summary_under_its_label_in_the_papers_prompt():
    articles = pd.Series({"a1": "Article one.", "a2": "Article two."})
    rows, reqs = L.label_requests(_authors(), "judge-x", articles)
    # 2 articles x 3 conditions x 5 paper sources x 2 orders; the other open model is not a paper source
    assert len(rows) == len(reqs) == 2 * 3 * 5 * 2
    assert not any(r["other"] == "other-open-model" for r in rows)
    i = next(i for i, r in enumerate(rows) if r["condition"] == "wrong" and r["order"] == "forward"
             and r["other"] == "gpt4" and r["key"] == "a1")
    user = reqs[i].messages[1]["content"]
    assert reqs[i].messages[0]["content"] == P.COMPARISON_SYSTEM_PROMPT
    assert "Summary1 (gpt4's summary):\njudge-x on a1.\n\nSummary2 (judge-x's summary):\ngpt4 on a1." in user
    assert "Article one." in user
    assert len({r.label for r in reqs}) == len(reqs)
    # a random-label prompt is word for word the correct- or the wrong-label prompt of its pair
    text = {(r["key"], r["other"], r["order"], r["condition"]): q.messages for r, q in zip(rows, reqs)}
    same = [text[(k, o, d, "random")] in (text[(k, o, d, "correct")], text[(k, o, d, "wrong")])
            for (k, o, d, c) in text if c == "random"]
    assert len(same) == 20 and all(same)
    assert text[("a1", "gpt4", "forward", "correct")] != text[("a1", "gpt4", "forward", "wrong")]


def _prompts(p_own_fwd: dict[str, float], p_own_bwd: dict[str, float], n_keys: int = 30) -> pd.DataFrame:
    """Synthetic answers: P(own) in each order per condition, the same for every pair."""
    rows = []
    for k in range(n_keys):
        for other in ("gpt4", "human"):
            for cond in L.CONDITIONS:
                for order, p_own in (("forward", p_own_fwd[cond]), ("backward", p_own_bwd[cond])):
                    jitter = 0.02 * np.sin(k + len(other))  # articles differ a little: intervals are not points
                    p = min(max(p_own + jitter, 0.01), 0.99)
                    p1, p2 = (p, 1 - p) if order == "forward" else (1 - p, p)
                    rows.append({"judge": "judge-x", "dataset": "xsum", "key": f"k{k}", "other": other,
                                 "condition": cond, "order": order, "p1": 0.9 * p1, "p2": 0.9 * p2})
    return pd.DataFrame(rows)


def test_scores_cancel_position_bias_and_the_sentence_says_which_way_labels_move():
    # a judge that always answers "1" strongly, and prefers its own summary a little more with correct labels
    # than with swapped ones: raw S sits near 0.5 in every condition, the debiased S shows the shift
    fwd = {"correct": 0.95, "wrong": 0.85, "random": 0.9}  # P("1") when own is first
    bwd = {"correct": 0.15, "wrong": 0.05, "random": 0.1}  # P("2") when own is second (so P("1") = 0.85..0.95)
    pairs = L.label_pairs(_prompts(fwd, bwd))
    assert len(pairs) == 30 * 2 * 3
    c = pairs[pairs["condition"] == "correct"]
    assert c["preference"].mean() == pytest.approx(0.55, abs=0.01)
    assert (c["debiased_preference"] > 0.5).all()
    assert (pairs[pairs["condition"] == "wrong"]["debiased_preference"] < 0.5).all()
    table = L.label_table(pairs)
    assert set(table["condition"]) == set(L.CONDITIONS) and (table["pairs"] == 60).all()
    change = L.label_change(pairs)
    assert len(change) == 1 and change["change_debiased"].iloc[0] < 0 and change["change_debiased_high"].iloc[0] < 0
    assert change["change"].iloc[0] == pytest.approx(0.45 - 0.55, abs=0.01)  # (0.85 + 0.05) / 2 - (0.95 + 0.15) / 2
    text = L.labels_findings(table, change)
    assert "lowers it for judge-x on XSUM" in text and "raises" not in text
    assert "1 of 1 cells" in text

    def findings(fwd, bwd):
        p = L.label_pairs(_prompts(fwd, bwd))
        return L.labels_findings(L.label_table(p), L.label_change(p))

    # the same judge with the labels' effect reversed: the sentence must flip
    flipped = findings({"correct": 0.85, "wrong": 0.95, "random": 0.9}, {"correct": 0.05, "wrong": 0.15, "random": 0.1})
    assert "raises it for judge-x on XSUM" in flipped and "lowers" not in flipped
    # and with no effect: nothing moves
    none = findings({"correct": 0.9, "wrong": 0.9, "random": 0.9}, {"correct": 0.1, "wrong": 0.1, "random": 0.1})
    assert "In none of these 1 cells" in none


def test_invalid_answers_are_counted_not_scored():
    prompts = _prompts({"correct": 0.9, "wrong": 0.9, "random": 0.9}, {"correct": 0.1, "wrong": 0.1, "random": 0.1})
    prompts.loc[0, ["p1", "p2"]] = np.nan
    pairs = L.label_pairs(prompts)
    bad = pairs[pairs["invalid_prompts"] > 0]
    assert len(bad) == 1 and np.isnan(bad["preference"].iloc[0]) and np.isnan(bad["debiased_preference"].iloc[0])
    table = L.label_table(pairs)
    row = table[table["condition"] == prompts.loc[0, "condition"]].iloc[0]
    assert row["invalid_prompts"] == 1 and row["pairs"] == 60 and row["n"] == 59
    with pytest.raises(ValueError, match="appear more than once"):
        L.label_pairs(pd.concat([prompts, prompts.iloc[:1]]))


def test_profile_sizes_are_checked():
    p = L.labels_profile("book", judges=["smollm2-135m-instruct=7"])
    assert p.judges["smollm2-135m-instruct"] == 7 and p.replay
    assert not L.labels_profile("book", live=True).replay
    with pytest.raises(ValueError, match="NAME=N"):
        L.labels_profile("book", judges=["smollm2-135m-instruct"])
    with pytest.raises(ValueError, match="judged 50 articles"):
        L.labels_profile("book", judges=["qwen2.5-coder-1.5b-instruct=60"])
    with pytest.raises(ValueError, match="not a judge"):
        L.labels_profile("book", judges=["gpt4=3"])


def test_a_real_judge_answers_every_label_prompt_and_replays(smollm2, tmp_path):
    articles = pd.Series({"a1": "The council approved a new park on Tuesday after a long debate.",
                          "a2": "A storm closed the coastal road for two days."})
    authors = _authors().replace({"author": {"judge-x": smollm2.name}})
    with CallStore(tmp_path / "judge.sqlite") as store:
        live = L.judge_labels(StoredModel(smollm2, store, progress=False), authors, articles)
    assert len(live) == 60 and live["p1"].notna().all()
    assert ((live["p1"] + live["p2"] + live["outside"]).round(6) == 1).all()
    with CallStore(tmp_path / "judge.sqlite", readonly=True) as store:
        again = L.judge_labels(StoredModel(None, store, replay=True, name=smollm2.name, progress=False),
                               authors, articles)
    pd.testing.assert_frame_equal(live, again)
    pairs = L.label_pairs(live)
    assert len(pairs) == 2 * 5 * 3 and pairs["preference"].between(0, 1).all()

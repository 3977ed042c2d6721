"""Position-debiased R and S in logit space (judgelab.experiments.debiased) and the committed tables."""

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from judgelab.experiments import debiased as db


def _prompts(rows):
    """rows: (key, task, order, p1, p2) for one judge, dataset and other author."""
    return pd.DataFrame([{"evaluator": "j", "dataset": "xsum", "key": k, "other": "human", "task": t, "order": o,
                          "p1": p1, "p2": p2} for k, t, o, p1, p2 in rows])


def _both_tasks(key, forward, backward):
    return [(key, t, "forward", *forward) for t in ("detection", "comparison")] + \
           [(key, t, "backward", *backward) for t in ("detection", "comparison")]


def test_pure_position_bias_gives_d_zero_exactly_and_counts_a_tie():
    # The judge answers "1" with P 0.9 whatever is shown first: plain R = 1/2 (0.9 + 0.1) = 0.5, d = 0.
    pairs = db.debiased_pairs(_prompts(_both_tasks("a", (0.9, 0.1), (0.9, 0.1))))
    row = pairs.iloc[0]
    assert row["recognition_d"] == 0.0 and row["preference_d"] == 0.0
    assert row["debiased_recognition"] == 0.5
    assert row["recognition_own_wins"] == 0.0 and row["recognition_ties"] == 1.0


def test_unnormalised_mass_outside_the_options_does_not_move_d():
    # Same log-odds, different mass outside {"1","2"} in the two orders: still no preference.
    pairs = db.debiased_pairs(_prompts(_both_tasks("a", (0.6, 0.2), (0.15, 0.05))))
    assert pairs["recognition_d"].iloc[0] == pytest.approx(0.0, abs=1e-12)


def test_bias_plus_preference_recovers_the_preference():
    b, c = 2.0, 0.3  # position 1 favoured by 2 logits; own summary by 0.3
    fwd, bwd = (expit(b + c), 1 - expit(b + c)), (expit(b - c), 1 - expit(b - c))
    pairs = db.debiased_pairs(_prompts(_both_tasks("a", fwd, bwd)))
    row = pairs.iloc[0]
    assert row["recognition_d"] == pytest.approx(c, rel=1e-9)
    assert row["debiased_recognition"] == pytest.approx(expit(c), rel=1e-9)
    assert row["recognition_own_wins"] == 1.0 and row["recognition_ties"] == 0.0
    # ... which the plain renormalised R nearly hides (0.5 + 0.03), the reason this module exists
    plain = 0.5 * (fwd[0] + bwd[1])
    assert 0.5 < plain < expit(c) - 0.03


def test_undefined_pairs_are_counted_not_scored():
    rows = (_both_tasks("a", (0.7, 0.3), (0.4, 0.6))  # defined, own wins
            + _both_tasks("b", (1.0, 0.0), (1.0, 0.0))  # saturated both orders: inf - inf
            + [("c", t, o, np.nan, np.nan) for t in ("detection", "comparison") for o in ("forward", "backward")])
    pairs = db.debiased_pairs(_prompts(rows))
    assert pairs.set_index("key")["recognition_d"].isna().to_dict() == {"a": False, "b": True, "c": True}
    table = db.debiased_table(pairs)
    pooled = table[table["other"] == "all"].iloc[0]
    assert pooled["n"] == 3 and pooled["recognition_n"] == 1 and pooled["preference_n"] == 1
    assert pooled["recognition_own_wins"] == 1.0
    one_side_saturated = db.debiased_pairs(_prompts(_both_tasks("d", (1.0, 0.0), (0.5, 0.5))))
    assert one_side_saturated["recognition_d"].iloc[0] == np.inf
    assert one_side_saturated["debiased_recognition"].iloc[0] == 1.0


def test_bad_frames_are_errors():
    good = _prompts(_both_tasks("a", (0.7, 0.3), (0.4, 0.6)))
    with pytest.raises(ValueError, match="more than once"):
        db.debiased_pairs(pd.concat([good, good.iloc[:1]]))
    with pytest.raises(ValueError, match="no backward"):
        db.debiased_pairs(good[good["order"] == "forward"])
    with pytest.raises(ValueError, match="lacks columns"):
        db.debiased_pairs(good.drop(columns="p2"))
    with pytest.raises(ValueError, match=">= 0"):
        db.log_odds([-0.1], [0.5])


def test_table_intervals_resample_articles():
    rows = []
    for i in range(30):
        rows += _both_tasks(f"k{i}", (0.8, 0.2), (0.7 if i % 3 else 0.9, 0.3 if i % 3 else 0.1))
    table = db.debiased_table(db.debiased_pairs(_prompts(rows)))
    pooled = table[table["other"] == "all"].iloc[0]
    assert pooled["recognition_own_wins"] == pytest.approx(20 / 30)
    assert pooled["recognition_own_wins_low"] < 20 / 30 < pooled["recognition_own_wins_high"]
    assert list(table["other"]) == ["human", "all"]


def test_gpt_answers_bound_the_share_of_own_wins_and_count_missing_answers():
    outcomes = ["correct"] * 4 + ["incorrect"] * 2 + ["ambiguous_1"] * 3 + ["ambiguous_2"] + ["other"] * 2
    df = pd.DataFrame({"dataset": "xsum", "evaluator": "gpt4", "key": [f"k{i}" for i in range(12)],
                       "recognition_outcome": outcomes, "preference_outcome": outcomes})
    b = db.answer_bounds(df).iloc[0]
    assert b["n"] == 10 and b["n_undefined"] == 2  # the two answers that were neither "1" nor "2"
    assert b["recognition_own_wins_lower"] == pytest.approx(0.4)  # correct only
    assert b["recognition_own_wins_upper"] == pytest.approx(0.8)  # correct + ambiguous


def _pooled_row(est, low, high, n=100, wins=(0.5, 0.4, 0.6)):
    row = {"dataset": "xsum", "evaluator": "judge", "other": "all", "n": n}
    for m in ("recognition", "preference"):
        row.update({f"{m}_n": n, f"debiased_{m}": est, f"debiased_{m}_low": low, f"debiased_{m}_high": high,
                    f"{m}_own_wins": wins[0], f"{m}_own_wins_low": wins[1], f"{m}_own_wins_high": wins[2],
                    f"{m}_ties": 0.0})
    return row


def test_findings_read_each_interval_against_chance():
    # Barely above 0.5 but the whole interval above: must not be called chance.
    above = db.debiased_findings(pd.DataFrame([_pooled_row(0.51, 0.505, 0.515)]))
    assert "above chance" in above and "not distinguishable" not in above
    straddle = db.debiased_findings(pd.DataFrame([_pooled_row(0.53, 0.49, 0.57)]))
    assert "not distinguishable from chance" in straddle and "above chance" not in straddle
    below = db.debiased_findings(pd.DataFrame([_pooled_row(0.497, 0.496, 0.498)]))
    assert "below chance" in below
    few = _pooled_row(1.0, 1.0, 1.0, n=2000)
    few["preference_n"] = 1
    text = db.debiased_findings(pd.DataFrame([few]))
    assert "defined for only 1 of 2000 pairs" in text
    none = _pooled_row(np.nan, np.nan, np.nan)
    none["recognition_n"] = 0
    assert "debiased R undefined for every pair" in db.debiased_findings(pd.DataFrame([none]))


def test_llama_prompts_use_the_raw_fields_in_the_design_order():
    from judgelab.experiments import reanalysis as ra

    row = {"evaluator": "llama", "dataset": "xsum", "key": "k", "other": "human",
           "fd_1": 0.8, "fd_2": 0.2, "bd_1": 0.6, "bd_2": 0.4, "fc_1": 0.5, "fc_2": 0.5, "bc_1": 0.5, "bc_2": 0.5,
           "stored_recognition": 0.0, "stored_preference": 1.0}  # stored (swapped) scores are not read
    pairs = db.debiased_pairs(ra.llama_prompts(pd.DataFrame([row])))
    assert pairs["recognition_d"].iloc[0] == pytest.approx((np.log(4) - np.log(1.5)) / 2)
    assert pairs["preference_d"].iloc[0] == 0.0


@pytest.mark.parametrize("name, build", [("debiased.csv", "llama_debiased_table"),
                                         ("debiased_gpt_bounds.csv", "gpt_debiased_bounds")])
def test_committed_release_tables_equal_what_the_code_recomputes(name, build, tmp_path):
    from judgelab import paths
    from judgelab.experiments import reanalysis as ra

    written = paths.write_csv(getattr(ra, build)(), tmp_path / name)
    assert written.read_bytes() == paths.results_path("panickssery2024", name).read_bytes()


def test_bounds_findings_say_when_the_answers_cannot_tell():
    row = {"dataset": "xsum", "evaluator": "gpt4", "n": 100, "n_undefined": 0}
    for m in ("recognition", "preference"):
        row.update({f"{m}_own_wins_lower": 0.54, f"{m}_own_wins_lower_low": 0.52, f"{m}_own_wins_lower_high": 0.56,
                    f"{m}_own_wins_upper": 0.85, f"{m}_own_wins_upper_low": 0.83, f"{m}_own_wins_upper_high": 0.86})
    assert db.bounds_findings(pd.DataFrame([row])).count("own summary wins most pairs") == 2
    wide = {**row, "recognition_own_wins_lower": 0.27, "recognition_own_wins_lower_low": 0.25}
    text = db.bounds_findings(pd.DataFrame([wide]))
    assert "R prompt 27.0-85.0% (the answers cannot tell)" in text and "S prompt 54.0-85.0% (own summary wins" in text

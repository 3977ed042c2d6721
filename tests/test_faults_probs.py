"""Fault injection: judges that return NaN, infinite, negative or all-outside probabilities.

Each fake backend answers most prompts well and corrupts a deterministic share of them (about a third,
chosen by a hash of the prompt). The answers go through the real store and the real open-models
experiment (:func:`judgelab.experiments.open_models.run`) and its real tables; every corrupted answer must
come out as a *counted* invalid answer -- never scored, never silently dropped from a count -- and every
table's ``n`` must count what was averaged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from judgelab import stats
from judgelab.experiments import open_models as om
from judgelab.models.base import GenerationConfig, Model, OptionProbs, Prompt, canonical_json, sha256_hex
from judgelab.profiles import OPEN_MODELS

FAULTS = {
    "nan": lambda n: [math.nan] * n,
    "inf": lambda n: [math.inf] + [0.0] * (n - 1),
    "negative": lambda n: [-0.6] + [0.3] * (n - 1),
    "outside": lambda n: [0.0] * n,  # every bit of mass on tokens that are no option
}


class FaultyJudge(Model):
    """Good answers (97 % of the mass on the options) except where ``_bad(prompt)``: then ``FAULTS[fault]``.

    Records how many bad answers it gave per option set, so the tests know what the tables must count.
    """

    def __init__(self, name: str, fault: str):
        self.name = name
        self.fault = fault
        self.bad = {}  # options -> number of corrupted answers given

    @property
    def fingerprint(self) -> dict[str, Any]:
        return {"backend": "fake-faulty", "model": self.name, "fault": self.fault, "chat": True}

    @staticmethod
    def _h(prompt: Prompt, *extra: Any) -> int:
        return int(sha256_hex(canonical_json([prompt, *extra]))[:12], 16)

    @classmethod
    def _bad(cls, prompt: Prompt) -> bool:
        return cls._h(prompt, "fault") % 3 == 0

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig = GenerationConfig()) -> list[str]:
        return [f"summary {self._h(p) % 10**6} of the article" for p in prompts]

    def option_probs(self, prompts: Sequence[Prompt], options: Sequence[str]) -> list[OptionProbs]:
        out = []
        for p in prompts:
            if self._bad(p):
                self.bad[tuple(options)] = self.bad.get(tuple(options), 0) + 1
                raw = FAULTS[self.fault](len(options))
            else:
                h = self._h(p, list(options))
                w = [((h >> (8 * i)) % 251 + 1) for i in range(len(options))]
                raw = [0.97 * x / sum(w) for x in w]
            out.append(OptionProbs(tuple(options), tuple(raw), extra={"top_token": options[0]}))
        return out


# --- the type ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_option_probs_flags_every_fault_and_never_scores_it(fault):
    a = OptionProbs(("1", "2"), tuple(FAULTS[fault](2)))
    assert not a.valid and a.invalid_reason
    assert a.outside == 1.0  # a non-answer's mass is all outside, not NaN and not 0
    assert all(math.isnan(v) for v in a.probs.values())  # nothing to score, not 0.5 / 0.5
    assert a.argmax is None
    assert a.inside == 0.0 if fault == "outside" else math.isnan(a.inside)  # a non-answer has no mass inside


def test_option_probs_checks_range_sum_and_tolerates_rounding():
    assert "above 1" in OptionProbs(("1", "2"), (1.2, 0.0)).invalid_reason
    assert "sum to 1.3" in OptionProbs(("1", "2"), (0.7, 0.6)).invalid_reason
    assert "not numbers" in OptionProbs(("1", "2"), (None, 0.5)).invalid_reason
    tiny = OptionProbs(("1", "2"), (0.6, 0.4 + 5e-5))  # float rounding, within SUM_TOLERANCE
    assert tiny.valid and tiny.outside == 0.0 and sum(tiny.probs.values()) == pytest.approx(1.0)
    ok = OptionProbs(("Yes", "No"), (0.3, 0.1))
    assert ok.valid and ok["Yes"] == pytest.approx(0.75) and ok.outside == pytest.approx(0.6)


def test_records_revalidate_when_read_and_old_records_still_load():
    old = {"options": ["1", "2"], "raw": [0.25, 0.5], "exact": True, "top_token": "2"}  # as stores hold them
    a = OptionProbs.from_record(old)
    assert a.valid and a.extra == {"top_token": "2"} and a.to_record() == old
    bad = OptionProbs.from_record({"options": ["1", "2"], "raw": [float("nan"), 0.5]})
    assert not bad.valid and "non-finite" in bad.invalid_reason


def test_bootstrap_table_n_counts_what_was_averaged():
    df = pd.DataFrame({"g": "a", "key": list("abcdef"), "x": [0.1, np.nan, 0.3, np.inf, 0.5, 0.7],
                       "y": [1, 2, 3, 4, 5, 6.0]})
    one = stats.bootstrap_mean_table(df, ["x"], "g").iloc[0]
    assert one["n"] == 4 and one["x"] == pytest.approx(0.4)  # NaN and inf are no values: 4, not 6
    both = stats.bootstrap_mean_table(df, ["x", "y"], "g").iloc[0]
    assert (both["n"], both["n_x"], both["n_y"]) == (4, 4, 6) and both["y"] == pytest.approx(3.5)
    same = stats.bootstrap_mean_table(df.assign(x=0.5), ["x", "y"], "g")
    assert "n_x" not in same and same["n"].iloc[0] == 6  # equal counts: one n, no extra columns


# --- the experiment ----------------------------------------------------------------------------------------
def _run(fault: str, tmp_path, monkeypatch):
    judges: dict[str, FaultyJudge] = {}

    def get_model(spec, device=None):
        judges[spec] = FaultyJudge(spec, fault)
        return judges[spec]

    monkeypatch.setattr(om, "get_model", get_model)
    prof = replace(OPEN_MODELS["ci"], judges={"faulty-judge": 3}, datasets=("xsum",))
    res = om.run(prof, tmp_path, progress=False)
    return res, judges["faulty-judge"]


@pytest.fixture(scope="module", params=sorted(FAULTS))
def faulty_run(request, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    try:
        yield request.param, *_run(request.param, tmp_path_factory.mktemp(request.param), mp)
    finally:
        mp.undo()


def test_faulty_pairwise_answers_are_counted_not_scored(faulty_run):
    fault, res, judge = faulty_run
    prompts, pairs = res.prompts, res.pairs
    n_bad = judge.bad[("1", "2")]
    assert n_bad > 0 and prompts["invalid"].notna().sum() == n_bad
    assert prompts.loc[prompts["invalid"].notna(), ["p1", "p2"]].isna().all().all()
    assert (prompts.loc[prompts["invalid"].notna(), "outside"] == 1.0).all()  # never NaN, never 0
    assert len(pairs) == 3 * 5  # 3 articles x 5 other authors: no pair vanished
    # a pair is unscored exactly when one of its task's two prompts was invalid
    bad_task = prompts.assign(bad=prompts["invalid"].notna()).groupby(["key", "other", "task"])["bad"].any()
    for task, name in (("detection", "recognition"), ("comparison", "preference")):
        expect = bad_task.xs(task, level="task").reindex(pd.MultiIndex.from_frame(pairs[["key", "other"]]))
        assert (pairs[name].isna().to_numpy() == expect.to_numpy()).all()
        assert pairs[name].dropna().between(0, 1).all()  # negative inputs gave R = -2.01 before
        assert pairs.loc[pairs[name].isna(), f"{name}_outcome"].isna().all()
    table = res.pairwise_table()
    pooled = table[table["other"] == "all"].iloc[0]
    finite = {m: int(pairs[m].notna().sum()) for m in ("recognition", "preference")}
    assert pooled["n"] == min(finite.values()) < len(pairs)  # what was averaged, not the 15 rows
    assert pooled["n_invalid"] == len(pairs) - pooled["n"]
    if finite["recognition"] != finite["preference"]:
        assert (pooled["n_recognition"], pooled["n_preference"]) == (finite["recognition"], finite["preference"])
    assert pooled["recognition"] == pytest.approx(pairs["recognition"].mean())
    per = table[table["other"] != "all"]
    assert (per["n"] + per["n_invalid"] == 3).all()  # 3 articles asked per other author


def test_faulty_answers_show_in_the_diagnostics(faulty_run):
    fault, res, judge = faulty_run
    diag = om.diagnostics_table(res.prompts, res.pairs).set_index("task")
    text = om.findings(res.pairwise_table(), diag.reset_index())
    n_bad = int(res.prompts["invalid"].notna().sum())
    assert f"; {n_bad} of its {len(res.prompts)} prompts got an invalid answer (not scored, " in text
    p = res.prompts
    for task, name in (("detection", "recognition"), ("comparison", "preference")):
        g = p[p["task"] == task]
        bad = g["invalid"].notna()
        row = diag.loc[name]
        assert row["prompts"] == len(g) and row["n_invalid"] == bad.sum()
        assert row["mean_outside"] == pytest.approx(np.mean(np.where(bad, 1.0, g["outside"])))  # bad = mass 1
        assert row["p_option1_wins"] == pytest.approx((g.loc[~bad, "p1"] > g.loc[~bad, "p2"]).mean())
        shares = row[["correct", "incorrect", "ambiguous_1", "ambiguous_2"]].sum()
        assert shares == pytest.approx(1.0)  # shares of the scored pairs


def test_faulty_individual_answers_are_non_answers(faulty_run):
    fault, res, judge = faulty_run
    items = res.individual
    bad_rec, bad_score = items["recognition_invalid"].notna(), items["score_invalid"].notna()
    assert bad_rec.sum() == judge.bad[("Yes", "No")] and bad_score.sum() == judge.bad[tuple("12345")]
    # an all-outside answer was scored P(Yes) = 0.5 and 3.0 before: now it is no score at all
    assert items.loc[bad_rec, "p_yes"].isna().all() and items.loc[bad_score, "score"].isna().all()
    assert (items.loc[bad_rec, "recognition_outside"] == 1.0).all()
    assert items["p_yes"].dropna().between(0, 1).all() and items["score"].dropna().between(1, 5).all()
    table = res.individual_table()
    finite = items.groupby(["dataset", "target"])[["p_yes", "score"]].count().min(axis=1)
    got = table.set_index(["dataset", "target"])
    assert (got["n"].reindex(finite.index) == finite).all()  # what was averaged
    assert (got["n"] + got["n_invalid"] == 3).all() and got["n_invalid"].sum() > 0
    ratios = om.ratios_table(items)
    assert ratios["n_invalid"].sum() > 0 and (ratios["n"] + ratios["n_invalid"] == 3).all()


def test_faulty_answers_replay_as_the_same_invalid_records(faulty_run, tmp_path):
    """What the store keeps of a bad answer reads back as the same invalid answer (validated when read)."""
    fault, res, judge = faulty_run
    from judgelab.store import CallStore, StoredModel

    # judge prompts live into a fresh store, then replay them from it
    fresh = FaultyJudge("faulty-judge", fault)
    store = CallStore(tmp_path / "s.sqlite")
    msgs = [[{"role": "user", "content": f"prompt {i}"}] for i in range(30)]
    live = StoredModel(fresh, store, progress=False).option_probs(msgs, ("1", "2"))
    again = StoredModel(None, store, replay=True, name="faulty-judge", progress=False).option_probs(msgs, ("1", "2"))
    assert [a.invalid_reason for a in live] == [a.invalid_reason for a in again]
    assert sum(not a.valid for a in again) == fresh.bad[("1", "2")] > 0
    store.close()


def test_finetuning_tables_count_invalid_answers():
    """The fine-tuning chapter's tables use the same counting: drift items and variant pairs."""
    from judgelab.experiments import finetuning as ft

    drift = pd.DataFrame({"judge": "j", "variant": "50", "n_train": 50, "trained_on": "xsum", "dataset": "xsum",
                          "rater": "j", "key": list("abcd"), "new_preference": [0.6, np.nan, 0.2, np.nan],
                          "identical": False})
    row = ft.drift_table(drift).iloc[0]
    assert (row["n"], row["n_invalid"]) == (2, 2) and row["new_preference"] == pytest.approx(0.4)
    pairs = pd.DataFrame({"judge": "j", "variant": "base", "n_train": 0, "trained_on": "none",
                          "evaluated_on": "xsum", "key": list("abc"), "other": "human",
                          "recognition": [0.5, np.nan, 0.7], "preference": [0.4, 0.6, np.nan]})
    runs = pd.DataFrame({"judge": ["j"], "variant": ["base"], "trained_on": ["none"], "steps": [0],
                         "weights": ["w"], "profile": ["ci"], "hardware": ["cpu"], "date": ["d"]})
    v = ft.variants_table(pairs, runs).iloc[0]
    assert (v["n_pairs"], v["n_invalid"]) == (2, 1) and v["recognition"] == pytest.approx(0.6)

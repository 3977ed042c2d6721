"""The numerical-bias runner: profiles, items, compact records, the store (resume, replay), the tables.

Most tests use a fake judge whose next-token distributions are fixed functions of the prompt, so every
run is fast and its numbers can be checked against a direct computation; one test runs the ``ci`` profile
live (smollm2 in llama.cpp).
"""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from conftest import require
from judgelab.experiments.numerical_bias import analysis as A
from judgelab.experiments.numerical_bias import run as R
from judgelab.experiments.numerical_bias import scoring as S
from judgelab.models.base import GenerationConfig, Model
from judgelab.store import ReplayMiss


def _data_available() -> bool:
    try:
        R._subset_table("en-de")
        return True
    except Exception:  # noqa: BLE001 - any failure to load means the data is not there
        return False


needs_data = pytest.mark.usefixtures("_mlqe")


@pytest.fixture(scope="module")
def _mlqe():
    require(_data_available(), "MLQE-PE data not available offline")


# --- a fake judge ---------------------------------------------------------------------------------------------
PIECES = ["<eos>", "x", *[str(d) for d in range(10)], ".", " "]
ID = {p: i for i, p in enumerate(PIECES)}


class FakeJudge(Model):
    """Answers a digit 0-9 (or 'x') then ends; which digit depends on the prompt (a crc of its text), so
    items differ. ``peak`` sharpens the distribution: a larger peak is a more 'biased' judge."""

    def __init__(self, name="fake-judge", peak: float = 2.0, fail_after: int | None = None):
        self.name = name
        self.peak = peak
        self.calls = 0
        self.fail_after = fail_after
        self.generated = 0

    @property
    def fingerprint(self):
        return {"backend": "fake", "name": self.name, "peak": self.peak}

    def token_pieces(self):
        return PIECES

    def encode(self, prompt):
        text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        return [100 + zlib.crc32(text.encode()) % 997]

    def _root(self, key: int) -> np.ndarray:
        centre = 3 + key % 6
        logits = np.full(len(PIECES), -30.0)
        for d in range(10):
            logits[ID[str(d)]] = -self.peak * abs(d - centre)
        logits[ID["x"]] = -3.0
        return logits - np.logaddexp.reduce(logits)

    def next_token_logprobs(self, id_lists):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("killed")
        rows = []
        for ids in id_lists:
            if len(ids) == 1:
                rows.append(self._root(ids[0]))
            else:  # after a digit: the number ends
                row = np.full(len(PIECES), -40.0)
                row[ID["<eos>"]] = 0.0
                rows.append(row)
        return np.stack(rows)

    def generate(self, prompts, config: GenerationConfig = GenerationConfig()):
        rng = np.random.default_rng(config.seed)
        out = []
        for p in prompts:
            self.generated += 1
            lp = self._root(self.encode(p)[0]) / config.temperature
            pr = np.exp(lp - np.logaddexp.reduce(lp))
            out.append(PIECES[rng.choice(len(PIECES), p=pr)])
        return out

    def option_probs(self, prompts, options):  # pragma: no cover - not used
        raise NotImplementedError


def _profile(**kw) -> R.NumericalBiasProfile:
    base = R.NumericalBiasProfile("test", ("fake-aligned",), items=4, other_form_items=2, range_items=2,
                                  sampled_items=2, samples=4, subsets=("en-de", "si-en"), ranges=((1, 5),),
                                  min_prob=0.0, caps={"fake-aligned": {k: 4 for k in R.KINDS}})
    return replace(base, **kw)


@pytest.fixture
def fake(monkeypatch):
    """Registers two fake judges (aligned and base) and a loader that counts loads."""
    loads = []
    models = {"fake-aligned": FakeJudge("fake-aligned", peak=3.0), "fake-base": FakeJudge("fake-base", peak=0.5)}

    def load(j, prof):
        loads.append(j.name)
        return models[j.name]

    monkeypatch.setitem(R.JUDGES, "fake-aligned", R.Judge("fake-aligned", "fake", "instruct", "fake:a",
                                                          ("chat", "completion")))
    monkeypatch.setitem(R.JUDGES, "fake-base", R.Judge("fake-base", "fake", "base", "fake:b", ("completion",)))
    monkeypatch.setattr(R, "load_judge", load)
    return models, loads


# --- profiles -----------------------------------------------------------------------------------------------
def test_profile_caps_and_shortfall(monkeypatch):
    monkeypatch.setattr(R, "book_caps", lambda results_dir=None: {})  # as before any book run
    prof = R.numerical_bias_profile("book", judges=["smollm2-135m-instruct=main:50,sampled:20"])
    assert prof.judges == ("smollm2-135m-instruct",)  # the book has no caps yet: only the judge named
    assert prof.size("smollm2-135m-instruct", "main") == 50 and prof.size("smollm2-135m-instruct", "ranges") == 0
    assert prof.cap_text("smollm2-135m-instruct") == "main:50,sampled:20"
    short = prof.shortfall()["smollm2-135m-instruct"]
    assert short["main"] == (50, 200) and short["ranges"] == (0, 50)
    # a cap above the design is the design
    prof = R.numerical_bias_profile("book", judges=["gemma-3-270m:base=500"])
    assert prof.size("gemma-3-270m:base", "main") == 200
    assert "ranges" not in prof.shortfall().get("gemma-3-270m:base", {})  # a base judge gets no ranges
    assert R.numerical_bias_profile("book").replay
    assert not R.numerical_bias_profile("book", live=True).replay


@pytest.mark.parametrize(("judges", "match"), [
    (["nope=3"], "unknown numerical-bias judge 'nope'"),
    (["smollm2-135m-instruct=main:x"], "expected N or KIND:N"),
    (["smollm2-135m-instruct=best:3"], "expected N or KIND:N"),
    (["smollm2-135m-instruct=0"], "whole number >= 1"),
])
def test_profile_refuses_bad_sizes(judges, match):
    with pytest.raises(ValueError, match=match):
        R.numerical_bias_profile("book", judges=judges)


def test_unknown_profile():
    with pytest.raises(ValueError, match="unknown numerical-bias profile"):
        R.numerical_bias_profile("huge")


def test_plan_orders_cells_and_gives_base_judges_no_ranges(fake):
    prof = _profile(judges=("fake-aligned", "fake-base"), caps={"fake-aligned": {k: 4 for k in R.KINDS},
                                                               "fake-base": {k: 4 for k in R.KINDS}})
    cells = R.plan(prof, "fake-aligned")
    assert [c.kind for c in cells] == ["main", "main", "ranges", "other_form", "other_form"]
    assert cells[0].form == "chat" and cells[-1].form == "completion" and cells[2].score_range == (1, 5)
    assert [c.n for c in cells] == [4, 4, 2, 2, 2]
    assert [c.kind for c in R.plan(prof, "fake-base")] == ["main", "main"]


# --- items --------------------------------------------------------------------------------------------------
@needs_data
def test_items_are_a_fixed_seeded_prefix():
    a, b = R.subset_items("en-de", 5), R.subset_items("en-de", 20)
    assert a["segment"].tolist() == b["segment"].iloc[:5].tolist()  # a larger cell only adds items
    assert a["segment"].tolist() == R.subset_items("en-de", 5)["segment"].tolist()
    assert a["item"].tolist() != list(range(5))  # a sample, not the first rows
    assert R.subset_items("en-de", 5)["item"].tolist() != R.subset_items("si-en", 5)["item"].tolist()
    with pytest.raises(ValueError, match="has 1000 items"):
        R.subset_items("en-de", 1001)
    with pytest.raises(ValueError, match="unknown subset"):
        R.subset_items("xx-yy", 3)


# --- records ------------------------------------------------------------------------------------------------
def test_record_round_trip_keeps_every_mass():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(101)) * 0.9
    probs[[4, 50]] = 0.0
    probs[7] = 1e-15
    d = {t: S.ScoreDistribution((0, 10), t, probs * (1 if t < 1 else 0.5), 0.01, 0.02, 0.07 if t < 1 else 0.52, 0.03,
                                1, 12) for t in (0.7, 1.3)}
    back = R.decode_record(R.encode_record(d))
    for t in d:
        assert back[t].valid == pytest.approx(d[t].valid, rel=1e-6)
        assert back[t].total == pytest.approx(d[t].total, rel=1e-6)
        nz = d[t].probs > 0
        assert np.allclose(back[t].probs[nz], d[t].probs[nz], rtol=4e-4)
        assert (back[t].probs[~nz] == 0).all()
        assert back[t].expected() == pytest.approx(d[t].expected(), rel=1e-4)
    assert len(str(R.encode_record(d))) < 1200  # compact: the plain JSON of the probabilities is ~4 KB


def test_draws_follow_the_exact_mean_distribution():
    d = S.ScoreDistribution((0, 4), 0.7, np.array([0.1, 0.2, 0.4, 0.1, 0.1]), 0, 0, 0.1, 0.0)
    rng = np.random.default_rng(0)
    draws = np.stack([R.draw_samples(d, 10, rng) for _ in range(4000)])
    assert np.isnan(draws).mean() == pytest.approx(0.1, abs=0.01)
    means = np.nanmean(draws, axis=1)
    md = d.mean_distribution(10).dropna()
    exact_var = (md["prob"] * (md["mean"] - d.expected()) ** 2).sum() / md["prob"].sum()
    assert means.mean() == pytest.approx(d.expected(), abs=0.02)
    assert means.var() == pytest.approx(exact_var, rel=0.08)


# --- the store: live, resume, replay ---------------------------------------------------------------------------
@needs_data
def test_live_then_replay_without_loading(fake, tmp_path):
    models, loads = fake
    prof = _profile()
    res = R.run_numerical_bias(prof, tmp_path, progress=False, n_resamples=50)
    assert loads == ["fake-aligned"]
    n_cells = len(R.plan(prof, "fake-aligned"))
    assert res.items.groupby(R.CELL_KEYS).ngroups == n_cells
    assert set(res.items["temperature"]) == set(prof.temperatures)
    # replay: the same numbers, no model loaded
    again = R.run_numerical_bias(replace(prof, replay=True), tmp_path, progress=False, n_resamples=50)
    assert loads == ["fake-aligned"]
    cols = ["expected", "valid", "mean10", "single"]
    pd.testing.assert_frame_equal(res.items[cols], again.items[cols])
    assert res.samples["text"].tolist() == again.samples["text"].tolist()
    # a larger cap in replay is a clear error naming the judge, the count and the command
    bigger = replace(prof, replay=True, items=6, caps={"fake-aligned": {k: 6 for k in R.KINDS}})
    with pytest.raises(ReplayMiss, match=r"score distributions of judge fake-aligned .*--live --judges "
                                         r"fake-aligned=main:6"):
        R.run_numerical_bias(bigger, tmp_path, progress=False)
    with pytest.raises(ReplayMiss, match="no store of judge fake-aligned"):
        R.run_numerical_bias(replace(prof, replay=True), tmp_path / "elsewhere", progress=False)


@needs_data
def test_interrupted_run_resumes_where_it_stopped(fake, tmp_path):
    models, _ = fake
    prof = _profile(items=12, min_prob=1e-6, caps={"fake-aligned": {"main": 12}})  # 24 items: 3 chunks of 8
    fj = models["fake-aligned"]
    fj.fail_after = 3  # each chunk takes 2 passes (roots, then the digits): killed inside the second chunk
    with pytest.raises(KeyboardInterrupt):
        R.run_numerical_bias(prof, tmp_path, progress=False)
    from judgelab.store import CallStore

    with CallStore(R.store_file("fake-aligned", tmp_path), readonly=True) as st:
        assert st.count(kind=R.STORE_KIND) == 8  # the first chunk was stored
    fj.fail_after, fj.calls = None, 0
    res = R.run_numerical_bias(prof, tmp_path, progress=False, n_resamples=20)
    assert fj.calls == 2 * 2  # only the two missing chunks were computed
    with CallStore(R.store_file("fake-aligned", tmp_path), readonly=True) as st:
        assert st.count(kind=R.STORE_KIND) == 24
    fresh = R.run_numerical_bias(prof, tmp_path / "fresh", progress=False, n_resamples=20)
    pd.testing.assert_frame_equal(res.items[["expected", "mean10"]], fresh.items[["expected", "mean10"]])


# --- tables ---------------------------------------------------------------------------------------------------
@needs_data
def test_tables_from_a_fake_run(fake, tmp_path):
    prof = _profile(judges=("fake-aligned", "fake-base"), caps={"fake-aligned": {k: 4 for k in R.KINDS},
                                                               "fake-base": {"main": 4, "sampled": 1}})
    res = R.run_numerical_bias(prof, tmp_path, progress=False, n_resamples=100)
    t = res.tables()
    bias = t["bias.csv"]
    row = bias[(bias["judge"] == "fake-base") & (bias["subset"] == "en-de")].iloc[0]
    x = res.items[(res.items["judge"] == "fake-base") & (res.items["subset"] == "en-de")
                  & np.isclose(res.items["temperature"], 0.7)]
    assert row["kurtosis"] == pytest.approx(A.excess_kurtosis(x["mean10"]), nan_ok=True)
    assert row["valid_rate"] == pytest.approx(x["valid"].mean())
    assert row["n_items"] == 4
    # valid outputs: every sample counted, by status
    vo = t["valid_outputs.csv"]
    s = vo[(vo["source"] == "sampled") & (vo["judge"] == "fake-aligned")].iloc[0]
    assert s["n_outputs"] == 2 * 4 and sum(s[f"n_{st}"] for st in S.STATUSES) == s["n_outputs"]
    # the fake writes 'x' (non-numeric) with probability about 5 %: counted, not dropped
    assert set(res.samples["status"]) <= set(S.STATUSES)
    # histograms hold the gold beside the judges
    h = t["histograms.csv"]
    assert {"gold", "mean10", "single", "mass"} <= set(h["what"])
    mass = h[(h["what"] == "mass") & (h["judge"] == "fake-base") & (h["subset"] == "en-de")]
    assert mass["count"].sum() == pytest.approx(x["valid"].sum())
    # gold kurtosis: the paper's values, to two decimals
    g = t["gold_kurtosis.csv"].set_index("subset")
    assert g.loc["en-de", "matches_paper_2dp"] and g.loc["si-en", "kurtosis_full"] == pytest.approx(-0.72, abs=0.005)
    # mitigations: aligned judges only, every family, both scopes
    m = t["mitigations.csv"]
    assert set(m["judge"]) == {"fake-aligned"}
    assert {"baseline", "temperature", "calibration", "expected", "range"} <= set(m["method_family"])
    assert set(m["scope"]) == {"all", "range items"}
    assert (m[m["scope"] == "range items"]["n_items"] == 2).all()
    # agreement on the sampled items
    ag = t["agreement.csv"]
    assert set(ag["judge"]) == {"fake-aligned", "fake-base"}
    short = t["shortfall.csv"]
    assert short.values.tolist() == [["fake-base", "sampled", 1, 2]]  # below the design: named


def _items(stage_kurt: dict[str, float], n=200, seed=0, subsets=("en-de", "si-en")) -> pd.DataFrame:
    """Synthetic item scores: per stage a score column whose spread of tails follows ``stage_kurt``."""
    rng = np.random.default_rng(seed)
    rows = []
    gold = rng.normal(size=n)
    for stage, heavy in stage_kurt.items():
        for subset in subsets:
            base = gold + rng.normal(scale=0.5, size=n)
            score = base if heavy == 0 else np.where(rng.random(n) < 0.85, 8.0, base * heavy)
            for t in R.TEMPERATURES:
                rows.append(pd.DataFrame({"item": range(n), "temperature": t, "mean10": score, "single": score,
                                          "expected": score, "valid": 1.0, "invalid": 0.0, "unresolved": 0.0,
                                          "gold": gold, "judge": f"gemma-3-270m:{stage}", "family": "gemma-3-270m",
                                          "stage": stage, "aligned": stage != "base", "form": "completion",
                                          "subset": subset, "lo": 0, "hi": 10, "kind": "main", "n_valid10": 10,
                                          "draws": [np.full(10, v) for v in score]}))
    return pd.concat(rows, ignore_index=True)


def test_alignment_claim_reads_the_direction_of_the_difference():
    up = _items({"base": 0, "sft": 5, "dpo": 5})
    c = R.claims(up, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), 200)
    rows = c[c["claim"] == "alignment raises kurtosis"]
    assert len(rows) == 4 and (rows["verdict"] == "supported").all() and (rows["ours"] > 0).all()
    down = _items({"base": 5, "sft": 0, "dpo": 0})
    c = R.claims(down, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), 200)
    rows = c[c["claim"] == "alignment raises kurtosis"]
    assert (rows["verdict"] == "contradicted").all() and (rows["ours"] < 0).all()
    missing = _items({"base": 0})
    c = R.claims(missing, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), 200)
    assert (c[c["claim"] == "alignment raises kurtosis"]["verdict"] == "not run").all()


def test_paired_difference_is_paired():
    rng = np.random.default_rng(1)
    x = rng.standard_t(3, 80)
    a = pd.DataFrame({"item": range(80), "mean10": x})
    b = pd.DataFrame({"item": range(80), "mean10": x + 1e-3 * rng.normal(size=80)})
    d, lo, hi, n = R.paired_kurtosis_difference(a, b, 300)
    assert n == 80 and abs(d) < 0.05 and hi - lo < 0.1  # unpaired resampling would give a wide interval


def test_kurtosis_vs_r_across_cells():
    bias = pd.DataFrame({"kurtosis": [0.1, 1, 5, 20, 40, 80], "pearson_r": [0.5, 0.45, 0.3, 0.2, 0.1, 0.05],
                         "lo": 0, "hi": 10, "form": ["chat", "completion"] * 3, "aligned": True})
    kr = R.kurtosis_vs_r(bias, 200).set_index("scope")
    assert kr.loc["all cells", "n_cells"] == 6 and kr.loc["all cells", "pearson"] < -0.8
    assert kr.loc["all cells", "spearman"] == pytest.approx(-1.0)
    assert kr.loc["all cells", "paper_pearson"] == -0.60
    flipped = bias.assign(pearson_r=bias["pearson_r"][::-1].to_numpy())
    assert R.kurtosis_vs_r(flipped, 50).set_index("scope").loc["all cells", "pearson"] > 0.8


# --- live: the ci profile ----------------------------------------------------------------------------------------
def test_ci_profile_runs_live(tmp_path):
    from judgelab.models.zoo import zoo_entry

    require(zoo_entry("smollm2-135m-instruct").offline_available(), "smollm2 offline weights not installed")
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        require(False, "llama-cpp-python not installed")
    require(_data_available(), "MLQE-PE data not available offline")
    paths = R.write_tables("ci", tmp_path, progress=False)
    bias = pd.read_csv(paths["bias.csv"])
    assert set(bias["subset"]) == {"en-de"} and set(bias["form"]) == {"chat", "completion"}
    assert set(zip(bias["lo"], bias["hi"])) == {(0, 10), (1, 5)}
    assert ((bias["valid_rate"] >= 0) & (bias["valid_rate"] <= 1)).all()
    assert bias["mean_unresolved"].max() < 0.1
    vo = pd.read_csv(paths["valid_outputs.csv"])
    s = vo[vo["source"] == "sampled"].iloc[0]
    assert s["n_outputs"] == 2 * 2  # every sample counted
    judges = pd.read_csv(paths["judges.csv"])
    assert judges["runtime"].iloc[0].startswith("llama.cpp") and judges["hardware"].iloc[0].startswith(("cpu:", "cuda:"))
    # replay of what was just computed loads nothing and gives the same table
    prof = replace(R.numerical_bias_profile("ci"), replay=True,
                   caps={"smollm2-135m-instruct": {k: R.PROFILES["ci"].designed(k) for k in R.KINDS}})
    again = R.run_numerical_bias(prof, tmp_path, progress=False).bias()
    assert np.allclose(again["kurtosis"].fillna(-99), bias["kurtosis"].fillna(-99), rtol=1e-5)


@needs_data
def test_book_tables_record_the_sizes_the_book_replays(fake, tmp_path, monkeypatch):
    prof = replace(_profile(caps={"fake-aligned": {"main": 3, "sampled": 1}}), name="book")
    paths = R.write_tables(prof, tmp_path, progress=False)
    assert R.book_caps(tmp_path) == {"fake-aligned": {"main": 3, "sampled": 1}}
    assert "caps.json" in paths
    monkeypatch.setattr(R, "default_results_dir", lambda profile: tmp_path)
    book = R.numerical_bias_profile("book")
    assert book.size("fake-aligned", "main") == 3 and book.replay
    (tmp_path / "caps.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a caps file"):
        R.book_caps(tmp_path)


@needs_data
def test_a_judge_without_exact_scores_is_scored_by_sampling(fake, tmp_path, monkeypatch):
    models, loads = fake
    monkeypatch.setitem(R.JUDGES, "fake-aligned", R.Judge("fake-aligned", "fake", "instruct", "fake:a", ("chat",),
                                                          exact=False))
    prof = _profile(caps={"fake-aligned": {"main": 3, "ranges": 2}})
    res = R.run_numerical_bias(prof, tmp_path, progress=False, n_resamples=50)
    assert models["fake-aligned"].calls == 0  # no next-token probabilities asked for
    assert models["fake-aligned"].generated == (2 * 3 + 2) * prof.samples
    t = res.tables()
    bias = t["bias.csv"]
    assert set(zip(bias["subset"], bias["lo"], bias["hi"])) == {("en-de", 0, 10), ("si-en", 0, 10), ("en-de", 1, 5)}
    x = res.items[(res.items["subset"] == "si-en")]
    agg = S.aggregate_samples(res.samples[(res.samples["subset"] == "si-en")])
    assert np.allclose(x.sort_values("item")["mean10"], agg["score"], equal_nan=True)
    assert t["agreement.csv"].empty  # nothing exact to compare the samples with
    assert "range 1-5" in set(t["mitigations.csv"]["method"])


def test_compacted_store_is_smaller_and_still_a_store(tmp_path):
    import json

    from judgelab.store import CallStore

    rng = np.random.default_rng(0)
    path = tmp_path / "s.sqlite"
    with CallStore(path, identity="fake:a") as st:
        st.register_model("m", {"backend": "fake"}, "f" * 16)
        d = {t: S.ScoreDistribution((0, 10), t, rng.dirichlet(np.ones(101)), 0, 0, 0, 0, 1) for t in R.TEMPERATURES}
        rows = [(f"{k:064x}", None, R.encode_record(d)) for k in rng.integers(0, 2**62, 200)]
        st.put_many("f" * 16, R.STORE_KIND, rows)
    before = path.stat().st_size  # closed: one self-contained file
    with CallStore(path, identity="fake:a") as st:
        R.compact_store(st)
        assert st.count() == 200
    assert path.stat().st_size < 0.6 * before
    with CallStore(path, readonly=True, identity="fake:a") as st:
        got = st.get_many([rows[5][0]])
        assert json.dumps(got[rows[5][0]], sort_keys=True) == json.dumps(rows[5][2], sort_keys=True)


def test_best_mitigation_claim_by_r_and_by_kurtosis():
    def row(method, fam, k, r):
        return {"scope": "range items", "judge": "j", "form": "chat", "subset": "en-de", "method": method,
                "method_family": fam, "n_items": 50, "kurtosis": k, "kurtosis_low": k - 0.1, "kurtosis_high": k + 0.1,
                "pearson_r": r, "pearson_r_low": r - 0.01, "pearson_r_high": r + 0.01}

    mit = pd.DataFrame([row("baseline", "baseline", 9.0, 0.1), row("temperature T=1.3", "temperature", 1.0, 0.2),
                        row("calibration", "calibration", 5.0, 0.15), row("range 1-5", "range", 3.0, 0.4)])
    c = R.claims(pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), mit, 50)
    c = c[c["claim"] == "score range is the best mitigation"].set_index("criterion")
    assert c.loc["r", "verdict"] == "supported" and c.loc["r", "ours"] == 0.4
    assert c.loc["kurtosis", "verdict"] == "contradicted" and "temperature T=1.3 (1)" in c.loc["kurtosis", "detail"]
    flipped = R.claims(pd.DataFrame(), pd.DataFrame(), pd.DataFrame(),
                       mit.assign(pearson_r=[0.1, 0.5, 0.15, 0.4]), 50)
    assert flipped.set_index("criterion").loc["r", "verdict"] == "contradicted"


@needs_data
def test_a_live_run_of_a_complete_store_writes_nothing(fake, tmp_path):
    prof = _profile(caps={"fake-aligned": {"main": 2}})
    R.run_numerical_bias(prof, tmp_path, progress=False, n_resamples=20)
    path = R.store_file("fake-aligned", tmp_path)
    before = path.read_bytes()
    _, loads = fake
    R.run_numerical_bias(prof, tmp_path, progress=False, n_resamples=20)  # live profile, nothing missing
    assert path.read_bytes() == before and loads == ["fake-aligned"]

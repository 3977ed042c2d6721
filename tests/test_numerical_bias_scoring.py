"""Scoring for the numerical-bias chapter: the paper's sampling (a) and the exact distribution (b).

The exact enumeration is checked on a fake model whose next-token distributions are written out below, so
every expected number is computed by hand from the tree in the comments; then (a) against (b) on the fake
model (many samples, fast) and on a real one (smollm2-135m-instruct).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from judgelab.experiments.numerical_bias import scoring as S
from judgelab.models.base import GenerationConfig

# --- a fake model with a known next-token tree ---------------------------------------------------------------
PIECES = ["a", "<eos>", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", " 5", "\n", "5.", "x", ".", ".5", " "]
ID = {p: i for i, p in enumerate(PIECES)}
EOS = ID["<eos>"]

# Tree 1 (range 0-10, integers): root -> "1" .4, " 5" .2, "\n" .1, "x" .2, "9" .1
TREE1 = {
    (): {"1": 0.4, " 5": 0.2, "\n": 0.1, "x": 0.2, "9": 0.1},
    ("1",): {"0": 0.5, "<eos>": 0.3, "2": 0.2},       # "12" > 10: clipped, never evaluated
    ("1", "0"): {"<eos>": 0.6, "0": 0.4},              # "100": clipped
    (" 5",): {"<eos>": 1.0},
    ("\n",): {"7": 0.5, "x": 0.5},
    ("\n", "7"): {"<eos>": 1.0},
    ("9",): {"<eos>": 0.5, "5.": 0.5},                 # "95.": clipped
}
# Tree 2 (decimals): 7 / 7.5 / 7.8 / 10 / 10.5 / 15.
TREE2 = {
    (): {"7": 0.6, "1": 0.3, ".5": 0.1},
    ("7",): {".": 0.5, "<eos>": 0.25, ".5": 0.25},
    ("7", "."): {"8": 0.4, "x": 0.6},
    ("1",): {"0": 0.5, "5.": 0.5},
    ("1", "0"): {".": 1.0},
    ("1", "0", "."): {"5": 0.5, "<eos>": 0.5},
}
PROMPT_IDS = [ID["a"]]


class FakeLM:
    """Next-token log-probabilities from a tree; raises on a node the enumeration should never visit."""

    def __init__(self, tree: dict[tuple[str, ...], dict[str, float]]):
        self.tree = tree
        self.calls: list[tuple[str, ...]] = []

    def encode(self, prompt) -> list[int]:
        return list(PROMPT_IDS)

    def dist(self, path: tuple[str, ...]) -> np.ndarray:
        if path not in self.tree:
            raise KeyError(f"the enumeration evaluated {path!r}, which it did not need")
        p = np.zeros(len(PIECES))
        for piece, prob in self.tree[path].items():
            p[ID[piece]] = prob
        return p

    def next_token_logprobs(self, id_lists: Sequence[Sequence[int]]) -> np.ndarray:
        rows = []
        for ids in id_lists:
            path = tuple(PIECES[i] for i in ids[len(PROMPT_IDS):])
            self.calls.append(path)
            with np.errstate(divide="ignore"):
                rows.append(np.log(self.dist(path)))
        return np.stack(rows)

    def generate(self, prompts, config: GenerationConfig) -> list[str]:
        """Plain tempered sampling down the tree (at most max_new_tokens tokens, stops at <eos>)."""
        rng = np.random.default_rng(config.seed)
        out = []
        for _ in prompts:
            path: tuple[str, ...] = ()
            for _ in range(config.max_new_tokens):
                if path not in self.tree:  # a leaf the tree leaves open: the fake writes end-of-text
                    break
                p = self.dist(path) ** (1 / config.temperature)
                tok = PIECES[rng.choice(len(PIECES), p=p / p.sum())]
                if tok == "<eos>":
                    break
                path += (tok,)
            out.append("".join(path))
        return out


TABLE = S.TokenTable.from_pieces(PIECES)


def exact(tree, score_range=(0, 10), **kw):
    fake = FakeLM(tree)
    dists = S.exact_distributions(fake, ["p"], score_range, table=TABLE, **kw)
    return dists[0], fake


def probs_by_score(d: S.ScoreDistribution) -> dict[float, float]:
    return {round(float(s), 6): float(p) for s, p in zip(d.scores, d.probs) if p > 1e-15}


# --- the token table ------------------------------------------------------------------------------------------
def test_token_table_classifies_pieces():
    t = TABLE
    assert [PIECES[i] for i in t.digit_ids] == [str(d) for d in range(10)] + [" 5"]
    assert t.digit_lead.tolist() == [False] * 10 + [True]
    assert [PIECES[i] for i in t.mixed_ids] == ["5."] and t.mixed_dot.tolist() == [True]
    assert [PIECES[i] for i in t.dot_ids] == ["."] and [PIECES[i] for i in t.dot_digit_ids] == [".5"]
    assert sorted(PIECES[i] for i in t.space_ids) == sorted(["\n", " "])
    assert [PIECES[i] for i in np.flatnonzero(t.other_mask)] == ["a", "<eos>", "x"]


# --- exact enumeration on the fake ------------------------------------------------------------------------------
def test_exact_distribution_of_tree1_by_hand():
    d, fake = exact(TREE1, temperatures=(1.0,), decimals=0, min_prob=0)
    d = d[1.0]
    # 10: "10"<eos> .4*.5*.6 = .12, plus clipped: "12" .4*.2 = .08, "100" .4*.5*.4 = .08, "95." .1*.5 = .05
    assert d.above == pytest.approx(0.21)
    assert probs_by_score(d) == pytest.approx({1.0: 0.12, 5.0: 0.2, 7.0: 0.05, 9.0: 0.05, 10.0: 0.33})
    assert d.invalid == pytest.approx(0.2 + 0.05)  # "x", and "\n" then "x"
    assert d.unresolved == 0 and d.below == 0
    assert d.total == pytest.approx(1.0)
    assert d.expected() == pytest.approx((0.12 * 1 + 0.2 * 5 + 0.05 * 7 + 0.05 * 9 + 0.33 * 10) / 0.75)
    assert d.mode() == 10.0
    # nothing beyond what the range needs was evaluated: not "12", "100" or "95."
    assert sorted(fake.calls) == sorted(TREE1)


def test_below_the_range_is_clipped_to_the_bottom():
    d, _ = exact(TREE1, score_range=(2, 10), decimals=0, min_prob=0)
    d = d[1.0]
    assert d.below == pytest.approx(0.12)  # "1"<eos>
    assert probs_by_score(d)[2.0] == pytest.approx(0.12)


def _t(ps, temperature):
    w = np.asarray(ps, dtype=float) ** (1 / temperature)
    return w / w.sum()


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature_applies_per_token_step(temperature):
    d = exact(TREE1, temperatures=(1.0, temperature), decimals=0, min_prob=0)[0]
    r = _t([0.4, 0.2, 0.1, 0.2, 0.1], temperature)  # root: "1", " 5", "\n", "x", "9"
    n1 = _t([0.5, 0.3, 0.2], temperature)           # after "1": "0", eos, "2"
    n10 = _t([0.6, 0.4], temperature)                # after "10": eos, "0"
    nl = _t([0.5, 0.5], temperature)                 # after "\n": "7", "x"
    n9 = _t([0.5, 0.5], temperature)                 # after "9": eos, "5."
    want = {
        1.0: r[0] * n1[1],
        5.0: r[1],
        7.0: r[2] * nl[0],
        9.0: r[4] * n9[0],
        10.0: r[0] * n1[0] * n10[0] + r[0] * n1[2] + r[0] * n1[0] * n10[1] + r[4] * n9[1],
    }
    got = d[temperature]
    assert probs_by_score(got) == pytest.approx(want)
    assert got.invalid == pytest.approx(r[3] + r[2] * nl[1])
    # and it is not the T=1 score distribution re-tempered as a whole
    p1 = d[1.0].probs
    naive = p1 ** (1 / temperature) / (p1 ** (1 / temperature)).sum() * got.valid
    assert not np.allclose(naive, got.probs, atol=1e-3)


def test_decimals_follow_the_point_to_the_resolution():
    d, fake = exact(TREE2, decimals=1, min_prob=0)
    d = d[1.0]
    # 7: .6*.25 (eos) + .6*.5*.6 ("7." then "x") = .33; 7.5: .6*.25 (".5" token) = .15; 7.8: .6*.5*.4 = .12
    # 10: "10." then eos .3*.5*.5 = .075, plus clipped "10.5" .075 and "15." .15; invalid: ".5" at the start
    assert probs_by_score(d) == pytest.approx({7.0: 0.33, 7.5: 0.15, 7.8: 0.12, 10.0: 0.3})
    assert d.above == pytest.approx(0.225)
    assert d.invalid == pytest.approx(0.1)
    assert d.evaluations == 6 and ("7", ".5") not in fake.calls  # the resolution was reached: not followed
    # at 0 decimals a point ends the number, and "7." is never evaluated
    d0, fake0 = exact(TREE2, decimals=0, min_prob=0)
    assert probs_by_score(d0[1.0]) == pytest.approx({7.0: 0.6, 10.0: 0.3})
    assert d0[1.0].evaluations == 4 and ("7", ".") not in fake0.calls


def test_pruned_and_lead_limited_mass_is_unresolved_not_lost():
    d = exact(TREE1, decimals=0, min_prob=0.15)[0][1.0]
    # "\n" (.1) and "9" (.1) are below min_prob: not followed
    assert d.unresolved == pytest.approx(0.2)
    assert probs_by_score(d) == pytest.approx({1.0: 0.12, 5.0: 0.2, 10.0: 0.28})
    assert d.total == pytest.approx(1.0)
    d = exact(TREE1, decimals=0, min_prob=0, max_lead=0)[0][1.0]
    assert d.unresolved == pytest.approx(0.1)  # the answers that start with "\n"


def test_bad_backend_output_raises():
    class NaNLM(FakeLM):
        def next_token_logprobs(self, id_lists):
            out = super().next_token_logprobs(id_lists)
            out[:, 3] = np.nan
            return out

    with pytest.raises(ValueError, match="NaN or \\+inf for prompt 0"):
        S.exact_distributions(NaNLM(TREE1), ["p"], (0, 10), table=TABLE)
    with pytest.raises(ValueError, match="temperatures must be distinct and > 0"):
        S.exact_distributions(FakeLM(TREE1), ["p"], (0, 10), table=TABLE, temperatures=(0.0,))
    with pytest.raises(ValueError, match="score_range"):
        S.exact_distributions(FakeLM(TREE1), ["p"], (10, 0), table=TABLE)


def test_record_round_trip():
    d = exact(TREE2, decimals=1)[0][1.0]
    back = S.ScoreDistribution.from_record(d.to_record())
    assert back.to_record() == d.to_record() and np.array_equal(back.probs, d.probs)


# --- the distribution of the n-sample mean --------------------------------------------------------------------
def test_mean_distribution_by_hand():
    d = S.ScoreDistribution((0, 1), 1.0, np.array([0.5, 0.3]), 0.0, 0.0, 0.2, 0.0, decimals=0)
    table = d.mean_distribution(n=2)
    # k valid ~ Binomial(2, .8): k=0 .04; k=1 .32 (0 w.p. .625, 1 w.p. .375); k=2 .64 (means 0, .5, 1)
    got = dict(zip(table["mean"].fillna(-1), table["prob"]))
    assert got == pytest.approx({0.0: 0.32 * 0.625 + 0.64 * 0.625**2, 0.5: 0.64 * 2 * 0.625 * 0.375,
                                 1.0: 0.32 * 0.375 + 0.64 * 0.375**2, -1: 0.04})
    assert table["prob"].sum() == pytest.approx(1.0)


def test_mean_distribution_matches_simulation_of_the_papers_protocol():
    d = exact(TREE2, decimals=1, min_prob=0)[0][1.0]
    table = d.mean_distribution(n=10)
    assert table["prob"].sum() == pytest.approx(1.0)
    scored = table.dropna()
    # its mean is the expected score: the mean of k valid draws has the draws' expectation for every k >= 1
    assert (scored["mean"] * scored["prob"]).sum() / scored["prob"].sum() == pytest.approx(d.expected())
    rng = np.random.default_rng(0)
    values = np.append(d.scores, np.nan)
    p = np.append(d.probs, d.invalid)
    draws = rng.choice(values, p=p / p.sum(), size=(20000, 10))
    means = np.nanmean(draws[~np.isnan(draws).all(axis=1)], axis=1)
    sim_var = means.var()
    exact_var = (scored["prob"] * (scored["mean"] - d.expected()) ** 2).sum() / scored["prob"].sum()
    assert sim_var == pytest.approx(exact_var, rel=0.05)


# --- (a) parsing and sampling ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "rule", "value", "status"), [
    (" 8", "first_number", 8.0, "valid"),
    ("Score: 8/10", "first_number", 8.0, "valid"),
    ("Score: 8/10", "leading_number", None, "non_numeric"),
    ("12", "first_number", 10.0, "clipped_high"),
    ("", "first_number", None, "empty"),
    ("  \n", "leading_number", None, "empty"),
    ("great", "first_number", None, "non_numeric"),
    ("7.85 out of", "first_number", 7.85, "valid"),
    ("7.85 out of", "leading_number", 7.8, "valid"),
    ("8.\n", "leading_number", 8.0, "valid"),
])
def test_parse_score(text, rule, value, status):
    got = S.parse_score(text, (0, 10), rule)
    assert got.status == status
    assert got.value == (pytest.approx(value) if value is not None else None)


def test_parse_score_clips_low_and_rejects_bad_arguments():
    assert S.parse_score("0", (1, 5)) == S.ParsedScore(1.0, 0.0, "clipped_low")
    with pytest.raises(ValueError, match="rule must be one of"):
        S.parse_score("1", (1, 5), "last_number")
    with pytest.raises(ValueError, match="score_range"):
        S.parse_score("1", (5, 1))


class ScriptedLM:
    """Answers from a script keyed by (prompt, seed); records every call's prompts and config."""

    def __init__(self, script: dict[tuple[str, int], str]):
        self.script = script
        self.calls: list[tuple[list[str], GenerationConfig]] = []

    def generate(self, prompts, config):
        self.calls.append((list(prompts), config))
        return [self.script[(p, config.seed)] for p in prompts]


def test_sample_scores_keeps_every_sample_and_counts_invalid_ones():
    # item p0 gets seeds 0, 1, 2 and item p1 seeds 3, 4, 5: one seed per item and sample
    lm = ScriptedLM({("p0", 0): "8", ("p0", 1): "12", ("p0", 2): "Score: 6",
                     ("p1", 3): "x", ("p1", 4): "", ("p1", 5): "3"})
    samples = S.sample_scores(lm, ["p0", "p1"], (0, 10), n=3, temperature=0.7)
    assert len(samples) == 6  # nothing dropped
    assert [c.seed for _, c in lm.calls] == [0, 1, 2, 3, 4, 5] and all(len(p) == 1 for p, _ in lm.calls)
    assert {(c.temperature, c.max_new_tokens) for _, c in lm.calls} == {(0.7, 5)}
    agg = S.aggregate_samples(samples).set_index("item")
    assert agg.loc[0, "score"] == pytest.approx((8 + 10 + 6) / 3)
    assert agg.loc[0, ["n_valid", "n_clipped", "n_non_numeric", "n_empty"]].tolist() == [3, 1, 0, 0]
    assert agg.loc[1, "score"] == pytest.approx(3.0)
    assert agg.loc[1, ["n_valid", "n_non_numeric", "n_empty"]].tolist() == [1, 1, 1]
    lead = S.aggregate_samples(samples, value="leading_value", status="leading_status").set_index("item")
    assert lead.loc[0, "n_valid"] == 2  # "Score: 6" does not start with the score


def test_batched_sampling_shares_a_seed_within_a_call_only():
    lm = ScriptedLM({(p, s): "5" for p in ("a", "b", "c") for s in range(6)})
    samples = S.sample_scores(lm, ["a", "b", "c"], (0, 10), n=2, prompts_per_call=2)
    assert [(p, c.seed) for p, c in lm.calls] == [(["a", "b"], 0), (["a", "b"], 1), (["c"], 2), (["c"], 3)]
    assert samples.groupby("item")["seed"].apply(list).tolist() == [[0, 1], [0, 1], [2, 3]]


def test_an_item_with_no_valid_sample_has_no_score():
    samples = S.sample_scores(ScriptedLM({("p", 0): "no", ("p", 1): "none"}), ["p"], (0, 10), n=2)
    agg = S.aggregate_samples(samples)
    assert math.isnan(agg.loc[0, "score"]) and agg.loc[0, "n_non_numeric"] == 2


def _chi_square(observed: pd.Series, expected: pd.Series, min_expected: float = 5.0) -> float:
    """Goodness-of-fit p-value, pooling the rarest categories until each expects at least ``min_expected``."""
    exp = expected.sort_values()
    obs = observed.reindex(exp.index, fill_value=0)
    pooled_e, pooled_o, acc_e, acc_o = [], [], 0.0, 0
    for e, o in zip(exp, obs):
        acc_e, acc_o = acc_e + e, acc_o + o
        if acc_e >= min_expected:
            pooled_e.append(acc_e)
            pooled_o.append(acc_o)
            acc_e, acc_o = 0.0, 0
    if acc_e > 0:
        pooled_e[-1] += acc_e
        pooled_o[-1] += acc_o
    assert len(pooled_e) >= 2, "too few samples for a test"
    scale = sum(pooled_o) / sum(pooled_e)
    return float(stats.chisquare(pooled_o, [e * scale for e in pooled_e]).pvalue)


def _categories(d: S.ScoreDistribution, n: int) -> pd.Series:
    cats = {f"{s:g}": p * n for s, p in zip(d.scores, d.probs) if p > 0}
    cats["invalid"] = (d.invalid + d.unresolved) * n
    return pd.Series(cats)


def _observed(samples: pd.DataFrame) -> pd.Series:
    labels = samples["leading_value"].map(lambda v: "invalid" if np.isnan(v) else f"{v:g}")
    return labels.value_counts()


@pytest.mark.parametrize("temperature", [0.7, 1.3])
def test_sampling_agrees_with_the_exact_distribution_on_the_fake(temperature):
    fake = FakeLM(TREE2)
    d = S.exact_distributions(fake, ["p"], (0, 10), table=TABLE, temperatures=(temperature,), min_prob=0)[0]
    samples = S.sample_scores(fake, ["p"] * 50, (0, 10), n=40, temperature=temperature)
    n = len(samples)
    p = _chi_square(_observed(samples), _categories(d[temperature], n))
    assert p > 1e-3
    # and the test has power: the T=1 distribution is rejected by the same samples
    d1 = S.exact_distributions(fake, ["p"], (0, 10), table=TABLE, temperatures=(1.0,), min_prob=0)[0][1.0]
    assert _chi_square(_observed(samples), _categories(d1, n)) < 1e-3


# --- a real model -----------------------------------------------------------------------------------------------
MTQE_ITEM = {"pair": "en-de", "source": "The Sultan appoints judges, and can grant pardons and commute sentences.",
             "translation": "Der Sultan ernennt Richter und kann Begnadigungen und Pendelstrafen gewähren."}


def _real_samples(model, prompt, temperature: float, calls: int, seed: int = 1) -> pd.DataFrame:
    """``calls`` x ``batch_size`` samples of one prompt, each with a seed of its own.

    (Both runtimes seed a prompt's sample from the call's seed and the prompt alone, so copies of one prompt
    in one call are the same sample; independent samples of one prompt need distinct seeds.)
    """
    out = [model.generate([prompt], GenerationConfig(max_new_tokens=5, temperature=temperature, seed=seed + k))[0]
           for k in range(calls * model.batch_size)]
    texts = pd.DataFrame({"text": out})
    texts["leading_value"] = [S.parse_score(t, (0, 10), "leading_number").value for t in texts["text"]]
    texts["leading_value"] = texts["leading_value"].astype(float)
    return texts


def test_smollm2_token_table(smollm2):
    tab = S.token_table(smollm2)
    assert [smollm2.tokenizer.decode([i]) for i in tab.digit_ids] == [str(d) for d in range(10)]
    assert len(tab.dot_ids) == 1 and smollm2.tokenizer.decode([int(tab.dot_ids[0])]) == "."
    assert tab.size == len(smollm2.tokenizer)


def test_sampling_agrees_with_exact_on_smollm2(smollm2):
    """48 samples of one MTQE item (completion form, T=1) against the exact distribution: chi-square."""
    from judgelab.prompts import sato2026

    prompt = sato2026.completion("mtqe", MTQE_ITEM, (0, 10))
    d = S.exact_distributions(smollm2, [prompt], (0, 10), temperatures=(1.0,))[0][1.0]
    assert d.total == pytest.approx(1.0, abs=1e-6)
    assert d.unresolved < 0.01 and d.valid > 0.5
    samples = _real_samples(smollm2, prompt, 1.0, calls=3)
    assert _chi_square(_observed(samples), _categories(d, len(samples))) > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0.7, 1.3])
def test_sampling_agrees_with_exact_on_smollm2_many_samples(smollm2, temperature):
    """192 samples per temperature (completion form); and the same samples reject the T=1 distribution."""
    from judgelab.prompts import sato2026

    prompt = sato2026.completion("mtqe", MTQE_ITEM, (0, 10))
    d = S.exact_distributions(smollm2, [prompt], (0, 10), temperatures=(temperature, 1.0))[0]
    samples = _real_samples(smollm2, prompt, temperature, calls=12)
    assert _chi_square(_observed(samples), _categories(d[temperature], len(samples))) > 1e-3
    assert _chi_square(_observed(samples), _categories(d[1.0], len(samples))) < 0.05


def test_long_table_sums_to_one_per_item():
    dists = S.exact_distributions(FakeLM(TREE2), ["p", "q"], (0, 10), table=TABLE, temperatures=(0.7, 1.0))
    long = S.distributions_long(dists, items=["a", "b"])
    sums = long.groupby(["item", "temperature"])["prob"].sum()
    assert len(sums) == 4 and np.allclose(sums, 1.0)
    row = long[(long["item"] == "a") & (long["temperature"] == 1.0) & (long["score"] == 7.8)]
    assert row["prob"].item() == pytest.approx(0.12)


def test_simulated_item_scores_follow_the_mean_distribution():
    d = exact(TREE2, decimals=1, min_prob=0)[0][1.0]
    draws = S.simulate_item_scores([d, d], n=10, replicates=4000, seed=1)
    assert draws.shape == (4000, 2)
    table = d.mean_distribution(10).dropna()
    assert np.nanmean(draws) == pytest.approx(d.expected(), abs=0.03)
    exact_sd = math.sqrt((table["prob"] * (table["mean"] - d.expected()) ** 2).sum() / table["prob"].sum())
    assert np.nanstd(draws) == pytest.approx(exact_sd, rel=0.05)
    assert not np.allclose(draws[:, 0], draws[:, 1])  # items drawn independently

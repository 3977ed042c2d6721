"""Likelihood-based self-recognition: is the judge's own summary the more likely text under the judge?

Wataoka, Takahashi & Ri (2024, arXiv 2410.21819) argue that self-preference is a preference for
low-perplexity text: a judge favours what it finds likely, and its own greedy output is, by construction,
likely under it. The open judges of chapter 3 answer the pairwise prompts by position, so their R and S sit
near 0.5; this module asks whether the information a judge would need to recognise itself is there even
when its answer does not use it.

For each open judge and each held-out article it judged:

1. the log-probability of every author's summary (the five released authors, the judge itself and the
   other open judges) under the judge, *given the article and the paper's summarisation prompt* --
   :func:`judgelab.prompts.panickssery2024.summary_messages`, the very messages the judge's own summaries
   were generated from (:func:`judgelab.experiments.open_models.write_summaries`), rendered by the same
   tokenizer and chat template; the summary is the assistant's reply that follows. The text scored is the
   summary *as judged* (cleaned, :func:`~judgelab.experiments.open_models.clean_summary`), for every author
   alike, so the comparison is between the texts the judge was shown. Reported per token
   (``mean_logprob``, natural log; ``exp(-mean_logprob)`` is the perplexity) because summaries differ in
   length, and a sum favours short ones. No end-of-turn token is scored: the question is how likely the
   words are, not where the judge would stop;
2. per pair (article, other author): ``ll_diff`` = own minus other mean log-probability, and whether the
   own summary is the more likely one (``own_more_likely``; an exact tie is counted apart in ``ties``);
   :func:`own_more_likely_table` gives the share with 95 % article-bootstrap intervals
   (:mod:`judgelab.stats`), per dataset and other author and pooled;
3. item-level S regressed on ``ll_diff`` and on R (:func:`preference_regression`: statsmodels OLS with
   standard errors clustered by article, since the pairs of one article are not independent).

**Two runtimes of the same weights.** The transformers backend computes no log-likelihoods, so the
likelihoods come from the llama.cpp runtime (``NAME@llama.cpp``, :mod:`judgelab.models.llamacpp_backend`)
of the *same GGUF file* -- :func:`check_same_weights` compares the two fingerprints' ``gguf_sha256`` and
refuses otherwise -- while R and S come from the transformers runtime (the book's open-models stores, the
per-pair table chapter 3 replays). llama.cpp computes with its quantised kernels and transformers with the
dequantised fp32 weights, so the numbers differ slightly (the backend tests bound the difference for
next-token probabilities); the tables name both runtimes (``likelihood_runtime``, ``judging_runtime``).

**Stores.** Every likelihood call goes through its own call store per judge,
``<results_dir>/stores/<store_path(NAME@llama.cpp)>`` (a file apart from the judge's transformers store:
another runtime, another identity). A run resumes where it stopped; the ``book`` profile replays and
loads no weights, and only where its stores lack a call (with ``JUDGELAB_LIVE=1`` or ``judgelab run
likelihood --live``) loads the llama.cpp model to compute it.

Layering: above :mod:`judgelab.experiments.open_models` (whose replay gives the judges' summaries and the
per-pair R and S); the tables go to ``results/open_models/likelihood*.csv`` for the book profile.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from judgelab import stats
from judgelab.data.self_recognition import load_articles
from judgelab.experiments import open_models as om
from judgelab.paths import write_csvs
from judgelab.profiles import hardware, open_models_profile
from judgelab.prompts import panickssery2024 as P
from judgelab.store import CallStore, ReplayMiss, StoredModel

#: the open-models profile whose committed stores give the judges' summaries and the per-pair R and S
SOURCE_PROFILE = "book"


def default_results_dir(profile: str) -> Path:
    """Where tables and likelihood stores go: the open-models folder of ``profile`` (``results/open_models``
    for the book)."""
    return om.default_results_dir(profile)


# --- profiles ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LikelihoodProfile:
    """Sizes of the likelihood analysis: judge -> held-out articles per dataset whose summaries are scored.

    A judge's articles are the first ``n`` of those it judged in the open-models book run, so every scored
    pair has its R and S. ``targets`` are the sizes designed for (the open-models book sizes); ``judges`` of
    the ``book`` profile is what has been computed and is replayed.
    """

    name: str
    judges: dict[str, int]
    replay: bool = False
    targets: dict[str, int] = field(default_factory=dict)
    datasets: tuple[str, ...] = ("xsum", "cnn")
    #: llama.cpp threads (None: ``$OMP_NUM_THREADS`` if set, else every usable core)
    n_threads: int | None = None

    def shortfall(self) -> dict[str, tuple[int, int]]:
        """Judges scored on fewer articles than designed: name -> (articles scored, articles designed for)."""
        return {j: (self.judges.get(j, 0), n) for j, n in self.targets.items() if self.judges.get(j, 0) < n}


_BOOK_SIZES = dict(open_models_profile(SOURCE_PROFILE).judges)

LIKELIHOOD_PROFILES: dict[str, LikelihoodProfile] = {
    "ci": LikelihoodProfile("ci", {"smollm2-135m-instruct": 2}),
    # What has been computed live (the stores' run records name the hardware: 1 llama.cpp thread on a shared
    # 2-core VM; smollm2 0.57-0.68 calls/s, qwen 0.5B 0.3-0.4 calls/s beside two other jobs); the rest of the
    # targets is short, and the stores resume:
    # `judgelab run likelihood --profile book --judges smollm2-135m-instruct=200 --live`, then raise it here.
    "book": LikelihoodProfile("book", {"smollm2-135m-instruct": 75, "qwen2.5-coder-0.5b-instruct": 25}, replay=True,
                              targets=_BOOK_SIZES),
}


def likelihood_profile(name: str, judges: Sequence[str] | None = None, articles: int | None = None,
                       live: bool = False) -> LikelihoodProfile:
    """The profile ``name``, with ``judges`` set to ``articles`` held-out articles each (others kept).

    A judge given as ``NAME=N`` gets ``N`` articles whatever ``articles`` says; ``judges`` without a size and
    without ``articles`` keeps a judge's profile size, or takes its book target if it has none.
    ``live`` (or ``JUDGELAB_LIVE=1``) computes what the stores lack instead of failing on it.
    """
    if name not in LIKELIHOOD_PROFILES:
        raise ValueError(f"unknown likelihood profile {name!r}; choose one of {sorted(LIKELIHOOD_PROFILES)}")
    prof = LIKELIHOOD_PROFILES[name]
    if articles is not None and articles < 1:
        raise ValueError(f"articles must be at least 1, got {articles}")
    sizes = dict(prof.judges)
    for item in judges or ():
        judge, eq, n = item.partition("=")
        if eq and (not n.strip().isdigit() or int(n) < 1):
            raise ValueError(f"expected NAME or NAME=N with N a whole number >= 1, got {item!r}")
        if judge not in _BOOK_SIZES:
            raise ValueError(f"{judge!r} is not a judge of the open-models {SOURCE_PROFILE} run, so it has no R "
                             f"and S to compare with; choose from {sorted(_BOOK_SIZES)}")
        sizes[judge] = (int(n) if eq else articles if articles is not None
                        else sizes.get(judge, prof.targets.get(judge, _BOOK_SIZES[judge])))
    if articles is not None and not judges:
        sizes = {j: articles for j in sizes}
    if live or os.environ.get("JUDGELAB_LIVE") == "1":
        prof = replace(prof, replay=False)
    return replace(prof, judges=sizes)


# --- requests ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LikelihoodRequest:
    label: str
    messages: list[dict[str, str]]
    continuation: str


def likelihood_spec(judge: str) -> str:
    """The llama.cpp model string of a zoo judge: ``NAME@llama.cpp`` (the same GGUF, the other runtime)."""
    return f"{judge}@llama.cpp"


def likelihood_requests(authors: pd.DataFrame, articles: pd.Series) -> tuple[list[dict], list[LikelihoodRequest]]:
    """One request per (article, author) of ``authors`` (:func:`~judgelab.experiments.open_models.authors_table`).

    The prompt is the paper's summarisation prompt for the article (the messages the judges' summaries were
    generated from), the continuation the author's summary as judged. Rows keep the table's order
    (``dataset, key, author``). A summary with no text (cleaning can leave none) gets no request and stays a
    row with ``empty`` True: it has no likelihood, and its pairs are counted as undefined.
    """
    rows, reqs = [], []
    missing = sorted(set(authors["key"]) - set(articles.index))
    if missing:
        raise ValueError(f"{len(missing)} articles of the authors table have no text, e.g. {missing[0]!r}")
    for row in authors.itertuples():
        empty = not str(row.summary).strip()
        rows.append({"dataset": row.dataset, "key": row.key, "author": row.author, "empty": empty})
        if not empty:
            reqs.append(LikelihoodRequest(f"{row.dataset}/{row.key}/loglikelihood/{row.author}",
                                          P.summary_messages(row.dataset, articles[row.key]), str(row.summary)))
    return rows, reqs


# --- computing (through the store) -------------------------------------------------------------------------
class WeightsMismatch(ValueError):
    """The likelihood runtime's GGUF is not the file the judge's R and S were computed with."""


def check_same_weights(likelihood_fp: dict, judging_fp: dict, judge: str) -> None:
    """Refuse likelihoods from other weights than the judge's: both fingerprints must name one GGUF sha256."""
    a, b = likelihood_fp.get("gguf_sha256"), judging_fp.get("gguf_sha256")
    if not a or not b or a != b:
        raise WeightsMismatch(f"{judge}: the likelihood runtime's weights (gguf_sha256 {a}) are not the weights "
                              f"its R and S were judged with (gguf_sha256 {b}); the comparison would mix models")


def runtime_text(fp: dict) -> str:
    """A fingerprint in a few words for the tables: runtime, precision, GGUF sha256 prefix."""
    sha = str(fp.get("gguf_sha256", ""))[:12]
    if fp.get("backend") == "llama.cpp":
        return f"llama.cpp (llama-cpp-python {fp.get('llama_cpp_python')}, quantised kernels), gguf sha256:{sha}"
    return f"{fp.get('backend')} ({fp.get('dtype')}, dequantised {fp.get('quantisation')}), gguf sha256:{sha}"


def _threads(profile: LikelihoodProfile) -> int | None:
    if profile.n_threads:
        return profile.n_threads
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else None


def _loglikelihoods(spec: str, path: Path, reqs: list[LikelihoodRequest], profile: LikelihoodProfile,
                    progress: bool) -> tuple[list[dict], dict, dict]:
    """Answers from the store (replay first: no weights loaded); misses computed live where allowed.

    Returns the records, the model's fingerprint and what was computed (calls, seconds). The store is closed
    on every way out, a ``KeyboardInterrupt`` included, so an interrupted run leaves a checkpointed file.
    """
    from judgelab.models import get_model

    identity = om.judge_identity(spec)
    prompts, conts, labels = [r.messages for r in reqs], [r.continuation for r in reqs], [r.label for r in reqs]
    try:
        with CallStore(path, readonly=True, identity=identity) as store:
            model = StoredModel(None, store, replay=True, name=om.short_name(spec), progress=progress)
            return model.loglikelihood(prompts, conts, labels), model.fingerprint, {"calls": 0, "seconds": 0.0}
    except ReplayMiss:
        if profile.replay:
            raise
    with CallStore(path, identity=identity) as store:
        before = store.count(kind="loglikelihood")
        store.set_meta(f"run:{profile.name}", {"profile": profile.name, "hardware": hardware(),
                                              "date": time.strftime("%Y-%m-%d"), "n_threads": _threads(profile)})
        kwargs = {"n_threads": _threads(profile)} if _threads(profile) else {}
        model = get_model(spec, store=store, progress=progress, **kwargs)
        t0 = time.perf_counter()
        records = model.loglikelihood(prompts, conts, labels)
        seconds = time.perf_counter() - t0
        done = {"calls": store.count(kind="loglikelihood") - before, "seconds": seconds}
        if done["calls"]:  # one record per completed run: the store keeps its own throughput history
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            store.set_meta(f"throughput:{profile.name}:{stamp}", {**done, "calls_per_s": done["calls"] / seconds,
                                                                 "hardware": hardware(), "n_threads": _threads(profile),
                                                                 "load_1min": os.getloadavg()[0]})
        return records, model.fingerprint, done


def summary_loglikelihoods(judge: str, profile: LikelihoodProfile | str, authors: pd.DataFrame,
                           articles: pd.Series, results_dir: Path | str | None = None,
                           judging_fingerprint: dict | None = None, progress: bool = True) -> pd.DataFrame:
    """Log-likelihood of every summary of ``authors`` under ``judge`` (llama.cpp runtime, through its store).

    Columns ``judge, dataset, key, author, logprob, mean_logprob, n_tokens`` (natural log; sum and per
    token; NaN and 0 tokens for an empty summary), then ``likelihood_runtime`` and, with
    ``judging_fingerprint`` (the transformers fingerprint R and S were judged with, checked to be the same
    GGUF by :func:`check_same_weights`), ``judging_runtime``. ``judge`` is the zoo name as the per-pair
    table spells it; the store is ``store_path("<judge>@llama.cpp", results_dir)``. ``attrs["computed"]``
    says how many calls were computed now and in how many seconds.
    """
    prof = profile if isinstance(profile, LikelihoodProfile) else likelihood_profile(profile)
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(prof.name)
    spec = likelihood_spec(judge)
    if judging_fingerprint is not None:  # before any weights load: the zoo names the GGUF llama.cpp will run
        from judgelab.models.zoo import ZOO

        if judge in ZOO:
            check_same_weights({"gguf_sha256": ZOO[judge].gguf_sha256}, judging_fingerprint, judge)
    rows, reqs = likelihood_requests(authors, articles)
    records, fp, done = _loglikelihoods(spec, om.store_path(spec, results_dir), reqs, prof, progress)
    if judging_fingerprint is not None:
        check_same_weights(fp, judging_fingerprint, judge)
    out = pd.DataFrame(rows)
    full = ~out["empty"].to_numpy()
    for col, empty_value in (("logprob", np.nan), ("mean_logprob", np.nan), ("n_tokens", 0)):
        values = np.full(len(out), empty_value, dtype=float)
        values[full] = [r[col] for r in records]
        out[col] = values
    out["n_tokens"] = out["n_tokens"].astype(int)
    out.insert(0, "judge", om.short_name(judge))
    out["likelihood_runtime"] = runtime_text(fp)
    if judging_fingerprint is not None:
        out["judging_runtime"] = runtime_text(judging_fingerprint)
    out.attrs["computed"] = done
    return out.drop(columns="empty")


# --- tables ------------------------------------------------------------------------------------------------
PAIR_KEYS = ["judge", "dataset", "key", "other"]


def likelihood_pairs(ll: pd.DataFrame, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (judge, article, other author): own and other mean log-probability, their difference.

    ``ll_diff`` = own minus other ``mean_logprob`` (nats per token; > 0: the own summary is the more likely
    one); ``own_more_likely`` 1.0 where ``ll_diff > 0``, else 0.0, and ``ties`` 1.0 where it is 0 (both NaN
    where either summary has no likelihood). With ``pairs`` (the open-models per-pair table), ``recognition``
    and ``preference`` (R and S) are joined on: every likelihood pair must be a judged pair, else ValueError
    (the two tables were built from different authors and could not be compared).
    """
    need = {"judge", "dataset", "key", "author", "mean_logprob"}
    if need - set(ll.columns):
        raise ValueError(f"likelihood table lacks columns {sorted(need - set(ll.columns))}")
    if ll.duplicated(["judge", "dataset", "key", "author"]).any():
        raise ValueError("likelihood table holds one (judge, dataset, key, author) more than once")
    is_own = ll["author"] == ll["judge"]
    own = ll[is_own][["judge", "dataset", "key", "mean_logprob"]].rename(columns={"mean_logprob": "own_mean_logprob"})
    other = ll[~is_own][["judge", "dataset", "key", "author", "mean_logprob"]].rename(
        columns={"author": "other", "mean_logprob": "other_mean_logprob"})
    out = other.merge(own, on=["judge", "dataset", "key"], how="inner")  # an article without an own summary: no pair
    out = out[PAIR_KEYS + ["own_mean_logprob", "other_mean_logprob"]]
    diff = out["own_mean_logprob"] - out["other_mean_logprob"]
    ok = np.isfinite(diff.to_numpy())
    out["ll_diff"] = diff
    out["own_more_likely"] = np.where(ok, (diff > 0).astype(float), np.nan)
    out["ties"] = np.where(ok, (diff == 0).astype(float), np.nan)
    if pairs is None:
        return out.reset_index(drop=True)
    rs = pairs[PAIR_KEYS + ["recognition", "preference"]]
    if rs.duplicated(PAIR_KEYS).any():
        raise ValueError("the per-pair R/S table holds one (judge, dataset, key, other) more than once")
    joined = out.merge(rs, on=PAIR_KEYS, how="left", indicator=True)
    lost = joined["_merge"] != "both"
    if lost.any():
        raise ValueError(f"{int(lost.sum())} likelihood pairs were never judged (no R/S row), e.g. "
                         f"{joined.loc[lost, PAIR_KEYS].iloc[0].to_dict()}: the authors tables differ")
    return joined.drop(columns="_merge").reset_index(drop=True)


def own_more_likely_table(lp: pd.DataFrame) -> pd.DataFrame:
    """Share of pairs whose own summary is the more likely one, per dataset x judge x other (and ``all``).

    Columns ``dataset, judge, other, n`` (pairs with both likelihoods), ``n_undefined`` (pairs without),
    ``n_articles``, then ``own_more_likely``, ``ties`` and ``ll_diff`` (mean own-minus-other nats per token),
    each with its 95 % article-bootstrap interval (:func:`judgelab.stats.bootstrap_mean_table`), and the
    runtimes where ``lp`` carries them. Chance is 0.5 only for a judge with no preference *and no ties*.
    """
    values = ["own_more_likely", "ties", "ll_diff"]
    frames = []
    for by in (["dataset", "judge", "other"], ["dataset", "judge"]):
        t = stats.bootstrap_mean_table(lp, values, by)
        g = lp.groupby(by, sort=False)
        k = pd.MultiIndex.from_frame(t[by])
        t.insert(t.columns.get_loc("n") + 1, "n_undefined", g.size().reindex(k).to_numpy() - t["n"].to_numpy())
        t.insert(t.columns.get_loc("n") + 2, "n_articles", g["key"].nunique().reindex(k).to_numpy())
        frames.append(t if "other" in by else t.assign(other="all"))
    out = pd.concat(frames, ignore_index=True)
    order = {a: i for i, a in enumerate(om._author_order(out["other"]))}
    out = out.sort_values(["dataset", "judge", "other"], key=lambda s: s.map(order) if s.name == "other" else s,
                          ignore_index=True)
    cols = ["dataset", "judge", "other", "n", "n_undefined", "n_articles",
            *(v + s for v in values for s in ("", "_low", "_high"))]
    out = out[cols]
    for col in ("likelihood_runtime", "judging_runtime"):
        if col in lp:
            out[col] = out["judge"].map(lp.drop_duplicates("judge").set_index("judge")[col])
    return out


#: the regressions fitted per judge and dataset: name -> (outcome, predictors)
REGRESSIONS = {
    "S ~ ll_diff": ("preference", ("ll_diff",)),
    "S ~ R": ("preference", ("recognition",)),
    "S ~ ll_diff + R": ("preference", ("ll_diff", "recognition")),
    "R ~ ll_diff": ("recognition", ("ll_diff",)),
}
_TERM = {"const": "intercept", "ll_diff": "ll_diff", "recognition": "R", "preference": "S"}


def preference_regression(lp: pd.DataFrame, by: Sequence[str] = ("dataset", "judge"),
                          level: float = stats.LEVEL) -> pd.DataFrame:
    """Item-level OLS of S on the log-likelihood difference and on R (and R on it), per ``by`` group.

    One row per group x model (:data:`REGRESSIONS`) x term: ``coef``, its ``low``/``high`` ``level``
    interval and ``p_value`` from standard errors clustered by article (``key``; statsmodels'
    ``cov_type="cluster"``, t with G - 1 degrees of freedom: the pairs of one article share its text and the
    judge's own summary, so they are not independent), ``n`` pairs, ``n_articles`` (G) and ``r2``. A model
    that cannot be fitted (fewer than two articles, no more pairs than coefficients, a constant predictor or
    outcome) gets NaN and says why in ``note``. ``ll_diff`` is in nats per token, R and S on their 0-1 scale.
    """
    import statsmodels.api as sm

    rows = []
    for keys, g in lp.groupby(list(by), sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        for name, (y, xs) in REGRESSIONS.items():
            d = g.dropna(subset=[y, *xs])
            base = {**dict(zip(by, keys)), "model": name, "n": len(d), "n_articles": d["key"].nunique()}
            note = None
            if base["n_articles"] < 2:
                note = f"{base['n_articles']} article(s): a cluster-robust error needs at least 2"
            elif len(d) <= len(xs) + 1:
                note = f"{len(d)} pairs for {len(xs) + 1} coefficients"
            elif any(np.ptp(d[x].to_numpy()) == 0 for x in xs):
                note = "a predictor is constant"
            elif np.ptp(d[y].to_numpy()) == 0:
                note = "the outcome is constant"
            terms = ["const", *xs]
            if note:
                rows += [{**base, "term": _TERM[t], "coef": np.nan, "low": np.nan, "high": np.nan,
                          "p_value": np.nan, "r2": np.nan, "note": note} for t in terms]
                continue
            fit = sm.OLS(d[y].to_numpy(float), sm.add_constant(d[list(xs)].astype(float), has_constant="add")).fit(
                cov_type="cluster", cov_kwds={"groups": pd.factorize(d["key"])[0]}, use_t=True)
            ci = fit.conf_int(alpha=1 - level)
            for t in terms:
                rows.append({**base, "term": _TERM[t], "coef": float(fit.params[t]), "low": float(ci.loc[t, 0]),
                             "high": float(ci.loc[t, 1]), "p_value": float(fit.pvalues[t]), "r2": float(fit.rsquared),
                             "note": None})
    cols = [*by, "model", "term", "coef", "low", "high", "p_value", "n", "n_articles", "r2", "note"]
    return pd.DataFrame(rows, columns=cols)


# --- sentences ---------------------------------------------------------------------------------------------
#: fewer articles than this and a cell is named, not read (a bootstrap or a clustered error over a handful
#: of articles has too few distinct resamples to carry a finding)
FEW_ARTICLES = 20


def _share_verdict(low: float, high: float) -> str:
    if low > 0.5:
        return "more often than not"
    if high < 0.5:
        return "less often than not"
    return "in a share not distinguishable from half"


def _coef_text(reg: pd.DataFrame, model: str, term: str, unit: str) -> str | None:
    row = reg[(reg["model"] == model) & (reg["term"] == term)]
    if row.empty or not np.isfinite(row["coef"].iloc[0]):
        return None
    r = row.iloc[0]
    sign = ("a positive association" if r["low"] > 0 else "a negative association" if r["high"] < 0
            else "no association distinguishable from zero")
    # four decimals: a coefficient per nat/token of S (a 0-1 scale) is often a few thousandths
    return f"{r['coef']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}] {unit} ({sign})"


def likelihood_findings(own: pd.DataFrame, regression: pd.DataFrame, few: int = FEW_ARTICLES) -> str:
    """What :func:`own_more_likely_table` and :func:`preference_regression` show, one line per judge and
    dataset (Markdown).

    The share of own-more-likely pairs is read against one half only where its whole 95 % interval lies on
    one side; a coefficient is called an association only where its interval excludes zero. Cells over fewer
    than ``few`` articles are named with their size and not read. The closing sentence names the two
    runtimes, so that no reader takes the likelihoods and the answers for one computation.
    """
    pooled = own[own["other"] == "all"]
    if pooled.empty:
        return "No judge in this run has likelihoods."
    lines = []
    for r in pooled.itertuples():
        head = f"- **{r.judge}**, {str(r.dataset).upper()} ({r.n_articles} articles, {r.n} pairs"
        head += f"; {r.n_undefined} without a likelihood)" if r.n_undefined else ")"
        if r.n_articles < few:
            lines.append(head + f": only {r.n_articles} articles, too few to read; own summary the more likely "
                         f"one in {100 * r.own_more_likely:.1f}% of pairs (not read against chance).")
            continue
        verdict = _share_verdict(r.own_more_likely_low, r.own_more_likely_high)
        text = (head + f": its own summary is the more likely one under it {verdict}"
                f", in {100 * r.own_more_likely:.1f}% [{100 * r.own_more_likely_low:.1f}, "
                f"{100 * r.own_more_likely_high:.1f}] of pairs"
                + (f" ({100 * r.ties:.1f}% ties)" if r.ties > 0 else "")
                + f"; mean advantage {r.ll_diff:+.3f} [{r.ll_diff_low:+.3f}, {r.ll_diff_high:+.3f}] nats per token")
        reg = regression[(regression["judge"] == r.judge) & (regression["dataset"] == r.dataset)]
        s_ll = _coef_text(reg, "S ~ ll_diff + R", "ll_diff", "per nat/token")
        s_r = _coef_text(reg, "S ~ ll_diff + R", "R", "per unit of R")
        r_ll = _coef_text(reg, "R ~ ll_diff", "ll_diff", "per nat/token")
        if s_ll:
            text += f". Item-level S against the likelihood advantage, R held fixed: {s_ll}; against R: {s_r}"
        if r_ll:
            text += f". R against the likelihood advantage: {r_ll}"
        lines.append(text + ".")
    runtimes = "" if "likelihood_runtime" not in own else (
        "\n\nThe likelihoods come from the llama.cpp runtime of the same GGUF weights (quantised kernels); R and S "
        "from the transformers runtime (dequantised fp32) -- the same file, checked by its sha256, two computations.")
    return "\n".join(lines) + runtimes


# --- the whole analysis ------------------------------------------------------------------------------------
def source_profile(prof: LikelihoodProfile):
    """The open-models book profile cut to what ``prof`` needs, replayed from the committed stores.

    The judges are ``prof``'s at its sizes; every other book writer writes its summaries of as many
    articles as the largest size (never more than it wrote), so each judged article has exactly the authors
    it had in the book run.
    """
    book = open_models_profile(SOURCE_PROFILE)
    too_many = {j: n for j, n in prof.judges.items() if n > book.judges.get(j, 0)}
    if too_many:
        raise ValueError(f"more articles than the open-models {SOURCE_PROFILE} run judged: "
                         + ", ".join(f"{j} {n} (judged {book.judges.get(j, 0)})" for j, n in too_many.items()))
    top = max(prof.judges.values())
    writers = {w: min(n, top) for w, n in book.writers().items() if w not in prof.judges}
    return replace(book, judges=dict(prof.judges), summaries=writers, replay=True, datasets=prof.datasets)


@dataclass
class LikelihoodResults:
    loglikelihoods: pd.DataFrame  # one row per (judge, article, author)
    pairs: pd.DataFrame  # one row per (judge, article, other author), with R and S
    computed: dict[str, dict]  # judge -> calls computed now and seconds

    def own_table(self) -> pd.DataFrame:
        return own_more_likely_table(self.pairs)

    def regression_table(self) -> pd.DataFrame:
        return preference_regression(self.pairs)


def run(profile: str | LikelihoodProfile = "book", results_dir: Path | str | None = None,
        progress: bool = True) -> LikelihoodResults:
    """Replay the open-models pairs, compute (or replay) every judge's likelihoods, join them."""
    prof = profile if isinstance(profile, LikelihoodProfile) else likelihood_profile(profile)
    if not prof.judges:
        raise ValueError(f"likelihood profile {prof.name!r} names no judge")
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(prof.name)
    src = source_profile(prof)
    book_dir = om.default_results_dir(SOURCE_PROFILE)
    res = om.run(src, book_dir, progress=False)
    articles = pd.concat([load_articles(ds).set_index("key")["article"] for ds in prof.datasets])
    lls, computed = [], {}
    for judge, n in prof.judges.items():
        with CallStore(om.store_path(judge, book_dir), readonly=True, identity=om.judge_identity(judge)) as st:
            judging_fp = st.fingerprint_for(judge)[1]
        authors = pd.concat([om.authors_table(ds, om.held_out_keys(ds, n, src.first_article),
                                              [res.summaries[res.summaries["dataset"] == ds]])
                             for ds in prof.datasets], ignore_index=True)
        ll = summary_loglikelihoods(judge, prof, authors, articles, results_dir, judging_fp, progress)
        computed[judge] = ll.attrs["computed"]
        lls.append(ll)
    ll = pd.concat(lls, ignore_index=True)
    lp = likelihood_pairs(ll, res.pairs)
    for col in ("likelihood_runtime", "judging_runtime"):
        lp[col] = lp["judge"].map(ll.drop_duplicates("judge").set_index("judge")[col])
    return LikelihoodResults(ll, lp, computed)


def write_tables(profile: str | LikelihoodProfile = "book", results_dir: Path | str | None = None,
                 progress: bool = True) -> dict[str, Path]:
    """Run or replay ``profile``; write ``likelihood.csv`` (per summary), ``likelihood_pairs.csv``,
    ``likelihood_own.csv`` and ``likelihood_regression.csv`` (each atomically) and print the throughput."""
    prof = profile if isinstance(profile, LikelihoodProfile) else likelihood_profile(profile)
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(prof.name)
    res = run(prof, results_dir, progress)
    for judge, done in res.computed.items():
        if done["calls"]:
            print(f"{judge}@llama.cpp: {done['calls']} likelihood calls computed in {done['seconds']:.0f}s "
                  f"({done['calls'] / done['seconds']:.2f} calls/s)", flush=True)
    return write_csvs({"likelihood.csv": res.loglikelihoods, "likelihood_pairs.csv": res.pairs,
                       "likelihood_own.csv": res.own_table(), "likelihood_regression.csv": res.regression_table()},
                      results_dir)

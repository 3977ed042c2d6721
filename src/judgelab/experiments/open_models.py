"""Out-of-box self-recognition and self-preference, re-run with open models (Panickssery et al. 2024, sec. 3).

The paper's protocol, unchanged, with judges anyone can run:

1. each judge writes its own summaries of the held-out articles (the paper's prompts, greedy decoding,
   cleaned as the paper cleaned them); they join the five released authors (and the other judges);
2. for each judge and every other author, pairwise recognition ("which did you write?") and preference
   ("which do you prefer?") in both orders, read from the next-token probabilities of "1" and "2";
3. in the individual setting, P("Yes") to "did you write this?" and the probability-weighted 1-5 score.

Evaluation uses articles ``keys[500:]`` of each dataset -- the same articles for every judge -- so that the
fine-tuning chapter can train on ``keys[:500]``. Every call goes through a per-judge call store under
``results/open_models/stores``; the ``book`` profile replays those stores.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from judgelab import stats
from judgelab.data.self_recognition import AUTHORS, load_articles, load_summaries
from judgelab.experiments.reanalysis import outcome, renormalised_pair
from judgelab.experiments import debiased
from judgelab.models import get_model
from judgelab.models.base import GenerationConfig
from judgelab.paths import results_path, write_csvs
from judgelab.profiles import OpenModelsProfile, hardware, open_models_profile
from judgelab.prompts import panickssery2024 as P
from judgelab.store import CallStore, StoredModel


def default_results_dir(profile: str) -> Path:
    """``results/open_models`` for the committed book profile; ``results/runs/<profile>/...`` otherwise."""
    return results_path("open_models") if profile == "book" else results_path("runs", profile, "open_models")
PAIRWISE_TASKS = ("detection", "comparison")
SUMMARY_CONFIG = GenerationConfig(max_new_tokens=100, temperature=0.0)
SCORES = ("1", "2", "3", "4", "5")


# --- summaries ---------------------------------------------------------------------------------------------
_BOILERPLATE = (
    "points from the summary",
    "highlights from the summary",
    "summary of the article",
    "highlights from the article",
    "highlight summaries of the",
)


def clean_summary(text: str, dataset: str) -> str:
    """Clean a generated summary with the rules the paper applied to its model summaries.

    XSUM (one sentence): strip surrounding quotes and keep the last line (models like to open with
    "Here is a summary:"). CNN (highlights): drop blank lines, preambles and lines ending with a colon;
    strip list markers ("1. ", "* ", "- ") and trailing periods from each highlight.
    """
    text = text.strip()
    if dataset == "xsum":
        lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
        line = lines[-1] if lines else ""
        if len(line) >= 2 and line[0] == '"' and line[-1] == '"':
            line = line[1:-1]
        return line.strip()
    kept = []
    for line in text.split("\n"):
        line = line.strip()
        if not line or line.endswith(":") or any(b in line.lower() for b in _BOILERPLATE):
            continue
        line = re.sub(r"^\d+\.\s+", "", line).lstrip("* ").rstrip(".")
        if line.endswith('."'):
            line = line[:-2] + '"'
        kept.append(line.lstrip("- ").lstrip())
    return "\n".join(kept)


def held_out_keys(dataset: str, n: int, first: int = 500) -> list[str]:
    """The ``n`` evaluation articles of ``dataset``: ``keys[first:first + n]`` in upstream order."""
    arts = load_articles(dataset)
    return arts["key"].iloc[first : first + n].tolist()


def short_name(spec: str) -> str:
    """A judge's author name in tables: readable, and distinct for distinct hub models.

    A zoo name (also as ``zoo:NAME`` / ``zoo-hub:NAME``) is itself; a hub model ``hf:ORG/NAME`` (or
    ``ORG/NAME``, the name a loaded hub model carries) is ``name@org``, so that two organisations' models of
    one name stay two judges (they did not: ``hf:orgA/judge`` and ``hf:orgB/judge`` merged into one judge
    with one R) and the name still starts with its family (:func:`family`); an API model is its model id
    (``openai:gpt-4o-mini@URL`` -> ``gpt-4o-mini``: a loaded API model is named by its id alone, and the
    tables must name it the same live and replayed); a model in the llama.cpp runtime (``llamacpp:NAME``,
    ``NAME@llama.cpp``, ``llamacpp:/path/NAME.gguf``) is ``NAME@llama.cpp``, the name it is loaded and stored
    under. Anything else -- a name this function made, a fine-tuned variant's name -- is returned
    lower-cased, so ``short_name(short_name(x)) == short_name(x)``.
    """
    spec = spec.strip()
    if spec.startswith("openai:"):
        return spec.removeprefix("openai:").partition("@")[0].split("/")[-1].lower()
    if spec.startswith("llamacpp:") or spec.endswith("@llama.cpp"):
        target = spec.removeprefix("llamacpp:").removesuffix("@llama.cpp").removeprefix("zoo:")
        return f"{Path(target).stem if target.endswith('.gguf') else target}@llama.cpp".lower()
    for prefix in ("zoo:", "zoo-hub:"):
        if spec.startswith(prefix):
            return spec.removeprefix(prefix).lower()
    hub = spec.removeprefix("hf:")
    if "/" in hub and ":" not in hub.split("/")[0]:
        org, _, name = hub.partition("@")[0].rpartition("/")
        return f"{name}@{org}".lower()
    return spec.lower()


def judge_identity(spec: str) -> str:
    """A model string with everything that picks the model made explicit: what its store is named after.

    ``openai:MODEL`` gets the endpoint it will reach, resolved as the backend resolves it: ``@URL`` if
    given, else ``$OPENAI_BASE_URL``, else ``https://api.openai.com/v1``, normalised by
    :func:`~judgelab.models.openai_backend.normalise_endpoint` -- so answers of a local server are never
    filed as OpenAI's. ``ORG/NAME`` becomes ``hf:ORG/NAME`` (the same hub model, as
    :func:`judgelab.models.get_model` resolves it); ``llamacpp:NAME`` becomes ``NAME@llama.cpp`` and a GGUF
    path its absolute path; zoo names and anything else are themselves.
    """
    import os

    spec = spec.strip()
    if spec.startswith("openai:"):
        from judgelab.models.openai_backend import OPENAI_DEFAULT_BASE_URL, normalise_endpoint

        model, _, url = spec.removeprefix("openai:").partition("@")
        url = url or os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_BASE_URL
        return f"openai:{model}@{normalise_endpoint(url)}"
    if spec.startswith("llamacpp:") or spec.endswith("@llama.cpp"):
        target = spec.removeprefix("llamacpp:").removesuffix("@llama.cpp").removeprefix("zoo:")
        return f"llamacpp:{Path(target).resolve()}" if target.endswith(".gguf") else f"{target}@llama.cpp"
    if not spec.startswith(("zoo:", "zoo-hub:", "hf:")) and "/" in spec and ":" not in spec.split("/")[0]:
        return f"hf:{spec}"
    return spec


def store_path(judge: str, results_dir: Path | str | None = None) -> Path:
    """The judge's call store under ``<results_dir>/stores`` (default: the committed book stores).

    A bare zoo name keeps the plain name ``<zoo name>.sqlite``: a zoo name is a full identity (which
    weights ran, offline GGUF or hub, is in the fingerprint inside, and a store keeps one fingerprint per
    model name), and the committed book stores are named so. Every other model string is named after its
    full :func:`judge_identity`: ``<short name>-<first 8 hex of its sha256>.sqlite`` (``:`` and other
    characters a file name should not hold become ``-``), so two models can no longer share a file
    (``hf:orgA/judge`` and ``hf:orgB/judge`` did; so did a zoo name and ``openai:<that name>@URL``), and no
    such name can be a zoo name's (zoo names do not end in ``-`` and 8 hex digits; a test checks).
    """
    from judgelab.models.base import sha256_hex
    from judgelab.models.zoo import ZOO

    base = Path(results_dir) if results_dir is not None else default_results_dir("book")
    if judge in ZOO:
        return base / "stores" / f"{judge}.sqlite"
    readable = re.sub(r"[^a-z0-9._-]+", "-", short_name(judge)).strip("-.") or "model"
    return base / "stores" / f"{readable}-{sha256_hex(judge_identity(judge))[:8]}.sqlite"


def open_judge(judge: str, profile: OpenModelsProfile, results_dir: Path | str | None = None,
               progress: bool = True) -> StoredModel:
    """The judge behind its call store: replayed (no weights loaded) or live (weights loaded, misses computed)."""
    store = CallStore(store_path(judge, results_dir), readonly=profile.replay, identity=judge_identity(judge))
    if profile.replay:
        return StoredModel(None, store, replay=True, name=judge, progress=progress, chunk_size=profile.chunk_size)
    model = get_model(judge, device=profile.device)
    store.set_meta(f"run:{profile.name}", {"profile": profile.name, "hardware": hardware(),
                                          "date": time.strftime("%Y-%m-%d")})
    return StoredModel(model, store, progress=progress, chunk_size=profile.chunk_size)


def write_summaries(model: StoredModel, dataset: str, keys: Sequence[str]) -> pd.DataFrame:
    """The judge's own summaries of ``keys`` (recorded in its store): ``dataset, key, author, summary, raw``."""
    articles = load_articles(dataset).set_index("key")["article"]
    prompts = [P.summary_messages(dataset, articles[k]) for k in keys]
    raw = model.generate(prompts, SUMMARY_CONFIG, labels=[f"{dataset}/{k}/summary" for k in keys])
    return pd.DataFrame({"dataset": dataset, "key": list(keys), "author": short_name(model.name),
                         "summary": [clean_summary(r, dataset) for r in raw], "raw": raw})


def authors_table(dataset: str, keys: Sequence[str], judge_summaries: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Every author's summary of each article: the five released authors plus the judges' own."""
    released = load_summaries(dataset)
    released = released[released["key"].isin(set(keys))][["dataset", "key", "author", "summary"]]
    parts = [released] + [s[s["key"].isin(set(keys))][["dataset", "key", "author", "summary"]] for s in judge_summaries]
    out = pd.concat(parts, ignore_index=True)
    order = {k: i for i, k in enumerate(keys)}
    return out.sort_values("key", key=lambda s: s.map(order), kind="stable", ignore_index=True)


# --- judging -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    label: str
    messages: list[dict[str, str]]


def own_articles(authors: pd.DataFrame, judge: str, articles: pd.Series):
    """Each article the judge summarised: ``(dataset, key, article, own summary, {author: summary})``, in
    the order of ``authors`` -- what every pairwise design (the tasks here, the label experiment) starts from."""
    me = short_name(judge)
    for (dataset, key), group in authors.groupby(["dataset", "key"], sort=False):
        by_author = dict(zip(group["author"], group["summary"]))
        if me in by_author:
            yield dataset, key, articles[key], by_author[me], by_author


def pairwise_requests(authors: pd.DataFrame, judge: str, articles: pd.Series) -> tuple[list[dict], list[Request]]:
    """Both orders of both pairwise tasks for the judge's summary against every other author's.

    Forward order shows the judge's own summary as Summary1; backward shows it as Summary2.
    """
    me = short_name(judge)
    rows, reqs = [], []
    for dataset, key, article, own, by_author in own_articles(authors, judge, articles):
        for task in PAIRWISE_TASKS:
            for other, theirs in by_author.items():
                if other == me:
                    continue
                for order, (s1, s2) in (("forward", (own, theirs)), ("backward", (theirs, own))):
                    label = f"{dataset}/{key}/{task}/{order}/{other}"
                    rows.append({"dataset": dataset, "key": key, "task": task, "order": order, "other": other})
                    reqs.append(Request(label, P.pairwise_messages(task, article, s1, s2)))
    return rows, reqs


def individual_requests(authors: pd.DataFrame, judge: str, articles: pd.Series) -> tuple[list[dict], list[Request],
                                                                                          list[dict], list[Request]]:
    """Recognition (Yes/No) and 1-5 scoring prompts for every author's summary, the judge's own included."""
    rec_rows, rec, score_rows, score = [], [], [], []
    for row in authors.itertuples():
        article = articles[row.key]
        base = {"dataset": row.dataset, "key": row.key, "target": row.author}
        rec_rows.append(base)
        rec.append(Request(f"{row.dataset}/{row.key}/recognition/{row.author}", P.recognition_messages(article, row.summary)))
        score_rows.append(base)
        score.append(Request(f"{row.dataset}/{row.key}/score/{row.author}", P.scoring_messages(article, row.summary)))
    return rec_rows, rec, score_rows, score


def _ask(model: StoredModel, reqs: list[Request], options: Sequence[str]):
    return model.option_probs([r.messages for r in reqs], options, labels=[r.label for r in reqs])


def judge_pairwise(model: StoredModel, authors: pd.DataFrame, articles: pd.Series) -> pd.DataFrame:
    """One row per pairwise prompt: raw P("1"), P("2"), the mass outside them and the top token."""
    rows, reqs = pairwise_requests(authors, model.name, articles)
    return ask_one_or_two(model, rows, reqs)


def ask_one_or_two(model: StoredModel, rows: list[dict], reqs: list[Request]) -> pd.DataFrame:
    """Ask ``reqs`` for "1" or "2"; ``rows`` (one per request) with raw P("1"), P("2"), the mass outside
    them, the top token, the invalid reason and the judge.

    An invalid answer (see :class:`~judgelab.models.base.OptionProbs`) gets NaN for ``p1`` and ``p2``,
    ``outside`` 1 and its reason in ``invalid``; the pair it belongs to is then not scored and is counted.
    """
    answers = _ask(model, reqs, ("1", "2"))
    out = pd.DataFrame(rows)
    out["p1"] = [a.raw[0] if a.valid else np.nan for a in answers]
    out["p2"] = [a.raw[1] if a.valid else np.nan for a in answers]
    out["outside"] = [a.outside for a in answers]
    out["top_token"] = [a.extra.get("top_token") for a in answers]
    out["invalid"] = [a.invalid_reason for a in answers]
    out["judge"] = short_name(model.name)
    return out


def pair_scores(prompts: pd.DataFrame) -> pd.DataFrame:
    """Per (judge, article, other): R, S (renormalised, both orders averaged) and the discrete outcomes.

    A pair with an invalid answer (NaN ``p1``/``p2``) in either order of a task gets NaN for that task's
    measure and no outcome: it is left out of the means and counted as invalid, never scored. Every pair
    stays a row (``unstack``, not ``pivot_table``, which drops all-NaN rows and columns), and a prompt
    that appears twice is an error rather than silently the first one.
    """
    idx = ["judge", "dataset", "key", "other", "task", "order"]
    dup = prompts.duplicated(idx)
    if dup.any():
        raise ValueError(f"{int(dup.sum())} pairwise prompts appear more than once, e.g. "
                         f"{prompts.loc[dup, idx].iloc[0].to_dict()}")
    wide = prompts.set_index(idx)[["p1", "p2"]].unstack(["task", "order"]).sort_index()
    out = wide.index.to_frame(index=False)
    for task, name in (("detection", "recognition"), ("comparison", "preference")):
        f1, f2 = wide[("p1", task, "forward")].to_numpy(), wide[("p2", task, "forward")].to_numpy()
        b1, b2 = wide[("p1", task, "backward")].to_numpy(), wide[("p2", task, "backward")].to_numpy()
        out[name] = renormalised_pair(f1, f2, b1, b2)
        fwd = np.where(f1 >= f2, "1", "2")
        bwd = np.where(b1 >= b2, "1", "2")
        valid = np.isfinite(out[name].to_numpy())
        out[f"{name}_outcome"] = np.where(valid, outcome(pd.Series(fwd), pd.Series(bwd)).to_numpy(), None)
    return out


def judge_individual(model: StoredModel, authors: pd.DataFrame, articles: pd.Series) -> pd.DataFrame:
    """Per (article, target author): P("Yes") renormalised over Yes/No, and the expected 1-5 score.

    An invalid answer -- malformed, or no mass on any option -- is a non-answer: NaN ``p_yes`` / ``score``
    (not 0.5 or 3.0, which is what renormalising nothing would make of it), outside mass 1, and its reason
    in ``recognition_invalid`` / ``score_invalid``.
    """
    rec_rows, rec, score_rows, score = individual_requests(authors, model.name, articles)
    yes_no = _ask(model, rec, ("Yes", "No"))
    scores = _ask(model, score, SCORES)
    out = pd.DataFrame(rec_rows)
    out["judge"] = short_name(model.name)
    out["p_yes"] = [a["Yes"] for a in yes_no]
    out["recognition_outside"] = [a.outside for a in yes_no]
    out["recognition_invalid"] = [a.invalid_reason for a in yes_no]
    out["score"] = [sum(int(k) * v for k, v in a.probs.items()) for a in scores]
    out["score_outside"] = [a.outside for a in scores]
    out["score_invalid"] = [a.invalid_reason for a in scores]
    return out


def individual_ratios(items: pd.DataFrame) -> pd.DataFrame:
    """Pairwise-ised individual scores: x_self / (x_self + x_other) per article and other author."""
    rows = []
    for (judge, dataset, key), g in items.groupby(["judge", "dataset", "key"], sort=False):
        own = g[g["target"] == judge]
        if own.empty:
            continue
        for other in g[g["target"] != judge].itertuples():
            ys, ss = float(own["p_yes"].iloc[0]), float(own["score"].iloc[0])
            rows.append({"judge": judge, "dataset": dataset, "key": key, "other": other.target,
                         "recognition": ys / (ys + other.p_yes) if ys + other.p_yes > 0 else np.nan,
                         "preference": ss / (ss + other.score)})
    return pd.DataFrame(rows)


# --- the whole experiment ----------------------------------------------------------------------------------
@dataclass
class OpenModelsResults:
    prompts: pd.DataFrame  # one row per pairwise prompt
    pairs: pd.DataFrame  # one row per (judge, article, other)
    individual: pd.DataFrame  # one row per (judge, article, target)
    summaries: pd.DataFrame  # the judges' own summaries
    runs: pd.DataFrame  # judge, weights fingerprint, profile, hardware, date

    def pairwise_table(self) -> pd.DataFrame:
        return pairwise_table(self.pairs, self.runs)

    def individual_table(self) -> pd.DataFrame:
        return individual_table(self.individual, self.runs)


def _weights(fp: dict) -> str:
    if fp.get("weights") == "gguf":
        return f"gguf {fp.get('quantisation')} sha256:{fp.get('gguf_sha256', '')[:12]} (of {fp.get('hub_id')})"
    if fp.get("weights") == "hub":
        return f"hub {fp.get('hub_id')}@{(fp.get('revision') or 'main')[:12]} {fp.get('dtype')}"
    return f"{fp.get('backend')} {fp.get('model')} @ {fp.get('base_url')}"


@contextmanager
def _naming(model: str, doing: str, results_dir: Path):
    """Add ``while <doing> with <model> (store <path>)`` to any error on the way up: SQLite, OS and
    backend errors do not always say which store or model they came from."""
    try:
        yield
    except Exception as err:
        err.add_note(f"while {doing} with {model} (store {store_path(model, results_dir)})")
        raise


def run(profile: str | OpenModelsProfile = "book", results_dir: Path | str | None = None,
        progress: bool = True) -> OpenModelsResults:
    """Run (or replay) the experiment under ``profile``; returns every item-level table."""
    prof = profile if isinstance(profile, OpenModelsProfile) else open_models_profile(profile)
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(prof.name)
    judges, writers = list(prof.judges), prof.writers()
    keys = {ds: held_out_keys(ds, max(writers.values()), prof.first_article) for ds in prof.datasets}
    articles = pd.concat([load_articles(ds).set_index("key")["article"] for ds in prof.datasets])

    # phase 1: every judge (and every summary-only author) writes its summaries: they are "other authors"
    # for the other judges
    summaries, runs = [], []
    for author, n_written in writers.items():
        with _naming(author, "writing summaries", results_dir):
            model = open_judge(author, prof, results_dir, progress)
            for ds in prof.datasets:
                summaries.append(write_summaries(model, ds, keys[ds][:n_written]))
            live = model.store.get_meta("run:book") or model.store.get_meta(f"run:{prof.name}") or {}
            runs.append({"judge": short_name(author), "model": author, "weights": _weights(model.fingerprint),
                         "fingerprint_id": model.fingerprint_id, "profile": live.get("profile", prof.name),
                         "hardware": live.get("hardware"), "date": live.get("date")})
            model.store.close()
    summaries_df = pd.concat(summaries, ignore_index=True)

    # phase 2: every judge judges its summaries against every other author's, on its own articles
    prompts, items = [], []
    for judge in judges:
        with _naming(judge, "judging", results_dir):
            model = open_judge(judge, prof, results_dir, progress)
            for ds in prof.datasets:
                authors = authors_table(ds, keys[ds][: prof.judges[judge]],
                                        [summaries_df[summaries_df["dataset"] == ds]])
                prompts.append(judge_pairwise(model, authors, articles))
                items.append(judge_individual(model, authors, articles))
            model.store.close()
    prompts_df = pd.concat(prompts, ignore_index=True)
    return OpenModelsResults(prompts_df, pair_scores(prompts_df), pd.concat(items, ignore_index=True),
                             summaries_df, pd.DataFrame(runs))


# --- tables ------------------------------------------------------------------------------------------------
def _author_order(values: Sequence[str]) -> list[str]:
    known = [a for a in (*AUTHORS,) if a in set(values)]
    return known + sorted(set(values) - set(known) - {"all"}) + (["all"] if "all" in set(values) else [])


def _with_runs(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    meta = runs.rename(columns={"judge": "evaluator", "model": "judge"})[
        ["evaluator", "judge", "weights", "profile", "hardware", "date"]]
    return table.merge(meta, on="evaluator", how="left")


def with_invalid(table: pd.DataFrame, df: pd.DataFrame, values: Sequence[str], by: Sequence[str]) -> pd.DataFrame:
    """``table`` (a :func:`judgelab.stats.bootstrap_mean_table` of ``df``) with ``n_invalid`` after ``n``.

    ``n_invalid`` counts the rows of a group that its means could not use because an answer behind them was
    invalid (NaN ``values``), for the measure that lost most: ``n + n_invalid`` is always the rows asked.
    Where the measures lost different rows, the table's ``n_<measure>`` columns give each mean's count.
    """
    size = df.groupby([df[b] for b in by], sort=False, dropna=False).size()
    key = pd.MultiIndex.from_frame(table[list(by)]) if len(by) > 1 else pd.Index(table[by[0]])
    out = table.copy()
    out.insert(out.columns.get_loc("n") + 1, "n_invalid", size.reindex(key).to_numpy() - out["n"].to_numpy())
    return out


def ratios_table(items: pd.DataFrame) -> pd.DataFrame:
    """``individual_ratios.csv``: the pairwise-ised individual scores per dataset, judge and other author."""
    df = individual_ratios(items).rename(columns={"judge": "evaluator"})
    by, values = ["dataset", "evaluator", "other"], ["recognition", "preference"]
    return with_invalid(stats.bootstrap_mean_table(df, values, by), df, values, by)


def pairwise_table(pairs: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """R and S per dataset x judge x other author (and ``all``) with 95 % article-bootstrap CIs.

    ``n`` counts the pairs averaged; ``n_invalid`` the pairs left out for an invalid answer (see
    :func:`with_invalid`).
    """
    df = pairs.rename(columns={"judge": "evaluator"})
    values, by = ["recognition", "preference"], ["dataset", "evaluator", "other"]
    per = with_invalid(stats.bootstrap_mean_table(df, values, by), df, values, by)
    pooled = with_invalid(stats.bootstrap_mean_table(df, values, by[:2]), df, values, by[:2]).assign(other="all")
    out = pd.concat([per, pooled[per.columns]], ignore_index=True)
    order = {a: i for i, a in enumerate(_author_order(out["other"]))}
    out = out.sort_values(["dataset", "evaluator", "other"], key=lambda s: s.map(order) if s.name == "other" else s,
                          ignore_index=True)
    return _with_runs(out, runs)


def individual_table(items: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Individual setting per dataset x judge x target author: mean P("Yes") and mean 1-5 score with CIs.

    ``n`` counts the summaries averaged; ``n_invalid`` those left out for an invalid (or no) answer.
    """
    df = items.rename(columns={"judge": "evaluator"})
    values, by = ["p_yes", "score"], ["dataset", "evaluator", "target"]
    out = with_invalid(stats.bootstrap_mean_table(df, values, by), df, values, by)
    out["is_self"] = out["evaluator"] == out["target"]
    return _with_runs(out, runs)


def diagnostics_table(prompts: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Position bias and answer-format diagnostics per judge, dataset and task.

    ``prompts``: prompts asked; ``n_invalid``: those whose answer was invalid or no answer (see
    :class:`~judgelab.models.base.OptionProbs`), left out of everything else here except ``mean_outside``,
    where they count as mass 1 outside the options; ``p_option1_wins``: share of valid prompts where "1"
    beats "2", whatever summary sits in position 1 (0.5 for an unbiased judge); ``mean_outside``: mean
    next-token mass outside the two options; the discrete view: shares of scored pairs answered correctly /
    incorrectly / the same in both orders.
    """
    rows = []
    for (judge, dataset, task), g in prompts.groupby(["judge", "dataset", "task"], sort=False):
        name = "recognition" if task == "detection" else "preference"
        pg = pairs[(pairs["judge"] == judge) & (pairs["dataset"] == dataset)][f"{name}_outcome"]
        shares = pg.value_counts(normalize=True)
        ok = g[["p1", "p2"]].notna().all(axis=1)
        v = g[ok]
        rows.append({"evaluator": judge, "dataset": dataset, "task": name, "prompts": len(g),
                     "n_invalid": int((~ok).sum()),
                     "p_option1_wins": float((v["p1"] > v["p2"]).mean()) if len(v) else np.nan,
                     "mean_p1_renormalised": float((v["p1"] / (v["p1"] + v["p2"])).mean()) if len(v) else np.nan,
                     "mean_outside": float(g["outside"].mean()),
                     "correct": float(shares.get("correct", 0.0)), "incorrect": float(shares.get("incorrect", 0.0)),
                     "ambiguous_1": float(shares.get("ambiguous_1", 0.0)),
                     "ambiguous_2": float(shares.get("ambiguous_2", 0.0))})
    return pd.DataFrame(rows)


def debiased_table(prompts: pd.DataFrame) -> pd.DataFrame:
    """``debiased.csv``: R and S with an additive position bias removed in logit space, per dataset x judge x
    other author (and ``all``); see :mod:`judgelab.experiments.debiased` for what that cancels and what not.
    A prompt with an invalid answer (NaN ``p1``/``p2``) leaves its pair undefined for that task, counted."""
    pairs = debiased.debiased_pairs(prompts.rename(columns={"judge": "evaluator"}))
    return debiased.debiased_table(pairs)


def kendall_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """Kendall tau between item-level R and S per judge and dataset."""
    return stats.kendall_tau_table(pairs.rename(columns={"judge": "evaluator"}), "recognition", "preference",
                                   ["evaluator", "dataset"])


def family(author: str) -> str:
    """A model family from an author name (``qwen2.5-coder-0.5b-instruct`` -> ``qwen``): the letters it starts with."""
    return re.match(r"[a-z]*", author.lower()).group(0)


def sibling_contrast(pairs: pd.DataFrame) -> pd.DataFrame:
    """R and S of each judge against its siblings (same family, other size) and against unrelated authors.

    Only articles where a sibling's summary exists count, for both rows, so the contrast is not an artefact
    of different articles. A judge that recognises its *family's* style rather than itself scores higher
    against unrelated authors than against a sibling. Returns ``dataset, judge, against (sibling |
    unrelated), n`` and ``recognition`` / ``preference`` with article-bootstrap intervals; empty when no
    judge has a sibling.
    """
    df = pairs.assign(against=np.where(pairs["other"].map(family) == pairs["judge"].map(family),
                                       "sibling", "unrelated"))
    with_sib = df.loc[df["against"] == "sibling", ["judge", "dataset", "key"]].drop_duplicates()
    df = df.merge(with_sib, on=["judge", "dataset", "key"])
    cols = ["dataset", "judge", "against", "n", "recognition", "recognition_low", "recognition_high",
            "preference", "preference_low", "preference_high"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    return stats.bootstrap_mean_table(df, ["recognition", "preference"], ["dataset", "judge", "against"])[cols]


def interval_text(row, measure: str) -> str:
    """``0.497 [0.496, 0.498]``: a table row's ``measure`` with its ``_low`` / ``_high`` interval, for prose."""
    return f"{getattr(row, measure):.3f} [{getattr(row, measure + '_low'):.3f}, {getattr(row, measure + '_high'):.3f}]"


#: how close to 0.5 an interval must stay, on both sides, to read as "no effect" in the chapter's prose. The
#: paper's GPT-4 evaluator lies far beyond it on both datasets (see the re-analysis chapter); a judge whose
#: whole interval stays within it shows no effect of that kind, whatever a few thousandths of position-bias
#: asymmetry do to the point estimate. :func:`findings` says which of the paper's evaluators stay within it too.
CHANCE_MARGIN = 0.05


def near_chance(row, measure: str, margin: float = CHANCE_MARGIN) -> bool:
    """Whether the interval of ``measure`` (``_low`` / ``_high`` columns) lies within ``margin`` of 0.5."""
    return getattr(row, measure + "_low") > 0.5 - margin and getattr(row, measure + "_high") < 0.5 + margin


def _versus_chance(row, measure: str) -> str:
    if getattr(row, measure + "_low") > 0.5:
        return "above chance"
    return "below chance" if getattr(row, measure + "_high") < 0.5 else "compatible with chance"


def _and(items: Sequence[str]) -> str:
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def _pooled(table: pd.DataFrame) -> pd.DataFrame:
    """The rows pooled over every other author (``other == "all"``) of a pairwise table."""
    return table[table["other"] == "all"]


def beyond_chance(row, measure: str, margin: float = CHANCE_MARGIN) -> bool:
    """Whether the whole interval of ``measure`` lies more than ``margin`` from 0.5 (on one side)."""
    return getattr(row, measure + "_low") > 0.5 + margin or getattr(row, measure + "_high") < 0.5 - margin


_MEASURE_LETTER = {"recognition": "R", "preference": "S"}


def _beyond_margin(pooled: pd.DataFrame, margin: float) -> dict[str, list[str]]:
    """Evaluator -> the pooled cells (``xsum S 0.582 [0.574, 0.589]``) whose whole interval lies beyond ``margin``.

    Only those cells are named in prose: an evaluator whose R stays within the margin while its S lies
    beyond it is said to go beyond the margin *in S*, never with its R quoted as if it did too.
    """
    return {ev: [f"{r.dataset} {_MEASURE_LETTER[m]} {interval_text(r, m)}" for r in g.itertuples()
                 for m in ("recognition", "preference") if beyond_chance(r, m, margin)]
            for ev, g in pooled.groupby("evaluator", sort=False)}


def _within_margin(pooled: pd.DataFrame, margin: float) -> dict[str, bool]:
    """Evaluator -> whether every pooled R and S interval of it lies within ``margin`` of chance."""
    return {ev: all(near_chance(r, m, margin) for r in g.itertuples() for m in ("recognition", "preference"))
            for ev, g in pooled.groupby("evaluator", sort=False)}


def _invalid_text(row, d: pd.DataFrame) -> str:
    """``; 12 of its 200 prompts got an invalid answer (not scored, 9 pairs left out)`` -- empty when none did."""
    bad = int(d["n_invalid"].sum()) if "n_invalid" in d else 0
    if not bad:
        return ""
    left = f", {row.n_invalid} pairs left out" if getattr(row, "n_invalid", 0) else ""
    return f"; {bad} of its {int(d['prompts'].sum())} prompts got an invalid answer (not scored{left})"


def findings(pairwise: pd.DataFrame, diag: pd.DataFrame, paper: pd.DataFrame | None = None,
             margin: float = CHANCE_MARGIN) -> str:
    """What the pooled pairwise results show, in words: one line per judge and dataset (Markdown).

    Each line gives R and S with their intervals against chance, and beside them the two diagnostics that
    decide how to read them: how often option 1 wins, and how much probability falls outside the options.
    Where every judge's R and S stay within ``margin`` of chance, a closing paragraph says why an interval
    that excludes 0.5 by a few thousandths is not evidence of self-recognition. With ``paper`` (the
    re-analysis pairwise table) a last paragraph says which of the paper's evaluators go beyond the same
    margin and which stay within it as well, so "no effect here" is read against the right comparison.
    """
    pooled = _pooled(pairwise)
    if pooled.empty:
        return "No judge in this run has pooled results."
    lines = []
    for row in pooled.itertuples():
        d = diag[(diag["evaluator"] == row.evaluator) & (diag["dataset"] == row.dataset)]
        lines.append(
            f"- **{row.evaluator}**, {row.dataset} ({row.n} pairs): "
            f"R = {interval_text(row, 'recognition')} ({_versus_chance(row, 'recognition')}), "
            f"S = {interval_text(row, 'preference')} ({_versus_chance(row, 'preference')}); "
            f"option 1 wins in {d['p_option1_wins'].mean():.0%} of its prompts; "
            f"{d['mean_outside'].mean():.0%} of the probability falls outside the options"
            + _invalid_text(row, d) + ".")
    ours_near = all(_within_margin(pooled, margin).values())
    if ours_near:
        lines.append(f"\nEvery interval above lies within {margin:.2f} of chance. One that excludes 0.5 by a few "
                     "thousandths, with option 1 winning almost every prompt, is most likely a residue of position "
                     "bias (the two orders are not perfectly symmetric), not evidence of self-recognition.")
    theirs = _pooled(paper) if paper is not None else None
    if theirs is not None and not theirs.empty:
        beyond, within = _beyond_margin(theirs, margin), _within_margin(theirs, margin)
        far = [ev for ev, cells in beyond.items() if cells]
        near = [ev for ev in beyond if within[ev]]
        unclear = [ev for ev in beyond if ev not in far and ev not in near]
        text = "\nIn the paper's released outputs (re-analysis chapter), "
        text += (_and([f"**{ev}** ({'; '.join(beyond[ev])})" for ev in far])
                 + (" lies" if len(far) == 1 else " lie") + f" beyond {margin:.2f} of chance in the cells named"
                 if far else f"no evaluator's interval lies beyond {margin:.2f} of chance")
        if near:
            text += ((", while " if far else "; ") + _and([f"**{ev}**" for ev in near])
                     + (" stays" if len(near) == 1 else " stay") + " within it as well")
        if unclear:
            text += ("; " + _and([f"**{ev}**" for ev in unclear])
                     + " neither stays within it nor lies clearly beyond it")
        text += "."
        if ours_near and far and near:
            text += f" At this scale the open judges look like the paper's {_and(near)}, not like its {_and(far)}."
        lines.append(text)
    return "\n".join(lines)


def position_bias_text(diag: pd.DataFrame) -> str:
    """The diagnostics table in words: the most position-biased cases and the mass outside the options.

    Ties are named as ties (six cases at 100 % are not "the most position-biased case"), and the mass
    outside the options is given per judge as a range, because an average over judges that put 90 % and
    0.1 % of their probability outside the options describes none of them.
    """
    if diag.empty:
        return "No diagnostics in this run."
    top = diag["p_option1_wins"].max()
    worst = diag[np.isclose(diag["p_option1_wins"], top)]
    cases = [f"**{r.evaluator}** on {r.dataset} ({r.task})" for r in worst.itertuples()]
    if len(cases) == 1:
        r = worst.iloc[0]
        text = (f"The most position-biased case is {cases[0]}: option 1 wins in {top:.1%} of prompts and "
                f"{r.ambiguous_1 + r.ambiguous_2:.1%} of pairs get the same position in both orders.")
    else:
        text = (f"{len(cases)} of the {len(diag)} (judge, dataset, task) cases tie as the most position-biased, "
                f"option 1 winning in {top:.1%} of their prompts: {_and(cases)}.")
    per_judge = diag.groupby("evaluator", sort=False)["mean_outside"].agg(["min", "max"])
    parts = [f"**{ev}** {lo:.1%}" + (f" to {hi:.1%}" if f"{hi:.1%}" != f"{lo:.1%}" else "")
             for ev, lo, hi in per_judge.itertuples()]
    text += (" The share of the next-token probability that fell outside the answer options, per judge (range "
             "over datasets and tasks): " + "; ".join(parts) + ". The renormalised probabilities above ignore "
             "that mass, so a judge that barely answers in the requested format still gets an $R$ and an $S$: "
             "they mean less.")
    return text


def sizes_text(profile: OpenModelsProfile, runs: pd.DataFrame) -> str:
    """The chapter's sizes line: articles judged (and summarised) per model, and any shortfall (Markdown).

    The hardware named in the shortfall sentence is read from ``runs`` (the stores' records of the live
    runs), so the prose cannot drift from the record.
    """
    written, short = profile.writers(), profile.shortfall()
    text = ("Sizes of this run: "
            + ", ".join(f"**{j}** judged {n} held-out articles per dataset"
                        + (f" (and summarised {written[j]})" if written[j] > n else "")
                        for j, n in profile.judges.items())
            + ". The fewer the articles, the wider the intervals below; read them before reading the bars.")
    if not short:
        return text
    where = sorted(set(runs["hardware"].dropna())) if "hardware" in runs else []
    return (text + " Short of the sizes this chapter is designed for: "
            + ", ".join(f"{j} ({n} of {t})" for j, (n, t) in short.items())
            + f". The `{profile.name}` profile was computed on "
            + (_and([f"`{h}`" for h in where]) if where else "unrecorded hardware")
            + " (the runs table above), where judging is slow. The stores resume: "
            "`judgelab run open-models --profile book --extend NAME=N` computes more articles for a judge "
            "(then raise its size in `judgelab/profiles.py`), and the `gpu` profile runs all 500 held-out articles.")


def sibling_findings(sib: pd.DataFrame, margin: float = CHANCE_MARGIN, few: int = 20) -> str:
    """What :func:`sibling_contrast` shows, in words, one line per judge and dataset (Markdown).

    The contrast only means something where the judge recognises itself against unrelated authors: when
    that R is within ``margin`` of chance there is no self-recognition for a sibling to make harder, and
    the text says so instead of reading overlapping intervals as "the sibling is no harder". Groups of
    fewer than ``few`` pairs get a warning: a bootstrap over so few articles understates the uncertainty.
    """
    lines = []
    for (ds, judge), g in sib.groupby(["dataset", "judge"], sort=False):
        s, u = (next(g[g["against"] == a].itertuples()) for a in ("sibling", "unrelated"))
        head = (f"- **{judge}**, {ds}, on the {s.n} pairs with a sibling: R against the sibling "
                f"{interval_text(s, 'recognition')}, against unrelated authors {interval_text(u, 'recognition')} -- ")
        if near_chance(u, "recognition", margin):
            lines.append(head + f"R against unrelated authors is itself within {margin:.2f} of chance, so there is "
                         "no self-recognition for a sibling to make harder: at this scale the contrast cannot tell "
                         "family style from self.")
        elif s.recognition_high >= u.recognition_low and u.recognition_high >= s.recognition_low:
            lines.append(head + "the intervals overlap: no sign that the sibling is harder to tell apart.")
        else:
            lines.append(head + f"the intervals do not overlap: R is "
                         f"{'lower' if s.recognition < u.recognition else 'higher'} against the sibling.")
    if not lines:
        return "No judge in this run has a sibling."
    smallest = int(sib["n"].min())
    return "\n".join(lines) + (f"\n\nThe smallest group has {smallest} pairs: a bootstrap over so few articles has "
                               "few distinct resamples, so its interval understates the uncertainty and that "
                               "contrast is a demonstration of the analysis, not evidence." if smallest < few else "")


def beside_paper(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Pooled R and S (``other == "all"``) of the open judges next to the paper's evaluators.

    ``paper`` is :func:`judgelab.experiments.reanalysis.pairwise_table` (recomputed from the released
    outputs); ``ours`` is :func:`pairwise_table`. Returns one row per dataset x evaluator with ``study``.
    """
    cols = ["dataset", "evaluator", "n", "recognition", "recognition_low", "recognition_high",
            "preference", "preference_low", "preference_high"]
    a = _pooled(paper)[cols].assign(study="paper (released outputs)")
    b = _pooled(ours)[cols].assign(study="open judge (this book)")
    return pd.concat([a, b], ignore_index=True)


def summary_lengths(summaries: pd.DataFrame) -> pd.DataFrame:
    """Words per summary of each judge and dataset, and how often cleaning changed the raw output."""
    df = summaries.assign(words=summaries["summary"].str.split().str.len(),
                          cleaned=summaries["summary"] != summaries["raw"].str.strip(),
                          empty=summaries["summary"].str.strip() == "")
    return (df.groupby(["dataset", "author"], sort=False)
              .agg(n=("key", "size"), mean_words=("words", "mean"), median_words=("words", "median"),
                   share_cleaned=("cleaned", "mean"), empty=("empty", "sum")).reset_index())


class CommittedTablesError(ValueError):
    """A run smaller than the book profile was about to overwrite the committed book tables."""


def check_committed_sizes(prof: OpenModelsProfile, results_dir: Path) -> None:
    """Refuse to write into the committed book directory a run that is smaller than the book profile.

    The committed tables are what the book shows; a smaller run there (``--extend NAME=N`` with N below the
    book's size, a ``ci`` run pointed at ``results/open_models``) would silently replace them. Every judge
    and summary writer of the book profile must be present with at least its book size.
    """
    book_dir = default_results_dir("book")
    if Path(results_dir).resolve() != book_dir.resolve():
        return
    book = open_models_profile("book")
    short = [f"{m}: {prof.judges.get(m, 0)} judged (book: {n})" for m, n in book.judges.items()
             if prof.judges.get(m, 0) < n]
    written = prof.writers()
    short += [f"{m}: {written.get(m, 0)} summarised (book: {n})" for m, n in book.writers().items()
              if written.get(m, 0) < n]
    if short:
        raise CommittedTablesError(
            f"refusing to overwrite the committed book tables in {book_dir} with a smaller run "
            f"(profile {prof.name}; {'; '.join(short)}); write it elsewhere with results_dir / --results-dir")


def write_tables(profile: str | OpenModelsProfile = "book", results_dir: Path | str | None = None,
                 progress: bool = True) -> dict[str, Path]:
    """Run or replay ``profile`` and write ``pairwise.csv``, ``individual.csv`` and diagnostics to ``results_dir``.

    Into the committed book directory only with at least the book profile's sizes
    (:func:`check_committed_sizes`, checked before anything runs); each table is written atomically.
    """
    prof = profile if isinstance(profile, OpenModelsProfile) else open_models_profile(profile)
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(prof.name)
    check_committed_sizes(prof, results_dir)
    return write_csvs(result_tables(run(prof, results_dir, progress)), results_dir)


def result_tables(res: OpenModelsResults) -> dict[str, pd.DataFrame]:
    """The tables :func:`write_tables` writes, by file name."""
    return {
        "pairwise.csv": res.pairwise_table(),
        "individual.csv": res.individual_table(),
        "individual_ratios.csv": ratios_table(res.individual),
        "diagnostics.csv": diagnostics_table(res.prompts, res.pairs),
        "kendall.csv": kendall_table(res.pairs),
        "debiased.csv": debiased_table(res.prompts),
    }

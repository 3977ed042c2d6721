"""The paper's source-label experiment, re-run with the open judges (issue 20, item 1).

Panickssery et al. label each summary with its source ("Summary1 (gpt4's summary):") and ask which summary
the judge prefers, with the labels correct, swapped ("wrong") or shuffled at random: if self-preference
were a preference for the *label* of one's own name, swapping the labels would move it. The released GPT
files answer this for GPT-4 and GPT-3.5 (chapter 2 re-analyses them); this module asks the same question of
the open judges, with the paper's prompt (:func:`judgelab.prompts.panickssery2024.source_label_messages`)
and the paper's labelling, copied from its ``generate_gpt_logprob_results_with_sources``:

- the judge is compared with the paper's five sources (human, claude, gpt35, gpt4, llama), each summary
  labelled with its author's key -- the judge's own with its name as the book's tables write it
  (``smollm2-135m-instruct``), as the paper's GPT-4 saw ``gpt4``; nothing tells the judge its name;
- ``correct``: forward (own summary first) labels ``(me, other)``, backward ``(other, me)``; ``wrong``: the
  labels of the other order; ``random``: ``[me, other]`` shuffled once per pair, forward takes it as it is
  and backward reversed, so each label stays on its summary or moves with it in both orders. The paper
  shuffled unseeded; here the shuffle is seeded by the article and the other author, so a rerun asks the
  same prompts (and the call store replays them). Note what this labelling implies: every random-label
  prompt *is* the correct- or the wrong-label prompt of its pair, word for word, so a judge read at
  temperature 0 (the paper's GPT calls, every judge here) answers it identically, and the random condition
  is by construction a mix of the other two (about half each); the call store holds each prompt once.

Per pair and condition: S renormalised over "1" and "2" and averaged over both orders (the book's S), and
the position-debiased S of :mod:`judgelab.experiments.debiased` (sigmoid of half the difference of the two
orders' log-odds: an additive position bias cancels), so a judge that answers by position -- every open
judge does -- still shows what the labels do underneath. Intervals resample articles.

The prompts go through each judge's own call store of the open-models book run (the same runtime and
identity as its R and S); the ``book`` profile replays them, and ``judgelab run labels --profile book
--live`` computes what the stores lack (they resume).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from judgelab import stats
from judgelab.data.self_recognition import load_articles
from judgelab.experiments import open_models as om
from judgelab.experiments.debiased import debiased_pairs
from judgelab.experiments.reanalysis import renormalised_pair
from judgelab.paths import write_csvs
from judgelab.profiles import open_models_profile
from judgelab.prompts import panickssery2024 as P

#: the paper's sources (``data.py``'s ``SOURCES``): the authors each judge is compared with
LABEL_AUTHORS = ("human", "claude", "gpt35", "gpt4", "llama")
CONDITIONS = ("correct", "wrong", "random")
#: values averaged per cell, each with a 95 % article-bootstrap interval
VALUES = ("preference", "debiased_preference", "preference_own_wins")


def default_results_dir(profile: str) -> Path:
    """Tables beside the open-models tables of ``profile`` (``results/open_models`` for the book)."""
    return om.default_results_dir(profile)


@dataclass(frozen=True)
class LabelsProfile:
    """Judges and held-out articles per dataset of the label experiment (the first ``n`` each judge judged)."""

    name: str
    judges: dict[str, int]
    replay: bool = False
    #: the open-models profile whose stores hold the judges' summaries and receive the label prompts
    source: str = "book"
    datasets: tuple[str, ...] = ("xsum", "cnn")
    targets: dict[str, int] = field(default_factory=dict)


LABELS_PROFILES: dict[str, LabelsProfile] = {
    "ci": LabelsProfile("ci", {"smollm2-135m-instruct": 2}, source="ci"),
    # computed live on this project's 2-core CPU (the stores' "run:labels-book" records name the hardware);
    # `judgelab run labels --profile book --judges NAME=N --live` grows a judge, then raise it here
    "book": LabelsProfile("book", {"smollm2-135m-instruct": 50, "qwen2.5-coder-0.5b-instruct": 20}, replay=True,
                          targets={"smollm2-135m-instruct": 200, "qwen2.5-coder-0.5b-instruct": 200}),
}


def labels_profile(name: str, judges: Sequence[str] | None = None, live: bool = False) -> LabelsProfile:
    """The profile ``name``; ``judges`` as ``NAME=N`` set (or add) a judge's size; ``live`` computes misses."""
    if name not in LABELS_PROFILES:
        raise ValueError(f"unknown labels profile {name!r}; choose one of {sorted(LABELS_PROFILES)}")
    prof = LABELS_PROFILES[name]
    sizes = dict(prof.judges)
    known = open_models_profile(prof.source).judges
    for item in judges or ():
        judge, eq, n = item.partition("=")
        if not eq or not n.strip().isdigit() or int(n) < 1:
            raise ValueError(f"expected NAME=N with N a whole number >= 1, got {item!r}")
        if judge not in known:
            raise ValueError(f"{judge!r} is not a judge of the open-models {prof.source} run (its summaries are "
                             f"needed); choose from {sorted(known)}")
        if int(n) > known[judge]:
            raise ValueError(f"{judge} judged {known[judge]} articles per dataset in the open-models run; "
                             f"{int(n)} asked")
        sizes[judge] = int(n)
    if live or os.environ.get("JUDGELAB_LIVE") == "1":
        prof = replace(prof, replay=False)
    return replace(prof, judges=sizes)


# --- prompts -----------------------------------------------------------------------------------------------
def labels_for(me: str, other: str, condition: str, key: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """The (Summary1, Summary2) source labels of the forward (own first) and backward prompts of one pair."""
    if condition == "correct":
        return (me, other), (other, me)
    if condition == "wrong":
        return (other, me), (me, other)
    if condition == "random":
        shuffled = [me, other]
        random.Random(f"{key}/{other}").shuffle(shuffled)
        return (shuffled[0], shuffled[1]), (shuffled[1], shuffled[0])
    raise ValueError(f"unknown label condition {condition!r}; expected one of {CONDITIONS}")


def label_requests(authors: pd.DataFrame, judge: str, articles: pd.Series) -> tuple[list[dict], list[om.Request]]:
    """Every condition, both orders, the judge's summary against each of :data:`LABEL_AUTHORS` it has."""
    me = om.short_name(judge)
    rows, reqs = [], []
    for dataset, key, article, own, by_author in om.own_articles(authors, judge, articles):
        for condition in CONDITIONS:
            for other in LABEL_AUTHORS:
                if other not in by_author:
                    continue
                fwd, bwd = labels_for(me, other, condition, key)
                for order, (s1, s2), (l1, l2) in (("forward", (own, by_author[other]), fwd),
                                                  ("backward", (by_author[other], own), bwd)):
                    rows.append({"dataset": dataset, "key": key, "condition": condition, "order": order,
                                 "other": other, "label1": l1, "label2": l2})
                    reqs.append(om.Request(f"{dataset}/{key}/labels-{condition}/{order}/{other}",
                                           P.source_label_messages(article, s1, s2, l1, l2)))
    return rows, reqs


def judge_labels(model, authors: pd.DataFrame, articles: pd.Series) -> pd.DataFrame:
    """One row per label prompt: raw P("1"), P("2") (NaN where the answer is invalid), the mass outside them,
    as :func:`~judgelab.experiments.open_models.ask_one_or_two` gives them for the pairwise tasks."""
    return om.ask_one_or_two(model, *label_requests(authors, model.name, articles))


# --- scores and tables -------------------------------------------------------------------------------------
def label_pairs(prompts: pd.DataFrame) -> pd.DataFrame:
    """Per (judge, dataset, article, other, condition): S, the debiased S and whether own wins once debiased."""
    keys = ["judge", "dataset", "key", "other", "condition"]
    dup = prompts.duplicated([*keys, "order"])
    if dup.any():
        raise ValueError(f"{int(dup.sum())} label prompts appear more than once, e.g. "
                         f"{prompts.loc[dup, [*keys, 'order']].iloc[0].to_dict()}")
    deb = debiased_pairs(prompts.assign(task="comparison"), keys)
    wide = prompts.set_index([*keys, "order"])[["p1", "p2"]].unstack("order")
    wide = wide.reindex(pd.MultiIndex.from_frame(deb[keys]))
    deb["preference"] = renormalised_pair(wide[("p1", "forward")], wide[("p2", "forward")],
                                          wide[("p1", "backward")], wide[("p2", "backward")])
    invalid = prompts.assign(bad=prompts["p1"].isna()).groupby(keys, sort=False)["bad"].sum()
    deb["invalid_prompts"] = invalid.reindex(pd.MultiIndex.from_frame(deb[keys])).to_numpy()
    return deb[[*keys, "preference", "debiased_preference", "preference_own_wins", "preference_d",
                "invalid_prompts"]]


def label_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per judge x dataset x condition (pooled over the other authors): n, each value with its interval,
    and the prompts whose answer was invalid (left out)."""
    by = ["dataset", "judge", "condition"]
    t = stats.bootstrap_mean_table(pairs, list(VALUES), by, cluster="key")
    cells = pd.MultiIndex.from_frame(t[by])
    grouped = pairs.groupby(by, sort=False)
    t["invalid_prompts"] = grouped["invalid_prompts"].sum().reindex(cells).to_numpy()
    t["pairs"] = grouped.size().reindex(cells).to_numpy()
    return t


def label_change(pairs: pd.DataFrame) -> pd.DataFrame:
    """What swapping the labels does, pair by pair: S and the debiased S with swapped labels minus with
    correct ones, per judge x dataset (pooled over the other authors), with paired article-bootstrap
    intervals (a pair's two conditions share the article and the texts, so the difference is paired)."""
    keys = ["dataset", "judge", "key", "other"]
    wide = pairs.set_index([*keys, "condition"])[["preference", "debiased_preference"]].unstack("condition")
    diff = wide.index.to_frame(index=False)
    for col, name in (("preference", "change"), ("debiased_preference", "change_debiased")):
        diff[name] = (wide[(col, "wrong")] - wide[(col, "correct")]).to_numpy()
    return stats.bootstrap_mean_table(diff, ["change", "change_debiased"], ["dataset", "judge"], cluster="key")


_DS = {"xsum": "XSUM", "cnn": "CNN/DailyMail"}


def labels_findings(table: pd.DataFrame, change: pd.DataFrame) -> str:
    """What the labels do to each open judge, from :func:`label_table` and :func:`label_change`: S and the
    debiased S with correct and swapped labels, and whether swapping moves the debiased S (the paired
    change's interval excludes 0) and which way. Tested on tables that make each clause wrong."""
    t = table.set_index(["dataset", "judge", "condition"])
    cells, moved = [], []
    for r in change.itertuples():
        ds, judge = r.dataset, r.judge
        if (ds, judge, "correct") not in t.index or (ds, judge, "wrong") not in t.index:
            continue
        c, w = t.loc[(ds, judge, "correct")], t.loc[(ds, judge, "wrong")]
        where = f"{judge} on {_DS.get(ds, ds)}"
        cells.append(f"{where} ({int(r.n)} pairs): S {c.preference:.3f} with correct labels and {w.preference:.3f} "
                     f"with swapped ones; debiased, {c.debiased_preference:.3f} against {w.debiased_preference:.3f}, "
                     f"a change of {r.change_debiased:+.3f} [{r.change_debiased_low:+.3f}, {r.change_debiased_high:+.3f}]")
        if r.change_debiased_high < 0:
            moved.append((where, "lowers"))
        elif r.change_debiased_low > 0:
            moved.append((where, "raises"))
    if not cells:
        return "The table holds no open judge with both correct and swapped labels."
    out = "With the paper's source labels, " + "; ".join(cells) + ". "
    if not moved:
        return out + (f"In none of these {len(cells)} cells does swapping the labels move the debiased S by more "
                      "than its interval: at this size the labels' effect, if any, is too small to see.")
    lowers = [w for w, d in moved if d == "lowers"]
    raises = [w for w, d in moved if d == "raises"]
    parts = []
    if lowers:
        parts.append(f"lowers it for {', '.join(lowers)} (whichever summary carries the judge's own key gains; "
                     "nothing tells the judge that the key is its name)")
    if raises:
        parts.append(f"raises it for {', '.join(raises)} (whichever summary carries the other author's key gains)")
    return out + (f"Swapping the labels moves the debiased S (interval of the paired change beyond 0) in "
                  f"{len(moved)} of {len(cells)} cells: it " + "; it ".join(parts) + ".")


# --- run ---------------------------------------------------------------------------------------------------
@dataclass
class LabelsResults:
    prompts: pd.DataFrame
    pairs: pd.DataFrame

    def table(self) -> pd.DataFrame:
        return label_table(self.pairs)

    def change(self) -> pd.DataFrame:
        return label_change(self.pairs)


def run(profile: str | LabelsProfile = "book", progress: bool = True) -> LabelsResults:
    """Replay the open-models run for the summaries, then ask (or replay) every judge's label prompts
    (through the judges' stores in the source run's folder)."""
    prof = profile if isinstance(profile, LabelsProfile) else labels_profile(profile)
    src = open_models_profile(prof.source)
    src_dir = om.default_results_dir(src.name)
    res = om.run(src, src_dir, progress=False)
    articles = pd.concat([load_articles(ds).set_index("key")["article"] for ds in prof.datasets])
    judging = replace(src, name=f"labels-{prof.name}", replay=prof.replay)
    prompts = []
    for judge, n in prof.judges.items():
        me = om.short_name(judge)
        with om._naming(judge, "asking the label prompts", src_dir):
            model = om.open_judge(judge, judging, src_dir, progress)
            for ds in prof.datasets:
                keys = om.held_out_keys(ds, n, src.first_article)
                authors = om.authors_table(ds, keys, [res.summaries[res.summaries["dataset"] == ds]])
                authors = authors[authors["author"].isin([*LABEL_AUTHORS, me])]
                t0 = time.perf_counter()
                prompts.append(judge_labels(model, authors, articles))
                if progress and not prof.replay:
                    print(f"{judge} {ds}: {len(prompts[-1])} label prompts in {time.perf_counter() - t0:.0f}s",
                          flush=True)
            model.store.close()
    prompts_df = pd.concat(prompts, ignore_index=True)
    return LabelsResults(prompts_df, label_pairs(prompts_df))


def write_tables(profile: str | LabelsProfile = "book", results_dir: Path | str | None = None,
                 progress: bool = True) -> dict[str, Path]:
    """Run or replay ``profile``; write ``labels_pairs.csv`` (per pair and condition), ``labels.csv`` (per
    judge, dataset and condition) and ``labels_change.csv`` (the paired change from correct to swapped)."""
    prof = profile if isinstance(profile, LabelsProfile) else labels_profile(profile)
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(prof.source)
    res = run(prof, progress)
    return write_csvs({"labels_pairs.csv": res.pairs, "labels.csv": res.table(), "labels_change.csv": res.change()},
                      results_dir)

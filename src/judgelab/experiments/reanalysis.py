"""Re-analysis of the released outputs of Panickssery, Bowman & Feng (2024), arXiv 2404.13076.

The authors released every evaluator output (github.com/ArjunPanickssery/self_recognition, commit
5b1cb73). This module turns those files into tidy tables and recomputes the paper's quantities from
the most primitive values each file holds, so that stored and recomputed numbers can be put side by
side:

* **Pairwise self-recognition R** and **self-preference S**. The evaluator sees its own summary and
  another source's summary of the same article, in both orders ("forward": own summary is option 1;
  "backward": own summary is option 2). Per pair::

      R_pair = 1/2 [ P_fwd("1") + P_bwd("2") ]      with P renormalised over {"1", "2"}

  and S the same with the "which summary is better" prompt. For Llama-2 the files keep the raw
  probabilities of "1" and "2", so R and S are recomputed here. For GPT-3.5/GPT-4 only the per-pair
  scores the authors computed from the top-2 log-probabilities were stored, so those are used as they
  are (they are not renormalised; see :func:`defects`).
* The **discrete view**: per pair the argmax answers in the two orders are *correct* ("1" then "2"),
  *incorrect* ("2" then "1") or *ambiguous* (the same answer twice, i.e. the answer follows the
  position, not the content).
* The **individual setting** (one summary at a time): P("Yes") to "did you write this?" and the
  probability-weighted 1-5 quality score, and their pairwise-ised ratio ``x_self / (x_self + x_other)``.
* Source-label experiments, prompt variants, fine-tuning experiments and quality drift.

Everything is computed from cached loads, so :func:`write_tables` runs in a few seconds after the
first call.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from judgelab import stats
from judgelab.data.self_recognition import AUTHORS, DATASETS, article_keys, load_json
from judgelab.experiments import audit, debiased
from judgelab.paths import write_csvs

#: Evaluators of the main pairwise experiment (the files ``results/{ds}/{evaluator}_results.json``).
EVALUATORS: tuple[str, ...] = ("gpt4", "gpt35", "llama")
#: Model families that were fine-tuned.
FT_FAMILIES: tuple[str, ...] = ("gpt35", "llama")
#: Fine-tuning variants: 2/10/500 self-recognition examples, and four controls trained on 500 examples
#: with a constant answer, random answers, or the more readable / longer / more-vowels summary.
FT_VARIANTS: tuple[str, ...] = ("2", "10", "500", "always_1", "random", "readability", "length", "vowelcount")
#: Headline numbers quoted by the paper (GPT-4 self-preference, pooled over the four other sources).
PUBLIC_NUMBERS = pd.DataFrame(
    [
        {"dataset": "xsum", "evaluator": "gpt4", "quantity": "preference", "public": 0.705},
        {"dataset": "cnn", "evaluator": "gpt4", "quantity": "preference", "public": 0.912},
    ]
)
#: Fine-tuned GPT-3.5 model ids in the upstream code (``models.py``); two controls share one id.
GPT35_FT_MODEL_IDS = {
    "xsum_always_1_ft_gpt35": "ft:gpt-3.5-turbo-1106:nyu-arg::8nZloDpW",
    "xsum_random_ft_gpt35": "ft:gpt-3.5-turbo-1106:nyu-arg::8nZloDpW",
    "cnn_always_1_ft_gpt35": "ft:gpt-3.5-turbo-1106:nyu-arg::8rYwud4k",
    "cnn_random_ft_gpt35": "ft:gpt-3.5-turbo-1106:nyu-arg::8rYvYVKD",
}
TOL = 1e-6


# --------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------


@functools.cache
def records(path: str) -> tuple:
    """The records of one upstream file (cached; treat as read-only)."""
    data = load_json(path)
    return tuple(data.values()) if isinstance(data, dict) else tuple(data)


@functools.cache
def key_index(dataset: str) -> dict[str, int]:
    """Article id -> position in the upstream article file (training used positions < N)."""
    return {k: i for i, k in enumerate(article_keys(dataset))}


def n_train(variant: str) -> int:
    """Number of training articles of a fine-tuning variant: 2, 10, else 500 (``keys[:N]``)."""
    return int(variant) if variant in ("2", "10") else 500


def family(evaluator: str) -> str:
    """``gpt35`` for any GPT-3.5 (base or fine-tuned), ``llama`` likewise; whose summaries are 'own'."""
    for fam in ("gpt35", "llama", "gpt4"):
        if evaluator.endswith(fam):
            return fam
    raise ValueError(evaluator)


def ft_name(trained_on: str, variant: str, fam: str) -> str:
    return f"{trained_on}_{variant}_ft_{fam}"


def renormalised_pair(p_fwd_1, p_fwd_2, p_bwd_1, p_bwd_2):
    """1/2 [P_fwd("1") + P_bwd("2")] with each order's probabilities renormalised over {"1", "2"}.

    Renormalising matters for Llama-2: a sizeable share of its next-token mass goes to tokens other than
    "1" and "2", and that share differs between the two orders.
    """
    p_fwd_1, p_fwd_2, p_bwd_1, p_bwd_2 = (np.asarray(v, dtype=float) for v in (p_fwd_1, p_fwd_2, p_bwd_1, p_bwd_2))
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN raw outputs stay NaN
        return 0.5 * (p_fwd_1 / (p_fwd_1 + p_fwd_2) + p_bwd_2 / (p_bwd_1 + p_bwd_2))


def first_position_pair(p_fwd_1, p_fwd_2, p_bwd_1, p_bwd_2):
    """1/2 [P_fwd("1") + P_bwd("1")] (renormalised): how much the model favours *position 1*.

    This is what most fine-tuned Llama files store as their score. It does not measure recognition.
    """
    p_fwd_1, p_fwd_2, p_bwd_1, p_bwd_2 = (np.asarray(v, dtype=float) for v in (p_fwd_1, p_fwd_2, p_bwd_1, p_bwd_2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return 0.5 * (p_fwd_1 / (p_fwd_1 + p_fwd_2) + p_bwd_1 / (p_bwd_1 + p_bwd_2))


def outcome(forward, backward) -> pd.Series:
    """Discrete outcome of a pair from the answers in the two orders (own summary first, then second)."""
    f, b = pd.Series(forward).astype(str).to_numpy(), pd.Series(backward).astype(str).to_numpy()
    out = np.select(
        [(f == "1") & (b == "2"), (f == "2") & (b == "1"), (f == "1") & (b == "1"), (f == "2") & (b == "2")],
        ["correct", "incorrect", "ambiguous_1", "ambiguous_2"],
        default="other",
    )
    return pd.Series(out, index=pd.Series(forward).index)


_RAW = {
    "det": ("forward_detection_output", "backward_detection_output"),
    "cmp": ("forward_comparison_output", "backward_comparison_output"),
}


def pairs_from_records(recs, dataset: str, evaluator: str) -> pd.DataFrame:
    """Tidy per-pair table from pairwise records (GPT or Llama format).

    Columns: ``dataset, evaluator, family, other, key, index, forward_detection, backward_detection,
    forward_comparison, backward_comparison, stored_recognition, stored_preference, recognition,
    preference, recognition_outcome, preference_outcome`` and, for Llama records, the raw probabilities
    ``{fd,bd,fc,bc}_{1,2}`` (forward/backward detection/comparison, option 1/2).

    ``recognition``/``preference`` are recomputed (renormalised) from raw probabilities when the
    records have them and are the stored scores otherwise. For Llama the discrete answers are the
    argmax of the raw probabilities.
    """
    df = pd.DataFrame(list(recs))
    idx = key_index(dataset)
    out = pd.DataFrame(
        {
            "dataset": dataset,
            "evaluator": evaluator,
            "family": family(evaluator),
            "other": df["model"].astype(str),
            "key": df["key"].astype(str),
            "index": df["key"].map(idx).astype("Int64"),
        }
    )
    out["stored_recognition"] = pd.to_numeric(df.get("detection_score"), errors="coerce")
    out["stored_preference"] = pd.to_numeric(df.get("self_preference"), errors="coerce")
    if "forward_detection_output" in df.columns:
        for task, (fcol, bcol) in _RAW.items():
            for side, col in (("f", fcol), ("b", bcol)):
                for opt in ("1", "2"):
                    out[f"{side}{task[0]}_{opt}"] = df[col].map(lambda d, o=opt: d[o]).astype(float)
        out["recognition"] = renormalised_pair(out["fd_1"], out["fd_2"], out["bd_1"], out["bd_2"])
        out["preference"] = renormalised_pair(out["fc_1"], out["fc_2"], out["bc_1"], out["bc_2"])
        for name, t in (("detection", "d"), ("comparison", "c")):
            out[f"forward_{name}"] = np.where(out[f"f{t}_1"] >= out[f"f{t}_2"], "1", "2")
            out[f"backward_{name}"] = np.where(out[f"b{t}_1"] >= out[f"b{t}_2"], "1", "2")
            out[f"stored_forward_{name}"] = df[f"forward_{name}"].astype(str)
            out[f"stored_backward_{name}"] = df[f"backward_{name}"].astype(str)
    else:
        out["recognition"] = out["stored_recognition"]
        out["preference"] = out["stored_preference"]
        for name in ("detection", "comparison"):
            for side in ("forward", "backward"):
                col = f"{side}_{name}"
                out[col] = df[col].astype(str) if col in df.columns else pd.NA
    out["recognition_outcome"] = outcome(out["forward_detection"], out["backward_detection"])
    out["preference_outcome"] = outcome(out["forward_comparison"], out["backward_comparison"])
    return out


def pairs(dataset: str, evaluator: str, folder: str = "results", held_out: int = 0) -> pd.DataFrame:
    """Per-pair table of one released pairwise file.

    ``folder`` is ``results`` (default), ``results_with_worse``, ``results_vs_human`` or
    ``results_vs_model`` (the last two have no dataset sub-folder; they are XSUM). ``held_out=N`` keeps
    only articles at positions >= N (the articles not used to fine-tune a model trained on N).
    """
    return _pairs(dataset, evaluator, folder, held_out).copy()


@functools.cache
def _pairs(dataset: str, evaluator: str, folder: str, held_out: int) -> pd.DataFrame:
    path = _pair_path(dataset, evaluator, folder)
    df = pairs_from_records(records(path), dataset, evaluator)
    df["file"] = path
    if held_out:
        df = df[df["index"] >= held_out].reset_index(drop=True)
    return df


def _pair_path(dataset: str, evaluator: str, folder: str) -> str:
    if folder in ("results_vs_human", "results_vs_model"):
        if dataset != "xsum":
            raise ValueError(f"{folder} exists for xsum only")
        return f"{folder}/{evaluator}_results.json"
    return f"{folder}/{dataset}/{evaluator}_results.json"


def base_pairs() -> pd.DataFrame:
    """All pairs of the three base evaluators on both datasets (recomputed R and S)."""
    return pd.concat([pairs(ds, ev) for ds in DATASETS for ev in EVALUATORS], ignore_index=True)


# --------------------------------------------------------------------------------------------------
# pairwise R and S
# --------------------------------------------------------------------------------------------------


def summarise(df: pd.DataFrame, by=("dataset", "evaluator"), pooled: bool = True,
              values=("recognition", "preference")) -> pd.DataFrame:
    """Means with 95 % article-bootstrap CIs per ``by`` x other source, plus ``other='all'`` pooled."""
    by = list(by)
    per_other = stats.bootstrap_mean_table(df, list(values), by + ["other"], cluster="key")
    if not pooled:
        return per_other
    pooled_t = stats.bootstrap_mean_table(df, list(values), by, cluster="key").assign(other="all")
    out = pd.concat([per_other, pooled_t[per_other.columns]], ignore_index=True)
    order = {a: i for i, a in enumerate((*AUTHORS, "all"))}
    return out.sort_values(by + ["other"], key=lambda s: s.map(order) if s.name == "other" else s.map(
        {v: i for i, v in enumerate(pd.unique(df[s.name]))}), ignore_index=True)


def pairwise_table() -> pd.DataFrame:
    """R and S per dataset x evaluator x other source (and ``all``), with 95 % bootstrap CIs.

    Columns exactly ``dataset, evaluator, other, n, recognition, recognition_low, recognition_high,
    preference, preference_low, preference_high``. Llama values are recomputed from raw probabilities;
    GPT values are the stored per-pair scores.
    """
    out = summarise(base_pairs())
    cols = ["dataset", "evaluator", "other", "n", "recognition", "recognition_low", "recognition_high",
            "preference", "preference_low", "preference_high"]
    return out[cols]


def public_comparison() -> pd.DataFrame:
    """The paper's headline numbers beside ours (pooled over the four other sources)."""
    pw = pairwise_table()
    pooled = pw[pw["other"] == "all"]
    rows = []
    for r in PUBLIC_NUMBERS.itertuples():
        m = pooled[(pooled.dataset == r.dataset) & (pooled.evaluator == r.evaluator)].iloc[0]
        rows.append({"dataset": r.dataset, "evaluator": r.evaluator, "quantity": r.quantity,
                     "public": r.public, "ours": m[r.quantity], "ours_low": m[f"{r.quantity}_low"],
                     "ours_high": m[f"{r.quantity}_high"], "difference": m[r.quantity] - r.public})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# discrete view, Kendall tau
# --------------------------------------------------------------------------------------------------


def discrete_table(df: pd.DataFrame | None = None, by=("dataset", "evaluator")) -> pd.DataFrame:
    """Share of pairs that are correct / incorrect / ambiguous, per task, plus the share of "1" answers.

    ``first_share`` is the fraction of all answers (both orders) that were "1". A content-blind model
    that always picks the first option has ``first_share = 1`` and every pair ``ambiguous_1``.
    """
    df = base_pairs() if df is None else df
    rows = []
    for keys, g in df.groupby(list(by), sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        for task, oc, f, b in (("recognition", "recognition_outcome", "forward_detection", "backward_detection"),
                               ("preference", "preference_outcome", "forward_comparison", "backward_comparison")):
            counts = g[oc].value_counts(normalize=True)
            answers = pd.concat([g[f], g[b]]).astype(str)
            rows.append({**dict(zip(by, keys)), "task": task, "n": len(g),
                         **{c: float(counts.get(c, 0.0)) for c in ("correct", "incorrect", "ambiguous_1", "ambiguous_2")},
                         "ambiguous": float(counts.get("ambiguous_1", 0.0) + counts.get("ambiguous_2", 0.0)),
                         "first_share": float((answers == "1").mean()),
                         "forward_first_share": float((g[f].astype(str) == "1").mean())})
    return pd.DataFrame(rows)


def kendall_table(df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Kendall tau between item-level R and S per evaluator and dataset (do recognised pairs get preferred?)."""
    df = base_pairs() if df is None else df
    return stats.kendall_tau_table(df, "recognition", "preference", ["dataset", "evaluator"])


# --------------------------------------------------------------------------------------------------
# individual setting
# --------------------------------------------------------------------------------------------------


def individual(dataset: str, evaluator: str) -> pd.DataFrame:
    """One row per (article, target source): ``p_yes`` (P("Yes"), "did you write this?") and ``score``.

    ``score`` is recomputed as sum(k * p_k) / sum(p_k) over k = 1..5; ``stored_score`` beside it.
    Rows exist only where both files have the (article, target) (GPT recognition records without
    "Yes" among the top-2 tokens were dropped upstream).
    """
    rec = pd.DataFrame(list(records(f"individual_setting_results/recognition_results/{dataset}/{evaluator}_results.json")))
    sco = pd.DataFrame(list(records(f"individual_setting_results/score_results/{dataset}/{evaluator}_results.json")))
    rec = rec.rename(columns={"target_model": "target", "recognition_score": "p_yes"})[["key", "target", "p_yes"]]
    probs = pd.DataFrame(list(sco["scores"])).reindex(columns=list("12345")).fillna(0.0).astype(float)
    sco = pd.DataFrame({"key": sco["key"], "target": sco["target_model"],
                        "score": (probs * np.arange(1, 6)).sum(axis=1) / probs.sum(axis=1),
                        "stored_score": sco.get("score")})
    out = rec.merge(sco, on=["key", "target"], how="inner")
    out.insert(0, "evaluator", evaluator)
    out.insert(0, "dataset", dataset)
    out["index"] = out["key"].map(key_index(dataset))
    return out


def individual_pairwise(dataset: str, evaluator: str) -> pd.DataFrame:
    """Pairwise-ised individual scores: per (article, other) ``x_self / (x_self + x_other)``.

    ``recognition`` uses P("Yes"), ``preference`` the expected score. 0.5 = no difference between
    own and other summary, above 0.5 = own summary rated as more likely own / better.
    """
    ind = individual(dataset, evaluator)
    own = family(evaluator)
    mine = ind[ind["target"] == own][["key", "p_yes", "score"]]
    other = ind[ind["target"] != own].merge(mine, on="key", suffixes=("_other", "_self"))
    return pd.DataFrame({
        "dataset": dataset, "evaluator": evaluator, "other": other["target"], "key": other["key"],
        "recognition": other["p_yes_self"] / (other["p_yes_self"] + other["p_yes_other"]),
        "preference": other["score_self"] / (other["score_self"] + other["score_other"]),
    })


def individual_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(raw means of P("Yes") and score per target source, pairwise-ised R and S with CIs)."""
    ind = pd.concat([individual(ds, ev) for ds in DATASETS for ev in EVALUATORS], ignore_index=True)
    raw = stats.bootstrap_mean_table(ind, ["p_yes", "score"], ["dataset", "evaluator", "target"], cluster="key")
    pw = pd.concat([individual_pairwise(ds, ev) for ds in DATASETS for ev in EVALUATORS], ignore_index=True)
    return raw, summarise(pw)


# --------------------------------------------------------------------------------------------------
# labels and prompt variants
# --------------------------------------------------------------------------------------------------

LABEL_CONDITIONS = {"correct": "correct_label_results", "wrong": "wrong_label_results", "random": "random_label_results"}


def label_pairs(dataset: str, evaluator: str, condition: str) -> pd.DataFrame:
    """Per-pair self-preference when the summaries carry source labels (correct, swapped or random).

    For GPT the stored two-order score is used, except where the audit finds that a file stores the
    preference for the *other* summary (the XSUM wrong-label files, :func:`judgelab.experiments.audit.
    stored_reversed`): there ``preference`` is ``1 - stored``, so that every condition measures the
    preference for the evaluator's own summary, and ``stored_preference`` keeps the stored value. For
    Llama the released score comes from a single order (own summary first), so it is renormalised P("1")
    and carries Llama's position bias; it is recomputed from ``label_results/raw_llama_label_results``.
    """
    path = f"label_results/{LABEL_CONDITIONS[condition]}/{dataset}/{evaluator}_results.json"
    df = pd.DataFrame(list(records(path)))
    idx = key_index(dataset)
    df = df[df["key"].isin(idx)].reset_index(drop=True)  # cnn Llama label files also hold the XSUM records
    if evaluator == "llama" and condition == "random":
        # Every record of these files is a copy of the article's *human* comparison (model="human", its
        # random labels and its P("1"), four times: defects.csv). The raw file (same key order) names the
        # four sources; ``preference`` below comes from it, ``stored_preference`` stays the stored copy.
        raw = pd.DataFrame(list(records(f"label_results/raw_llama_label_results/{dataset}_label_llama_raw.json")))
        if len(raw) == len(df) and (raw["key"].to_numpy() == df["key"].to_numpy()).all():
            df["model"] = raw["model"].to_numpy()
    out = pd.DataFrame({"dataset": dataset, "evaluator": evaluator, "condition": condition,
                        "other": df["model"].astype(str), "key": df["key"].astype(str),
                        "stored_preference": df["self_preference"].astype(float)})
    out["preference"] = (1 - out["stored_preference"]) if audit.stored_reversed(path) else out["stored_preference"]
    if evaluator == "llama":
        raw = pd.DataFrame(list(records(f"label_results/raw_llama_label_results/{dataset}_label_llama_raw.json")))
        col = {"correct": "correct_label_output", "wrong": "incorrect_label_output", "random": "random_label_output"}[condition]
        raw["p1"] = raw[col].map(lambda d: d["1"] / (d["1"] + d["2"]))
        m = out.merge(raw[["key", "model", "p1"]].rename(columns={"model": "other"}), on=["key", "other"], how="left")
        out["preference"] = m["p1"].to_numpy()
    return out.reset_index(drop=True)


def label_table() -> pd.DataFrame:
    """Mean self-preference with CIs per dataset x evaluator x label condition (pooled over others)."""
    frames = [label_pairs(ds, ev, c) for ds in DATASETS for ev in EVALUATORS for c in LABEL_CONDITIONS]
    frames += [label_pairs("xsum", "xsum_500_ft_gpt35", c) for c in LABEL_CONDITIONS]
    df = pd.concat(frames, ignore_index=True)
    return stats.bootstrap_mean_table(df, ["preference", "stored_preference"], ["dataset", "evaluator", "condition"],
                                      cluster="key")


_WHO = {"gpt4": "GPT-4", "gpt35": "GPT-3.5", "llama": "Llama-2", "xsum_500_ft_gpt35": "the GPT-3.5 fine-tuned on 500 XSUM examples"}
_DS = {"xsum": "XSUM", "cnn": "CNN/DailyMail"}


def label_findings(labels: pd.DataFrame, evaluators=("gpt4", "gpt35", "xsum_500_ft_gpt35")) -> str:
    """Generated sentences on the label experiment, from :func:`label_table` (``preference``: corrected).

    For every two-order (GPT) cell: S with correct, swapped and random labels; whether swapping lowers S
    (its interval entirely below the correct-label one), and whether the swapped-label S stays on the same
    side of 0.5 as the correct-label S (interval beyond 0.5). The closing sentence says "the text decides"
    only if no swapped-label interval crosses to the other side of chance. Tested on tables that would make
    each clause wrong.
    """
    t = labels.set_index(["dataset", "evaluator", "condition"])
    cells, lowered, kept, flipped = [], 0, 0, []
    for ds in DATASETS:
        for ev in evaluators:
            if (ds, ev, "correct") not in t.index or (ds, ev, "wrong") not in t.index:
                continue
            c, w = t.loc[(ds, ev, "correct")], t.loc[(ds, ev, "wrong")]
            r = t.loc[(ds, ev, "random")] if (ds, ev, "random") in t.index else None
            lowered += bool(w.preference_high < c.preference_low)
            side_c = np.sign(c.preference - 0.5)
            same_side = (w.preference_low > 0.5) if side_c > 0 else (w.preference_high < 0.5)
            kept += bool(same_side)
            if (w.preference_high < 0.5 and c.preference > 0.5) or (w.preference_low > 0.5 and c.preference < 0.5):
                flipped.append(f"{_WHO.get(ev, ev)} on {_DS[ds]}")
            cells.append(f"{_WHO.get(ev, ev)} on {_DS[ds]}: {c.preference:.3f} with correct labels, {w.preference:.3f} "
                         f"[{w.preference_low:.3f}, {w.preference_high:.3f}] with swapped labels"
                         + (f", {r.preference:.3f} with random ones" if r is not None else ""))
    n = len(cells)
    if not n:
        return "The table holds no two-order label experiment."
    out = "Self-preference S under each labelling: " + "; ".join(cells) + ". "
    out += (f"Swapping the labels lowers S in {lowered} of these {n} cells (intervals apart), and the swapped-label S "
            f"stays on the same side of 0.5 as with correct labels in {kept} of {n}")
    if flipped:
        out += f"; it crosses chance for {', '.join(flipped)}: there the label, not the text, decides."
    elif kept == n:
        out += ": the labels nudge the choice, the text decides it."
    else:
        out += "; in the others it comes to chance."
    return out


def variants_table() -> pd.DataFrame:
    """R and S under prompt variants, beside the standard prompt, pooled over other sources.

    ``vs_human``/``vs_model``: recognition prompts that say the other summary is by a human / by another
    model (XSUM only). ``with_worse``: the preference prompt asks which summary is *worse* (answers
    flipped upstream so that S keeps its meaning).
    """
    frames = []
    for ev in ("gpt4", "gpt35", "xsum_500_ft_gpt35"):
        held = 500 if ev.startswith("xsum_500") else 0
        for folder, name in (("results", "standard"), ("results_vs_human", "vs_human"), ("results_vs_model", "vs_model"),
                             ("results_with_worse", "with_worse")):
            frames.append(pairs("xsum", ev, folder, held).assign(prompt=name))
    for ev in ("gpt4", "gpt35"):
        for folder, name in (("results", "standard"), ("results_with_worse", "with_worse")):
            frames.append(pairs("cnn", ev, folder).assign(prompt=name))
    df = pd.concat(frames, ignore_index=True)
    return stats.bootstrap_mean_table(df, ["recognition", "preference"], ["dataset", "evaluator", "prompt"], cluster="key")


# --------------------------------------------------------------------------------------------------
# fine-tuning
# --------------------------------------------------------------------------------------------------


def finetuned_pairs() -> pd.DataFrame:
    """Held-out pairs (article position >= N) of every fine-tuned evaluator on both datasets."""
    frames = []
    for fam in FT_FAMILIES:
        for tr in DATASETS:
            for v in FT_VARIANTS:
                for ev_ds in DATASETS:
                    # A model trained on the other dataset never saw these articles; keep the same
                    # held-out positions anyway so that every variant is scored on comparable sets.
                    df = pairs(ev_ds, ft_name(tr, v, fam), "results", n_train(v))
                    frames.append(df.assign(trained_on=tr, variant=v, n_train=n_train(v), evaluated_on=ev_ds))
    return pd.concat(frames, ignore_index=True)


def finetuned_table() -> pd.DataFrame:
    """Mean recomputed R and S of every fine-tuned variant on held-out articles, stored means beside them.

    Columns: ``evaluator_family, trained_on, evaluated_on, variant, n_train, n_eval, recognition,
    preference, stored_recognition, stored_preference`` then CI bounds. ``n_eval`` = held-out articles.
    """
    df = finetuned_pairs()
    rows = []
    for (fam, tr, ev_ds, v), g in df.groupby(["family", "trained_on", "evaluated_on", "variant"], sort=False):
        r = stats.bootstrap_mean(g["recognition"], g["key"])
        s = stats.bootstrap_mean(g["preference"], g["key"])
        rows.append({"evaluator_family": fam, "trained_on": tr, "evaluated_on": ev_ds, "variant": v,
                     "n_train": n_train(v), "n_eval": g["key"].nunique(),
                     "recognition": r.estimate, "preference": s.estimate,
                     "stored_recognition": g["stored_recognition"].mean(),
                     "stored_preference": g["stored_preference"].mean(),
                     "recognition_low": r.low, "recognition_high": r.high,
                     "preference_low": s.low, "preference_high": s.high, "n_pairs": len(g)})
    return pd.DataFrame(rows)


def finetune_scatter_data() -> pd.DataFrame:
    """Points for the R-vs-S scatter: every fine-tuned variant plus the untuned base model of its family."""
    ft = finetuned_table()
    pw = pairwise_table()
    base = pw[(pw.other == "all") & pw.evaluator.isin(FT_FAMILIES)]
    base_rows = pd.DataFrame({"evaluator_family": base.evaluator, "trained_on": "none", "evaluated_on": base.dataset,
                              "variant": "base", "n_train": 0, "recognition": base.recognition,
                              "preference": base.preference, "stored_recognition": np.nan, "stored_preference": np.nan})
    return pd.concat([ft, base_rows], ignore_index=True)


def finetune_correlation(data: pd.DataFrame | None = None) -> pd.DataFrame:
    """Pearson r (with CI) and OLS line of mean S on mean R over variants, recomputed vs stored values.

    One row per family (and ``all``) and per value source (``recomputed``/``stored``): the stored
    values of the Llama files measure position bias, so the two rows show how much the published trend
    depends on them.
    """
    data = finetune_scatter_data() if data is None else data
    rows = []
    for fam in (*FT_FAMILIES, "all"):
        sub = data if fam == "all" else data[data.evaluator_family == fam]
        for source, (x, y) in (("recomputed", ("recognition", "preference")),
                               ("stored", ("stored_recognition", "stored_preference"))):
            s = sub.dropna(subset=[x, y])
            if len(s) < 3:
                continue
            rows.append({"family": fam, "values": source, **stats.pearson(s[x], s[y]),
                         **{k: v for k, v in stats.linear_fit(s[x], s[y]).items() if k in ("slope", "intercept", "r2")}})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# quality drift
# --------------------------------------------------------------------------------------------------


def drift_table() -> pd.DataFrame:
    """Preference for a fine-tuned model's new summaries over the base model's original ones (50 articles).

    Files ``comparisons/{ds}/{trained_on}_{variant}_ft_{family}_comparisons.json``. For Llama the score is
    recomputed from raw forward/backward probabilities (new summary = option 1 in forward); NaN items
    (the raw outputs themselves are NaN) are counted and left out. 0.5 = no quality change.
    """
    rows = []
    for fam in FT_FAMILIES:
        for tr in DATASETS:
            for v in FT_VARIANTS:
                for ds in DATASETS:
                    df = pd.DataFrame(list(records(f"comparisons/{ds}/{ft_name(tr, v, fam)}_comparisons.json")))
                    stored = pd.to_numeric(df["new_preference"], errors="coerce")
                    if "forward" in df.columns:
                        p = lambda col, o: df[col].map(lambda d: d[o]).astype(float)  # noqa: E731
                        val = pd.Series(renormalised_pair(p("forward", "1"), p("forward", "2"),
                                                          p("backward", "1"), p("backward", "2")))
                    else:
                        val = stored
                    iv = stats.bootstrap_mean(val)
                    rows.append({"evaluator_family": fam, "trained_on": tr, "variant": v, "evaluated_on": ds,
                                 "n": len(df), "n_nan": int(val.isna().sum()), "new_preference": iv.estimate,
                                 "new_preference_low": iv.low, "new_preference_high": iv.high,
                                 "stored_new_preference": float(stored.mean())})
    return pd.DataFrame(rows)


def drift_coverage() -> pd.DataFrame:
    """Which articles the quality-drift data cover, and how many of them the model was fine-tuned on.

    Upstream ``generate_summaries.py`` wrote each fine-tuned GPT-3.5 model's new summaries for
    ``xsum_keys[:50]`` and ``cnn_keys[:50]``, i.e. the *first* 50 articles, while fine-tuning used
    ``keys[:N]`` (N = 2, 10 or 500). One row per ``comparisons/{ds}/{model}_comparisons.json`` file
    (both families), with the article positions it covers, and for GPT-3.5 the same for the
    ``summaries/{ds}/{model}_responses.json`` file of new summaries (no Llama summaries were released).

    ``training_articles`` counts compared articles at positions < N of a model fine-tuned on the
    evaluated dataset (else 0); ``held_out_articles`` the compared articles it was not trained on.
    """
    rows = []
    for fam in FT_FAMILIES:
        for tr in DATASETS:
            for v in FT_VARIANTS:
                for ds in DATASETS:
                    name, idx = ft_name(tr, v, fam), key_index(ds)
                    n = n_train(v) if tr == ds else 0
                    cmp_pos = pd.Series([r["key"] for r in records(f"comparisons/{ds}/{name}_comparisons.json")]).map(idx)
                    row = {"evaluator_family": fam, "trained_on": tr, "variant": v, "evaluated_on": ds,
                           "n_train": n_train(v), "comparisons_file": f"comparisons/{ds}/{name}_comparisons.json",
                           "n_compared": int(cmp_pos.notna().sum()), "compared_first": int(cmp_pos.min()),
                           "compared_last": int(cmp_pos.max()),
                           "compared_are_first_50": set(cmp_pos.dropna().astype(int)) == set(range(50)),
                           "training_articles": int((cmp_pos < n).sum()), "held_out_articles": int((cmp_pos >= n).sum()),
                           "summaries_file": None, "n_summaries": np.nan, "summaries_first": np.nan,
                           "summaries_last": np.nan, "summaries_training_articles": np.nan}
                    if fam == "gpt35":
                        path = f"summaries/{ds}/{name}_responses.json"
                        sum_pos = pd.Series(list(load_json(path))).map(idx)
                        row.update({"summaries_file": path, "n_summaries": int(sum_pos.notna().sum()),
                                    "summaries_first": int(sum_pos.min()), "summaries_last": int(sum_pos.max()),
                                    "summaries_training_articles": int((sum_pos < n).sum())})
                    rows.append(row)
    return pd.DataFrame(rows)


def _drift_coverage_defects(dc: pd.DataFrame | None = None) -> list[dict]:
    """Defect rows for the quality-drift data (appended at the end of :func:`defects`)."""
    dc = drift_coverage() if dc is None else dc
    rows = []
    own = dc[dc.training_articles > 0]
    if len(own):
        per_n = own.groupby("n_train").agg(files=("comparisons_file", "size"), train=("training_articles", "min"),
                                           train_max=("training_articles", "max"), compared=("n_compared", "max"))
        parts = "; ".join(f"N={n}: {int(r.files)} files, {int(r.train)}"
                          + (f"-{int(r.train_max)}" if r.train_max != r.train else "")
                          + f" of {int(r.compared)} compared articles are training articles"
                          for n, r in per_n.iterrows())
        gs = own[own.evaluator_family == "gpt35"]
        rows.append({"defect": "quality drift measured on the articles the model was fine-tuned on",
                     "file": f"{len(own)} of {len(dc)} comparisons/*_ft_* files (model trained on the evaluated dataset)",
                     "evidence": "upstream generate_summaries.py writes the new summaries for keys[:50], the first 50 "
                                 f"articles, which hold the fine-tuning articles keys[:N]; {int(dc.compared_are_first_50.sum())} "
                                 f"of {len(dc)} comparisons files compare exactly positions 0-49; {parts}; in the "
                                 f"{len(gs)} GPT-3.5 new-summary files of these models {int(gs.summaries_training_articles.sum())} "
                                 f"of {int(gs.n_summaries.sum())} summaries are of training articles",
                     "n_affected": int(own.training_articles.sum()),
                     "stored": f"{int(own.training_articles.sum())} of {int(own.n_compared.sum())} comparisons on training articles",
                     "recomputed": f"{int(own.held_out_articles.sum())} held-out comparisons (none for N=500)"})
    short = dc[dc.summaries_file.notna() & (dc.n_summaries < dc.n_compared)]
    if len(short):
        rows.append({"defect": "quality drift: fewer new summaries than comparisons",
                     "file": f"{len(short)} summaries/*_ft_gpt35_responses.json files",
                     "evidence": "; ".join(f"{r.summaries_file}: {int(r.n_summaries)} summaries (positions "
                                           f"{int(r.summaries_first)}-{int(r.summaries_last)}), {r.n_compared} comparisons"
                                           for r in short.itertuples()),
                     "n_affected": int((short.n_compared - short.n_summaries).sum()),
                     "stored": f"{int(short.n_compared.sum())} comparisons",
                     "recomputed": f"{int(short.n_summaries.sum())} summaries released"})
    return rows


# --------------------------------------------------------------------------------------------------
# position-debiased scores (issue 20, item 1; the computation is in judgelab.experiments.debiased)
# --------------------------------------------------------------------------------------------------


def llama_prompts(df: pd.DataFrame, keys=("evaluator", "dataset", "key", "other")) -> pd.DataFrame:
    """Per-prompt frame (``*keys, task, order, p1, p2``) from Llama per-pair rows (the raw ``fd_1`` ... ``bc_2``).

    The raw fields are used, never the stored ``detection_score`` / ``self_preference``, which are swapped or
    hold a position score in many Llama files (:func:`llama_formula_table`, ``defects.csv``); the raw
    ``forward_*_output`` / ``backward_*_output`` fields follow the design (forward: own summary is option 1),
    which is what the recomputed R and S of the chapter rest on.
    """
    keys = list(keys)
    frames = []
    for task, t in (("detection", "d"), ("comparison", "c")):
        for order, side in (("forward", "f"), ("backward", "b")):
            frames.append(df[keys].assign(task=task, order=order, p1=df[f"{side}{t}_1"].to_numpy(),
                                          p2=df[f"{side}{t}_2"].to_numpy()))
    return pd.concat(frames, ignore_index=True)


def llama_debiased_pairs() -> pd.DataFrame:
    """Per-pair d for out-of-the-box Llama-2 (every article) and every fine-tuned Llama-2 (held-out articles).

    Held-out positions as in :func:`finetuned_table` (article position >= N for a variant trained on N).
    Columns of :func:`judgelab.experiments.debiased.debiased_pairs` plus ``trained_on, variant``.
    """
    keys = ["trained_on", "variant", "evaluator", "dataset", "key", "other"]
    base = pd.concat([pairs(ds, "llama") for ds in DATASETS], ignore_index=True).assign(trained_on="none", variant="none")
    ft = finetuned_pairs()
    ft = ft[ft["family"] == "llama"]
    both = pd.concat([base, ft[base.columns]], ignore_index=True)
    return debiased.debiased_pairs(llama_prompts(both, keys), keys)


def llama_debiased_table() -> pd.DataFrame:
    """``debiased.csv``: debiased R and S of Llama-2, out of the box (``variant`` none) and fine-tuned.

    One row per ``dataset`` (evaluated on) x ``trained_on`` x ``variant`` x other source, and ``other='all'``
    pooled; columns of :func:`judgelab.experiments.debiased.debiased_table`.
    """
    return debiased.debiased_table(llama_debiased_pairs(), by=["dataset", "evaluator", "trained_on", "variant"])


def gpt_debiased_bounds() -> pd.DataFrame:
    """``debiased_gpt_bounds.csv``: what the GPT files allow -- bounds on the debiased share of own wins.

    The GPT files do not hold the top-2 log-probabilities: the base files store one per-pair score (the sum
    of the two orders' unnormalised probabilities) and the answers; the fine-tuned files add one top-1
    probability per order (the backward detection one never written, see ``defects.csv``). A per-order
    log-odds needs P("1") and P("2"); one number per order, or one per pair, does not identify it. The
    answers do identify its sign, hence bounds (:func:`judgelab.experiments.debiased.answer_bounds`).
    Base GPT-4 and GPT-3.5 on every article; fine-tuned GPT-3.5 on held-out articles.
    """
    base = pd.concat([pairs(ds, ev) for ds in DATASETS for ev in ("gpt4", "gpt35")],
                     ignore_index=True).assign(trained_on="none", variant="none")
    ft = finetuned_pairs()
    ft = ft[ft["family"] == "gpt35"]
    both = pd.concat([base, ft[base.columns]], ignore_index=True)
    return debiased.answer_bounds(both, by=["dataset", "evaluator", "trained_on", "variant"])


# --------------------------------------------------------------------------------------------------
# defects
# --------------------------------------------------------------------------------------------------


def _formula_candidates(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Candidate per-pair formulas for a stored Llama score, from the raw probabilities.

    Prompt: ``R`` (detection) or ``S`` (comparison). Formula: ``paper`` = 1/2[P_fwd(1) + P_bwd(2)],
    ``first`` = 1/2[P_fwd(1) + P_bwd(1)] (position 1), ``second`` = 1/2[P_fwd(2) + P_bwd(2)]; each
    renormalised over {"1","2"} or ``raw``.
    """
    out = {}
    for task, t in (("R", "d"), ("S", "c")):
        f1, f2, b1, b2 = (df[f"{side}{t}_{o}"].to_numpy(dtype=float) for side, o in (("f", 1), ("f", 2), ("b", 1), ("b", 2)))
        with np.errstate(invalid="ignore", divide="ignore"):
            nf1, nf2, nb1, nb2 = f1 / (f1 + f2), f2 / (f1 + f2), b1 / (b1 + b2), b2 / (b1 + b2)
        for norm, (a1, a2, c1, c2) in (("", (nf1, nf2, nb1, nb2)), (" (raw)", (f1, f2, b1, b2))):
            out[f"{task} paper{norm}"] = 0.5 * (a1 + c2)
            out[f"{task} first-position{norm}"] = 0.5 * (a1 + c1)
            out[f"{task} second-position{norm}"] = 0.5 * (a2 + c2)
    return out


def classify_stored(stored, candidates: dict[str, np.ndarray], tol: float = 1e-5) -> pd.Series:
    """Per record, the name of the first candidate formula that reproduces ``stored`` (else ``none``)."""
    stored = np.asarray(stored, dtype=float)
    label = np.full(len(stored), "none", dtype=object)
    for name, values in candidates.items():
        hit = (label == "none") & np.isclose(stored, values, atol=tol, rtol=0)
        label[hit] = name
    label[np.isnan(stored)] = "stored NaN"
    return pd.Series(label)


def llama_formula_table() -> pd.DataFrame:
    """For every Llama pairwise file: which formula reproduces each stored field, record by record.

    ``recognition_formula`` should be "R paper" (detection prompt, own summary option 1 then 2) and
    ``preference_formula`` "S paper". "S paper" in the recognition field means the fields are swapped;
    "first-position" means the stored value measures a preference for whatever is shown first.
    """
    rows = []
    names = [(ds, "llama") for ds in DATASETS]
    names += [(ds, ft_name(tr, v, "llama")) for tr in DATASETS for v in FT_VARIANTS for ds in DATASETS]
    for ds, ev in names:
        df = _pairs(ds, ev, "results", 0)
        cand = _formula_candidates(df)
        row = {"file": f"results/{ds}/{ev}_results.json", "evaluator": ev, "dataset": ds, "n": len(df),
               "n_raw_nan": int(df[["fd_1", "fd_2", "bd_1", "bd_2", "fc_1", "fc_2", "bc_1", "bc_2"]].isna().any(axis=1).sum())}
        for field, col in (("recognition", "stored_recognition"), ("preference", "stored_preference")):
            lab = classify_stored(df[col], cand).value_counts(normalize=True)
            row[f"{field}_formula"] = lab.index[0]
            row[f"{field}_formula_share"] = float(lab.iloc[0])
        row.update({"stored_recognition": df.stored_recognition.mean(), "recomputed_recognition": df.recognition.mean(),
                    "stored_preference": df.stored_preference.mean(), "recomputed_preference": df.preference.mean(),
                    "choices_match_raw": float(((df.stored_forward_detection == df.forward_detection)
                                                & (df.stored_backward_detection == df.backward_detection)).mean())})
        rows.append(row)
    out = pd.DataFrame(rows)
    r, s = out.recognition_formula, out.preference_formula
    ok = lambda col, task: col.str.startswith(f"{task} paper")  # noqa: E731
    out["stored_formula"] = np.select(
        [ok(r, "R") & ok(s, "S"), ok(r, "S") & ok(s, "R"), r.str.contains("position") | s.str.contains("position")],
        ["paper R/S", "R and S swapped", "position score"], "other")
    return out


def coverage_table() -> pd.DataFrame:
    """Every pairwise / individual / label file: records, articles, first article position, training leak.

    ``expected_first`` is N for a model fine-tuned on N articles of the evaluated dataset (else 0);
    ``training_articles_included`` counts articles at positions < N that the file nevertheless scores.
    """
    from judgelab.data import get_source

    rows = []
    for path in sorted(get_source("self_recognition").files):
        if not path.startswith(("results", "individual_setting_results", "label_results/")) or "raw_llama" in path:
            continue
        parts = path.split("/")
        ds = next((p for p in parts if p in DATASETS), "xsum")
        name = parts[-1].removesuffix("_results.json")
        recs = records(path)
        keys = pd.Series([r["key"] for r in recs])
        idx = keys.map(key_index(ds))
        ev_ds_train = name.split("_")[0] if "_ft_" in name else None
        variant = name.split("_", 1)[1].rsplit("_ft_", 1)[0] if "_ft_" in name else None
        n = n_train(variant) if variant else 0  # upstream evaluated every fine-tuned model on keys[N:]
        own_data = ev_ds_train == ds
        per = 5 if "individual" in path else 4
        others = "target_model" if "individual" in path else "model"
        dup = pd.DataFrame({"k": keys, "o": [r.get(others) for r in recs]}).duplicated().sum()
        rows.append({"file": path, "evaluator": name, "dataset": ds, "n_records": len(recs),
                     "n_articles": int(keys.nunique()), "foreign_keys": int(idx.isna().sum()),
                     "first_index": int(idx.min()), "last_index": int(idx.max()),
                     "expected_first": n, "expected_records": (1000 - n) * per,
                     "training_articles_included": int(keys[idx < n].nunique()) if own_data else 0,
                     "duplicates": int(dup)})
    return pd.DataFrame(rows)


def gpt_probability_checks() -> pd.DataFrame:
    """GPT pairwise files: fields present and evidence that stored probabilities are not renormalised.

    A top-1 probability below 0.5 is only possible if the two returned tokens do not hold all the mass,
    i.e. if P("1") + P("2") < 1 and the stored scores are unnormalised top-2 probabilities.
    """
    from judgelab.data import get_source

    rows = []
    for path in sorted(get_source("self_recognition").files):
        if not path.startswith("results") or "llama" in path:
            continue
        df = pd.DataFrame(list(records(path)))
        prob_cols = [c for c in df.columns if c.endswith("_probability")]
        below = int((df[prob_cols] < 0.5).to_numpy().sum()) if prob_cols else 0
        rows.append({"file": path, "n": len(df),
                     "has_forward_detection_probability": "forward_detection_probability" in df,
                     "has_backward_detection_probability": "backward_detection_probability" in df,
                     "top1_probability_below_half": below,
                     "min_top1_probability": float(df[prob_cols].min().min()) if prob_cols else np.nan})
    return pd.DataFrame(rows)


def control_twins() -> pd.DataFrame:
    """Compare the always-1 and random-label GPT-3.5 controls, file by file, per dataset pair.

    The XSUM pair shares one fine-tuned model id upstream; the CNN pair (distinct ids) is the control.
    """
    rows = []
    for tr in DATASETS:
        a_name, b_name = ft_name(tr, "always_1", "gpt35"), ft_name(tr, "random", "gpt35")
        for ds in DATASETS:
            a, b = _pairs(ds, a_name, "results", 0), _pairs(ds, b_name, "results", 0)
            m = a.merge(b, on=["key", "other"], suffixes=("_a", "_b"))
            rows.append({"trained_on": tr, "evaluated_on": ds, "same_model_id": GPT35_FT_MODEL_IDS[a_name] == GPT35_FT_MODEL_IDS[b_name],
                         "n_pairs": len(m), "files_identical": records(a.file[0]) == records(b.file[0]),
                         "same_choices": float(((m.forward_detection_a == m.forward_detection_b)
                                                & (m.backward_detection_a == m.backward_detection_b)
                                                & (m.forward_comparison_a == m.forward_comparison_b)
                                                & (m.backward_comparison_a == m.backward_comparison_b)).mean()),
                         "max_abs_diff_recognition": float((m.recognition_a - m.recognition_b).abs().max()),
                         "max_abs_diff_preference": float((m.preference_a - m.preference_b).abs().max()),
                         "always_1_share_first": float((a.forward_detection == "1").mean()),
                         "random_share_first": float((b.forward_detection == "1").mean())})
    return pd.DataFrame(rows)


def label_checks() -> pd.DataFrame:
    """Llama label files: record counts and agreement of stored scores with renormalised raw P("1")."""
    rows = []
    for ds in DATASETS:
        raw = pd.DataFrame(list(records(f"label_results/raw_llama_label_results/{ds}_label_llama_raw.json")))
        for cond, col in (("correct", "correct_label_output"), ("wrong", "incorrect_label_output"),
                          ("random", "random_label_output")):
            path = f"label_results/{LABEL_CONDITIONS[cond]}/{ds}/llama_results.json"
            st = pd.DataFrame(list(records(path)))
            st_ds = st[st.key.isin(key_index(ds))].reset_index(drop=True)
            p1 = raw[col].map(lambda d: d["1"] / (d["1"] + d["2"]))
            m = st_ds.assign(p1=p1.to_numpy() if len(p1) == len(st_ds) else np.nan)  # same order as the raw file
            rows.append({"file": path, "n_records": len(st), "n_records_of_dataset": len(st_ds),
                         "distinct_sources": int(st_ds.model.nunique()),
                         "matches_raw_p1": float(np.isclose(m.self_preference, m.p1, atol=TOL).mean()),
                         "stored_mean": float(st_ds.self_preference.mean()), "raw_p1_mean": float(m.p1.mean())})
    return pd.DataFrame(rows)


def defects() -> pd.DataFrame:
    """Each defect of the released data with its evidence and stored vs recomputed values side by side."""
    lf = llama_formula_table()
    cov = coverage_table()
    gp = gpt_probability_checks()
    tw = control_twins()
    lc = label_checks()
    rows = []

    for r in lf[lf.stored_formula == "R and S swapped"].itertuples():
        rows.append({"defect": "recognition and preference fields swapped", "file": r.file,
                     "evidence": f"stored detection_score = recomputed '{r.recognition_formula}' in {r.recognition_formula_share:.1%} "
                                 f"and stored self_preference = '{r.preference_formula}' in {r.preference_formula_share:.1%} of {r.n} records",
                     "n_affected": r.n,
                     "stored": f"R={r.stored_recognition:.3f}, S={r.stored_preference:.3f}",
                     "recomputed": f"R={r.recomputed_recognition:.3f}, S={r.recomputed_preference:.3f}"})
    fp = lf[(lf.stored_formula == "position score") & (lf.evaluator != "llama")]
    if len(fp):
        rows.append({"defect": "fine-tuned Llama scores measure position, not recognition",
                     "file": f"{len(fp)} of {int((lf.evaluator != 'llama').sum())} results/*_ft_llama_results.json files",
                     "evidence": "stored score = 1/2[P_fwd('1') + P_bwd('1')] (renormalised) for the most records "
                                 f"(median share {fp.recognition_formula_share.median():.1%}); {int(fp.n.sum())} records",
                     "n_affected": int(fp.n.sum()),
                     "stored": f"mean R={np.average(fp.stored_recognition, weights=fp.n):.3f}, "
                               f"S={np.average(fp.stored_preference, weights=fp.n):.3f}",
                     "recomputed": f"mean R={np.average(fp.recomputed_recognition, weights=fp.n):.3f}, "
                                   f"S={np.average(fp.recomputed_preference, weights=fp.n):.3f}"})
    for r in lf[lf.stored_formula == "other"].itertuples():
        rows.append({"defect": "Llama stored scores follow no consistent formula", "file": r.file,
                     "evidence": f"recognition field best matched by '{r.recognition_formula}' ({r.recognition_formula_share:.1%}), "
                                 f"preference field by '{r.preference_formula}' ({r.preference_formula_share:.1%}) of {r.n} records",
                     "n_affected": r.n, "stored": f"R={r.stored_recognition:.3f}, S={r.stored_preference:.3f}",
                     "recomputed": f"R={r.recomputed_recognition:.3f}, S={r.recomputed_preference:.3f}"})
    nanraw = lf[lf.n_raw_nan > 0]
    if len(nanraw):
        rows.append({"defect": "NaN raw probabilities behind non-NaN stored scores", "file": f"{len(nanraw)} Llama fine-tuned files",
                     "evidence": "; ".join(f"{r.evaluator} on {r.dataset}: {r.n_raw_nan}/{r.n}" for r in nanraw.itertuples()),
                     "n_affected": int(nanraw.n_raw_nan.sum()), "stored": "numbers", "recomputed": "NaN (left out of means)"})

    for r in tw[tw.same_model_id].itertuples():
        rows.append({"defect": "two GPT-3.5 controls evaluated with one model id (always_1 = random)",
                     "file": f"results/{r.evaluated_on}/{r.trained_on}_{{always_1,random}}_ft_gpt35_results.json",
                     "evidence": f"upstream models.py maps both to {GPT35_FT_MODEL_IDS[ft_name(r.trained_on, 'always_1', 'gpt35')]}; "
                                 f"files identical: {r.files_identical}; same choices in {r.same_choices:.1%} of {r.n_pairs} pairs; "
                                 f"max |dR|={r.max_abs_diff_recognition:.1e}, |dS|={r.max_abs_diff_preference:.1e}; "
                                 f"'1' answered first in {r.always_1_share_first:.0%} / {r.random_share_first:.0%}",
                     "n_affected": r.n_pairs, "stored": "random-label control = always-1 model", "recomputed": "n/a (cannot be rerun)"})

    checks = {
        "scores articles the model was fine-tuned on": cov.training_articles_included > 0,
        "holds records of the other dataset or duplicates": (cov.foreign_keys > 0) | (cov.duplicates > 0),
        "starts at a different article position than the design": (cov.first_index != cov.expected_first)
        & (cov.training_articles_included == 0),
        "fewer records than the design (records silently dropped or articles missing)": (cov.n_records < cov.expected_records)
        & (cov.first_index == cov.expected_first),
    }
    for name, mask in checks.items():
        sub = cov[mask]
        if not len(sub):
            continue
        short = ", ".join(f"{f.removesuffix('_results.json')} ({n})" for f, n in zip(sub.file, sub.n_records))
        rows.append({"defect": f"coverage: {name}", "file": f"{len(sub)} files",
                     "evidence": short, "n_affected": int((sub.n_records - sub.expected_records).abs().sum()),
                     "stored": f"{int(sub.n_records.sum())} records", "recomputed": f"{int(sub.expected_records.sum())} expected"})

    miss = gp[gp.has_forward_detection_probability & ~gp.has_backward_detection_probability]
    if len(miss):
        rows.append({"defect": "backward detection probability never stored (forward field written twice)",
                     "file": f"{len(miss)} GPT files with forward_detection_probability",
                     "evidence": "no file has backward_detection_probability, although backward_comparison_probability exists",
                     "n_affected": int(miss.n.sum()), "stored": "forward only", "recomputed": "R cannot be rebuilt from parts"})
    low = gp[gp.top1_probability_below_half > 0]
    rows.append({"defect": "GPT scores use unnormalised top-2 probabilities",
                 "file": "all GPT pairwise files",
                 "evidence": f"{int(low.top1_probability_below_half.sum())} stored top-1 probabilities < 0.5 in {len(low)} files "
                             f"(impossible if P('1')+P('2')=1); min {gp.min_top1_probability.min():.3f}. Only the top-1 "
                             "probability is stored, so the per-pair scores cannot be renormalised",
                 "n_affected": int(low.top1_probability_below_half.sum()), "stored": "1/2[P_fwd + P_bwd] of top-2 tokens",
                 "recomputed": "not possible"})
    for r in lc.itertuples():
        if r.n_records != r.n_records_of_dataset or r.matches_raw_p1 < 0.99 or r.distinct_sources < 4:
            rows.append({"defect": "Llama label results: single order, and file content inconsistent", "file": r.file,
                         "evidence": f"{r.n_records} records ({r.n_records_of_dataset} of this dataset); "
                                     f"{r.distinct_sources} distinct source name(s) in 'model'; stored equals "
                                     f"renormalised raw P('1') of one order in {r.matches_raw_p1:.1%}",
                         "n_affected": r.n_records - r.n_records_of_dataset if r.n_records != r.n_records_of_dataset
                         else r.n_records,
                         "stored": f"{r.stored_mean:.3f}", "recomputed": f"{r.raw_p1_mean:.3f} (raw P('1'))"})
    dr = drift_table()
    nan = dr[dr.n_nan > 0]
    rows.append({"defect": "NaN outputs in Llama quality-drift comparisons", "file": f"{len(nan)} comparisons/*_ft_llama files",
                 "evidence": "; ".join(f"{r.trained_on}_{r.variant} on {r.evaluated_on}: {r.n_nan}/{r.n}" for r in nan.itertuples()),
                 "n_affected": int(nan.n_nan.sum()), "stored": "NaN", "recomputed": "left out"})
    rows += _drift_coverage_defects()
    rows += audit.new_defects()  # issue 20, item 3: label, prompt-variant and individual-setting files
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------------


def write_tables(out_dir: str | Path = "results/panickssery2024") -> dict[str, Path]:
    """Write every table of the chapter as CSV into ``out_dir``; return name -> path.

    ``pairwise.csv`` and ``finetuned.csv`` are the main results; the others back the chapter's sections.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ind_raw, ind_pw = individual_tables()
    tables = {
        "pairwise": pairwise_table(),
        "finetuned": finetuned_table(),
        "public_comparison": public_comparison(),
        "discrete": discrete_table(),
        "kendall": kendall_table(),
        "individual_raw": ind_raw,
        "individual_pairwise": ind_pw,
        "labels": label_table(),
        "prompt_variants": variants_table(),
        "finetune_correlation": finetune_correlation(),
        "drift": drift_table(),
        "llama_formulas": llama_formula_table(),
        "coverage": coverage_table(),
        "defects": defects(),
        "debiased": llama_debiased_table(),
        "debiased_gpt_bounds": gpt_debiased_bounds(),
        "audit_scores": audit.score_answer_audit(),
        "audit_same_prompts": audit.same_prompt_audit(),
        "audit_individual": audit.individual_audit(),
        "audit_llama_labels": audit.llama_label_audit(),
        "label_effect": audit.label_effect_table(),
        "audit_finetuning_data": audit.finetuning_data_audit(),
    }
    written = write_csvs({f"{name}.csv": df for name, df in tables.items()}, out)
    paths = {name: written[f"{name}.csv"] for name in tables}
    # The paper's claims beside these tables and the other chapters' committed ones (issue 20, item 2); the
    # claims module reads the CSVs just written, so it is imported here, not at the top.
    from judgelab.experiments.claims import write_claims

    paths.update(write_claims(out))
    return paths

"""An auditor's pass over every results family of the Panickssery et al. (2024) release (issue 20, item 3).

:mod:`judgelab.experiments.reanalysis` recomputes the paper's numbers and already checks the Llama files
formula by formula (``llama_formula_table``). This module checks the rest the way an independent auditor
would, with two kinds of test:

1. **Each record against itself.** The upstream code (``experiments.py`` at the released commit) computes a
   GPT score from the two orders' answers and their top-2 log-probabilities::

       answers ("1", "2"): 1/2 [p_fwd(top) + p_bwd(top)]          (own summary chosen twice)
       answers ("2", "1"): 1/2 [p_fwd(2nd) + p_bwd(2nd)]          (other summary chosen twice)
       answers ("1", "1"): 1/2 [p_fwd(top) + p_bwd(2nd)]          answers ("2", "2"): 1/2 [p_fwd(2nd) + p_bwd(top)]

   The files keep the answers and, for most files, the top-1 probability of each order, never the 2nd. For
   answers ("1", "2") the stored score is therefore *determined*; for the other answers it is *bounded*
   (the 2nd token's probability is at most ``min(top, 1 - top)``). :func:`classify_scores` says, record by
   record, whether the stored score is what the code computes, what it would be *reversed* (``1 - x``: the
   preference for the other summary), or neither. Files without probabilities get the sign test of
   :func:`sign_agreement` (a pair answered "own" in both orders should score above 0.5).
2. **Files against each other.** The same prompt is sent in more than one experiment: a random-label
   record whose labels happen to be the correct ones (the first label is the evaluator's) is the
   correct-label prompt, and one whose labels are reversed is the wrong-label prompt; the detection prompt
   of ``results_with_worse`` is the one of ``results``; the comparison prompt of ``results_vs_human`` and
   ``results_vs_model`` is the one of ``results``. :func:`same_prompt_audit` compares the stored answers and
   scores of such pairs. The individual-setting files are checked against their own design fields
   (:func:`individual_audit`) and the Llama label files against the raw label file (:func:`llama_label_audit`).

:func:`new_defects` turns what fails into rows of ``defects.csv`` (with their evidence) and
:func:`label_effect_table` shows what the one that changes a published result does to it.

The module sits below :mod:`~judgelab.experiments.reanalysis` (it reads the files through
:mod:`judgelab.data.self_recognition` only), so the re-analysis can use its verdicts.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from judgelab import stats
from judgelab.data.self_recognition import DATASETS, article_keys, load_json

#: Label conditions -> upstream folder.
LABEL_FOLDERS = {"correct": "correct_label_results", "wrong": "wrong_label_results", "random": "random_label_results"}
#: Evaluators of the GPT label experiment (``label_results/{folder}/{ds}/{ev}_results.json``).
LABEL_GPT_EVALUATORS = ("gpt4", "gpt35", "xsum_500_ft_gpt35")
#: Tolerance for "the stored score is this formula" (the files keep full double precision).
TOL = 1e-6
#: Tolerance for "two files store the same score for the same prompt" (the API is not deterministic,
#: so scores of one prompt sent twice agree to about 1e-3 when the answers agree).
SAME_SCORE_TOL = 1e-3
#: What the authors' own analysis printed for the label experiment: ``analysis.ipynb`` at the released
#: commit, cell "# Label Results", output "Correct Labels" / "Incorrect Labels" (the mean of the stored
#: ``self_preference`` of each file; the notebook comments that this field is "the model's preference for
#: the first summary", i.e. the own summary). Copied from the notebook's stored output.
AUTHORS_LABEL_OUTPUT = pd.DataFrame(
    [("xsum", "gpt4", "correct", 0.73245), ("xsum", "gpt35", "correct", 0.605016), ("xsum", "llama", "correct", 0.819782),
     ("cnn", "gpt4", "correct", 0.936168), ("cnn", "gpt35", "correct", 0.46125), ("cnn", "llama", "correct", 0.973418),
     ("xsum", "gpt4", "wrong", 0.315728), ("xsum", "gpt35", "wrong", 0.455228), ("xsum", "llama", "wrong", 0.834755),
     ("cnn", "gpt4", "wrong", 0.89418), ("cnn", "gpt35", "wrong", 0.400281), ("cnn", "llama", "wrong", 0.973516)],
    columns=["dataset", "evaluator", "condition", "authors_printed"])
AUTHORS_ANALYSIS = ("https://github.com/ArjunPanickssery/self_recognition/blob/"
                    "5b1cb7321eef8a1564c8c782917e3706aafcc589/analysis.ipynb")


# --------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------


@functools.cache
def _frame(path: str) -> pd.DataFrame:
    data = load_json(path)
    return pd.DataFrame(list(data.values()) if isinstance(data, dict) else list(data))


def frame(path: str) -> pd.DataFrame:
    """The records of one upstream file as a DataFrame (a copy; the parsed file is cached)."""
    return _frame(path).copy()


@functools.cache
def _key_index(dataset: str) -> dict[str, int]:
    return {k: i for i, k in enumerate(article_keys(dataset))}


def _cached_table(fn):
    """Cache a no-argument table builder (the release never changes in a process); callers get copies."""
    cached = functools.cache(fn)

    @functools.wraps(fn)
    def wrapper() -> pd.DataFrame:
        return cached().copy()

    return wrapper


def own_source(evaluator: str) -> str:
    """Whose summaries are the evaluator's own: ``gpt35`` for any GPT-3.5 (base or fine-tuned), and so on."""
    for fam in ("gpt35", "llama", "gpt4"):
        if evaluator.endswith(fam):
            return fam
    raise ValueError(f"no summary author for evaluator {evaluator!r}")


def label_path(condition: str, dataset: str, evaluator: str) -> str:
    return f"label_results/{LABEL_FOLDERS[condition]}/{dataset}/{evaluator}_results.json"


def _exists(path: str) -> bool:
    from judgelab.data import get_source

    return path in get_source("self_recognition").files


def gpt_pairwise_files() -> list[str]:
    """Every GPT pairwise file of the release: main results, prompt variants and the label experiment."""
    from judgelab.data import get_source

    return sorted(p for p in get_source("self_recognition").files
                  if p.startswith(("results/", "results_with_worse/", "results_vs_human/", "results_vs_model/",
                                   "label_results/correct", "label_results/wrong", "label_results/random"))
                  and "llama" not in p.rsplit("/", 1)[-1])


# --------------------------------------------------------------------------------------------------
# 1. each record against itself
# --------------------------------------------------------------------------------------------------


def upstream_bounds(forward, backward, p_forward, p_backward) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest score the upstream formula can give, from the answers and top-1 probabilities.

    Answers ("1", "2") determine the score (``low == high``); for the others the unstored 2nd-token
    probability ``q`` of an order lies in ``[0, min(p, 1 - p)]`` (it is at most the top one and the two
    cannot exceed 1). Answers other than "1"/"2", or a missing probability, give NaN bounds.
    """
    f, b = np.asarray(forward, dtype=str), np.asarray(backward, dtype=str)
    pf, pb = np.asarray(p_forward, dtype=float), np.asarray(p_backward, dtype=float)
    qf, qb = np.minimum(pf, 1 - pf), np.minimum(pb, 1 - pb)
    conds = [(f == "1") & (b == "2"), (f == "2") & (b == "1"), (f == "1") & (b == "1"), (f == "2") & (b == "2")]
    low = np.select(conds, [0.5 * (pf + pb), 0.0 * pf, 0.5 * pf, 0.5 * pb], np.nan)
    high = np.select(conds, [0.5 * (pf + pb), 0.5 * (qf + qb), 0.5 * (pf + qb), 0.5 * (qf + pb)], np.nan)
    return low, high


def classify_scores(stored, forward, backward, p_forward, p_backward, tol: float = TOL) -> pd.Series:
    """Per record: does the stored score follow the upstream formula, its reverse ``1 - x``, or neither?

    Labels: ``formula`` (within the formula's bounds and not within the reverse's), ``reversed`` (the
    other way round), ``either`` (bounds too wide to tell: every answer pair but ("1", "2") can be),
    ``neither`` (no reading of the code gives the stored number) and ``not checkable`` (no probability).
    """
    s = np.asarray(stored, dtype=float)
    low, high = upstream_bounds(forward, backward, p_forward, p_backward)
    fits = (s >= low - tol) & (s <= high + tol)
    rev = (1 - s >= low - tol) & (1 - s <= high + tol)
    out = np.select([np.isnan(low) | np.isnan(high) | np.isnan(s), fits & rev, fits, rev], ["not checkable", "either", "formula", "reversed"],
                    "neither")
    return pd.Series(out)


def sign_agreement(stored, forward, backward) -> tuple[float, int]:
    """Share of decisive pairs whose score is on the side of 0.5 its answers say, and how many were decisive.

    Decisive: the same summary chosen in both orders, own ("1", "2": score should be above 0.5) or other
    ("2", "1": below), score not exactly 0.5. A file scored as designed agrees in (nearly) all of them; a
    file that stores the preference for the *other* summary agrees in (nearly) none.
    """
    s = np.asarray(stored, dtype=float)
    f, b = np.asarray(forward, dtype=str), np.asarray(backward, dtype=str)
    own, other = (f == "1") & (b == "2"), (f == "2") & (b == "1")
    decisive = (own | other) & np.isfinite(s) & (s != 0.5)
    if not decisive.any():
        return np.nan, 0
    agree = (own & (s > 0.5)) | (other & (s < 0.5))
    return float(agree[decisive].mean()), int(decisive.sum())


_TASKS = {
    # task -> (forward answer, backward answer, forward probability, backward probability, score)
    "detection": ("forward_detection", "backward_detection", "forward_detection_probability",
                  "backward_detection_probability", "detection_score"),
    "comparison": ("forward_comparison", "backward_comparison", "forward_comparison_probability",
                   "backward_comparison_probability", "self_preference"),
    "labelled comparison": ("forward_comparison", "backward_comparison", "forward_probability",
                            "backward_probability", "self_preference"),
}


def _family_of_file(path: str) -> str:
    return path.split("/")[0] if not path.startswith("label_results") else f"labels: {path.split('/')[1].split('_')[0]}"


def score_answer_audit(paths=None) -> pd.DataFrame:
    """``audit_scores.csv``: every GPT pairwise file (or those of ``paths``), per task, stored score against
    stored answers (the release's audit is computed once per process; callers get a copy).

    Columns: ``file, family, task, n, n_checkable`` (records with both top-1 probabilities),
    ``formula, reversed, either, neither`` (counts from :func:`classify_scores`), ``formula_share_12`` and
    ``reversed_share_12`` (among the answers ("1", "2"), where the formula is exact), ``sign_agreement`` and
    ``n_decisive`` (:func:`sign_agreement`, for every file), and ``orientation``: ``as designed``,
    ``reversed`` (the stored score is the preference for the *other* summary) or ``unclear``.
    """
    return (_score_answer_audit_all() if paths is None else _score_answer_audit(tuple(paths))).copy()


@functools.cache
def _score_answer_audit_all() -> pd.DataFrame:
    return _score_answer_audit(tuple(gpt_pairwise_files()))


def _score_answer_audit(paths: tuple) -> pd.DataFrame:
    rows = []
    for path in paths:
        df = _frame(path)
        tasks = ["labelled comparison"] if path.startswith("label_results") else ["detection", "comparison"]
        for task in tasks:
            fa, ba, fp, bp, sc = _TASKS[task]
            if fa not in df or sc not in df:
                continue
            f, b, s = df[fa].astype(str), df[ba].astype(str), df[sc].astype(float)
            pf = df[fp] if fp in df else pd.Series(np.nan, index=df.index)
            pb = df[bp] if bp in df else pd.Series(np.nan, index=df.index)
            lab = classify_scores(s, f, b, pf, pb)
            twelve = ((f == "1") & (b == "2")).to_numpy() & (lab != "not checkable").to_numpy()
            agree, n_dec = sign_agreement(s, f, b)
            row = {"file": path, "family": _family_of_file(path), "task": task.replace("labelled ", ""), "n": len(df),
                   "n_checkable": int((lab != "not checkable").sum()),
                   **{k: int((lab == k).sum()) for k in ("formula", "reversed", "either", "neither")},
                   "formula_share_12": float((lab[twelve] == "formula").mean()) if twelve.any() else np.nan,
                   "reversed_share_12": float((lab[twelve] == "reversed").mean()) if twelve.any() else np.nan,
                   "sign_agreement": agree, "n_decisive": n_dec}
            rows.append(row)
    out = pd.DataFrame(rows)
    out["orientation"] = orientation(out)
    return out


def orientation(table: pd.DataFrame, threshold: float = 0.95) -> pd.Series:
    """``as designed`` / ``reversed`` / ``unclear`` per row of :func:`score_answer_audit`.

    Where the exact test is possible (answers ("1", "2") with both probabilities) it decides: at least
    ``threshold`` of those records fit one reading. Elsewhere the sign test decides at the same threshold
    (``sign_agreement`` >= threshold: as designed; <= 1 - threshold: reversed).
    """
    exact = table["formula_share_12"].notna()
    designed = np.where(exact, table["formula_share_12"] >= threshold, table["sign_agreement"] >= threshold)
    reversed_ = np.where(exact, table["reversed_share_12"] >= threshold, table["sign_agreement"] <= 1 - threshold)
    return pd.Series(np.select([designed, reversed_], ["as designed", "reversed"], "unclear"), index=table.index)


@functools.cache
def _orientation_by_file() -> dict[tuple[str, str], str]:
    t = score_answer_audit()
    return {(r.file, r.task): r.orientation for r in t.itertuples()}


def stored_reversed(path: str, task: str = "comparison") -> bool:
    """True when the audit finds that ``path`` stores, for ``task``, the preference for the other summary."""
    return _orientation_by_file().get((path, task)) == "reversed"


# --------------------------------------------------------------------------------------------------
# 2. files against each other
# --------------------------------------------------------------------------------------------------


def compare_same_prompts(a: pd.DataFrame, b: pd.DataFrame, answers: tuple[str, str], score: str,
                         on=("key", "model")) -> dict:
    """Agreement of two record sets that hold the *same prompts* (matched on ``on``).

    ``same_answers``: both orders' answers equal; ``flipped_answers``: both equal after swapping "1" and
    "2"; ``score_corr``: Pearson r of the two stored scores; ``same_score`` / ``same_score_reversed``:
    share of pairs whose scores agree within :data:`SAME_SCORE_TOL` as stored / with one side as ``1 - x``.
    A file pair that stores the same quantity has high ``same_answers`` and ``score_corr`` near +1; if one of
    them stores the reverse, ``score_corr`` is near -1 although the answers agree.
    """
    m = a.merge(b, on=list(on), suffixes=("_a", "_b"))
    fa, ba = answers
    flip = {"1": "2", "2": "1"}
    same = (m[f"{fa}_a"].astype(str) == m[f"{fa}_b"].astype(str)) & (m[f"{ba}_a"].astype(str) == m[f"{ba}_b"].astype(str))
    flipped = ((m[f"{fa}_a"].astype(str).map(flip) == m[f"{fa}_b"].astype(str))
               & (m[f"{ba}_a"].astype(str).map(flip) == m[f"{ba}_b"].astype(str)))
    sa, sb = m[f"{score}_a"].astype(float), m[f"{score}_b"].astype(float)
    ok = np.isfinite(sa) & np.isfinite(sb)
    corr = float(np.corrcoef(sa[ok], sb[ok])[0, 1]) if ok.sum() > 2 and sa[ok].std() > 0 and sb[ok].std() > 0 else np.nan
    return {"n_pairs": len(m), "same_answers": float(same.mean()) if len(m) else np.nan,
            "flipped_answers": float(flipped.mean()) if len(m) else np.nan, "score_corr": corr,
            "same_score": float((np.abs(sa - sb) <= SAME_SCORE_TOL).mean()) if len(m) else np.nan,
            "same_score_reversed": float((np.abs(sa - (1 - sb)) <= SAME_SCORE_TOL).mean()) if len(m) else np.nan}


def random_label_subsets(random: pd.DataFrame, evaluator: str) -> dict[str, pd.DataFrame]:
    """The random-label records whose prompts are the correct-label ones and the wrong-label ones.

    Upstream, the forward prompt shows (own summary, other summary) labelled ``random_labels[0],
    random_labels[1]``; the correct-label prompt labels them (own, other), the wrong-label prompt (other,
    own). So a record whose first random label is the evaluator's is a correct-label prompt, else a
    wrong-label one (the backward prompt follows in both cases).
    """
    own = own_source(evaluator)
    first_own = random["random_labels"].map(lambda t: t[0] == own)
    return {"correct": random[first_own], "wrong": random[~first_own]}


def _random_label_files():
    """``(dataset, evaluator, path)`` of every GPT random-label file the mirror holds."""
    for ds in DATASETS:
        for ev in LABEL_GPT_EVALUATORS:
            path = label_path("random", ds, ev)
            if _exists(path):
                yield ds, ev, path


@_cached_table
def same_prompt_audit() -> pd.DataFrame:
    """``audit_same_prompts.csv``: every pair of released files that hold the same prompts, compared.

    One row per (file_a, file_b, task, subset) with the columns of :func:`compare_same_prompts`, and
    ``expected``: what a file pair storing the same quantity shows (``same``); for the "which is worse"
    comparison, upstream flips the answers so that they keep the meaning of "which is better", so that
    pair should also read ``same``.
    """
    rows = []
    # label experiment: random-label records vs the correct / wrong label files
    for ds, ev, rnd_path in _random_label_files():
        subsets = random_label_subsets(_frame(rnd_path), ev)
        for cond, sub in subsets.items():
            ref = label_path(cond, ds, ev)
            rows.append({"experiment": "labels", "task": "labelled comparison", "evaluator": ev, "dataset": ds,
                         "file_a": ref, "file_b": rnd_path,
                         "subset": f"random-label records labelled as in '{cond}'",
                         **compare_same_prompts(_frame(ref), sub, ("forward_comparison", "backward_comparison"),
                                                "self_preference")})
    # detection prompt: results vs results_with_worse
    for path in gpt_pairwise_files():
        if not path.startswith("results_with_worse/"):
            continue
        base = path.replace("results_with_worse/", "results/")
        ds, ev = path.split("/")[1], path.rsplit("/", 1)[-1].removesuffix("_results.json")
        for task, answers, score, note in (
                ("detection", ("forward_detection", "backward_detection"), "detection_score", "same detection prompt"),
                ("comparison (which is worse)", ("forward_comparison", "backward_comparison"), "self_preference",
                 "'better' vs 'worse' prompt, answers flipped upstream")):
            rows.append({"experiment": "which is worse", "task": task, "evaluator": ev, "dataset": ds,
                         "file_a": base, "file_b": path, "subset": note,
                         **compare_same_prompts(_frame(base), _frame(path), answers, score)})
    # comparison prompt: results vs results_vs_human / results_vs_model (XSUM only)
    for path in gpt_pairwise_files():
        if not path.startswith(("results_vs_human/", "results_vs_model/")):
            continue
        ev = path.rsplit("/", 1)[-1].removesuffix("_results.json")
        base = f"results/xsum/{ev}_results.json"
        rows.append({"experiment": path.split("/")[0].removeprefix("results_"), "task": "comparison", "evaluator": ev,
                     "dataset": "xsum", "file_a": base, "file_b": path, "subset": "same comparison prompt",
                     **compare_same_prompts(_frame(base), _frame(path), ("forward_comparison", "backward_comparison"),
                                            "self_preference")})
    return pd.DataFrame(rows)


def worse_prompt_audit(same: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per evaluator family, how the "which is worse" answers relate to the "which is better" answers.

    Upstream flips each "worse" answer, so a model that reads the question answers the same as with the
    "better" prompt (``same_answers`` high). ``flipped_answers`` high means the stored "worse" answers are
    the "better" answers reversed: either the flip was not applied to those files, or the model answers
    the summary it prefers whatever it is asked; the files cannot tell the two apart.
    """
    same = same_prompt_audit() if same is None else same
    w = same[same.task == "comparison (which is worse)"].copy()
    w["family"] = np.where(w.evaluator == "gpt4", "gpt4", "gpt35 (base and fine-tuned)")
    return (w.groupby("family").agg(files=("file_b", "size"), pairs=("n_pairs", "sum"),
                                    same_answers_min=("same_answers", "min"), same_answers_max=("same_answers", "max"),
                                    flipped_answers_min=("flipped_answers", "min"),
                                    flipped_answers_max=("flipped_answers", "max"),
                                    score_corr_min=("score_corr", "min"), score_corr_max=("score_corr", "max"))
            .reset_index())


@_cached_table
def llama_label_audit() -> pd.DataFrame:
    """The Llama label files against the raw label file they were made from, per dataset and condition.

    ``raw_random_is_correct_or_wrong``: the raw random-label output equals the raw correct-label output
    where the first random label is Llama's and the wrong-label output otherwise (the same prompt).
    For the stored files (restricted to the dataset's articles): ``distinct_sources`` named in ``model``,
    ``matches_own_row`` (stored = renormalised raw P("1") of the same record), ``matches_human_row`` (stored =
    that of the *human* comparison of the same article) and ``labels_of_human_row`` (``random_labels`` equal to
    the human record's).
    """
    rows = []
    col = {"correct": "correct_label_output", "wrong": "incorrect_label_output", "random": "random_label_output"}
    for ds in DATASETS:
        raw = _frame(f"label_results/raw_llama_label_results/{ds}_label_llama_raw.json")
        p1 = {c: raw[v].map(lambda d: d["1"] / (d["1"] + d["2"])).to_numpy() for c, v in col.items()}
        first_own = raw["random_labels"].map(lambda t: t[0] == "llama").to_numpy()
        expected = np.where(first_own, raw["correct_label_output"].map(str), raw["incorrect_label_output"].map(str))
        copy_ok = float((raw["random_label_output"].map(str).to_numpy() == expected).mean())
        human = raw[raw["model"] == "human"].set_index("key")
        for cond in col:
            st = _frame(label_path(cond, ds, "llama"))
            st = st[st["key"].isin(_key_index(ds))].reset_index(drop=True)
            aligned = len(st) == len(raw) and (st["key"].to_numpy() == raw["key"].to_numpy()).all()
            own = np.isclose(st["self_preference"].to_numpy(), p1[cond], atol=TOL).mean() if aligned else np.nan
            human_p1 = st["key"].map(pd.Series(p1[cond][(raw["model"] == "human").to_numpy()], index=human.index))
            row = {"dataset": ds, "condition": cond, "file": label_path(cond, ds, "llama"), "n_records": len(st),
                   "distinct_sources": int(st["model"].nunique()), "matches_own_row": float(own),
                   "matches_human_row": float(np.isclose(st["self_preference"], human_p1, atol=TOL).mean()),
                   "raw_random_is_correct_or_wrong": copy_ok, "labels_of_human_row": np.nan,
                   "stored_mean": float(st["self_preference"].mean()), "raw_mean": float(np.nanmean(p1[cond])),
                   "raw_human_mean": float(np.nanmean(p1[cond][(raw["model"] == "human").to_numpy()]))}
            if "random_labels" in st:
                row["labels_of_human_row"] = float((st["random_labels"].map(tuple)
                                                    == st["key"].map(human["random_labels"].map(tuple))).mean())
            rows.append(row)
    return pd.DataFrame(rows)


@_cached_table
def label_design_audit() -> pd.DataFrame:
    """GPT random-label files: are the labels a random assignment of the two true sources, as described?

    ``labels_are_the_two_sources``: ``random_labels`` is {evaluator, other source} in some order;
    ``first_label_own``: share where the own summary carries the evaluator's label (0.5 expected);
    ``detection_score_is_first_own``: the file's ``detection_score`` records exactly that (where present).
    """
    rows = []
    for ds, ev, path in _random_label_files():
        df, own = _frame(path), own_source(ev)
        first_own = df["random_labels"].map(lambda t: t[0] == own)
        two = df.apply(lambda r: set(r["random_labels"]) == {own, r["model"]}, axis=1)
        rows.append({"file": path, "n": len(df), "labels_are_the_two_sources": float(two.mean()),
                     "first_label_own": float(first_own.mean()),
                     "detection_score_is_first_own": float((df["detection_score"] == first_own.astype(int)).mean())
                     if "detection_score" in df else np.nan})
    return pd.DataFrame(rows)


@_cached_table
def individual_audit() -> pd.DataFrame:
    """``audit_individual.csv``: every individual-setting file against its own design fields.

    ``ground_truth_correct``: share of records whose ``ground_truth`` equals "the target is the evaluator's
    own summary"; ``ground_truth_positives`` against ``own_records`` (records of own summaries); for
    recognition files ``exactly_half`` (share of P("Yes") stored as exactly 0.5, a placeholder value), for
    score files ``all_nan`` (share whose five score probabilities are all NaN).
    """
    from judgelab.data import get_source

    rows = []
    for path in sorted(p for p in get_source("self_recognition").files if p.startswith("individual_setting_results/")):
        df = _frame(path)
        name = path.rsplit("/", 1)[-1].removesuffix("_results.json")
        own = (df["target_model"] == own_source(name)).to_numpy()
        row = {"file": path, "evaluator": name, "kind": path.split("/")[1].removesuffix("_results"), "n": len(df),
               "own_records": int(own.sum()), "ground_truth_positives": np.nan, "ground_truth_correct": np.nan,
               "exactly_half": np.nan, "all_nan": np.nan}
        if "ground_truth" in df:
            row["ground_truth_positives"] = int(df["ground_truth"].sum())
            row["ground_truth_correct"] = float((df["ground_truth"].to_numpy() == own.astype(int)).mean())
        if "recognition_score" in df:
            row["exactly_half"] = float((df["recognition_score"] == 0.5).mean())
        if "scores" in df:
            probs = pd.DataFrame(list(df["scores"])).astype(float)
            row["all_nan"] = float(probs.isna().all(axis=1).mean())
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# the label result the reversed files change
# --------------------------------------------------------------------------------------------------


def label_preferences(dataset: str, evaluator: str, condition: str) -> pd.DataFrame:
    """Per-pair stored and corrected self-preference of one GPT label file (own summary's side).

    ``corrected`` is the stored score where the audit finds the file oriented as designed and ``1 - stored``
    where it finds it reversed (:func:`stored_reversed`): then it is, like every other file, the preference
    for the evaluator's *own* summary.
    """
    path = label_path(condition, dataset, evaluator)
    df = _frame(path)
    df = df[df["key"].isin(_key_index(dataset))]
    stored = df["self_preference"].astype(float).to_numpy()
    rev = stored_reversed(path, "comparison")
    return pd.DataFrame({"dataset": dataset, "evaluator": evaluator, "condition": condition, "key": df["key"].to_numpy(),
                         "other": df["model"].to_numpy(), "stored": stored, "corrected": 1 - stored if rev else stored,
                         "reversed": rev})


@_cached_table
def label_effect_table() -> pd.DataFrame:
    """``label_effect.csv``: the label experiment, stored beside corrected, with what the authors printed.

    One row per dataset x GPT evaluator x condition: ``stored`` and ``corrected`` mean self-preference with
    95 % article-bootstrap intervals, ``reversed`` (the audit's verdict on the file), ``authors_printed`` (the
    value the authors' analysis printed, :data:`AUTHORS_LABEL_OUTPUT`; empty where it printed none) and
    ``drop_stored`` / ``drop_corrected``: the change from the correct-label condition (paired by pair, with
    a bootstrap interval over articles).
    """
    rows = []
    for ds in DATASETS:
        for ev in LABEL_GPT_EVALUATORS:
            frames = {c: label_preferences(ds, ev, c) for c in LABEL_FOLDERS if _exists(label_path(c, ds, ev))}
            if "correct" not in frames:
                continue
            base = frames["correct"][["key", "other", "corrected"]].rename(columns={"corrected": "base"})
            for cond, df in frames.items():
                st, co = stats.bootstrap_mean(df.stored, df.key), stats.bootstrap_mean(df.corrected, df.key)
                m = df.merge(base, on=["key", "other"])
                ds_, dc_ = (stats.bootstrap_mean(m[col] - m.base, m.key) for col in ("stored", "corrected"))
                rows.append({"dataset": ds, "evaluator": ev, "condition": cond, "n": st.n, "reversed": bool(df.reversed.iloc[0]),
                             "stored": st.estimate, "stored_low": st.low, "stored_high": st.high,
                             "corrected": co.estimate, "corrected_low": co.low, "corrected_high": co.high,
                             "drop_stored": ds_.estimate, "drop_stored_low": ds_.low, "drop_stored_high": ds_.high,
                             "drop_corrected": dc_.estimate, "drop_corrected_low": dc_.low,
                             "drop_corrected_high": dc_.high})
    out = pd.DataFrame(rows).merge(AUTHORS_LABEL_OUTPUT, on=["dataset", "evaluator", "condition"], how="left")
    out["authors_printed_is"] = np.select(
        [out.authors_printed.isna(), np.isclose(out.authors_printed, out.stored, atol=5e-7),
         np.isclose(out.authors_printed, out.corrected, atol=5e-7)], ["", "stored", "corrected"], "neither")
    return out


def _f(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}"


def label_effect_text(effect: pd.DataFrame) -> str:
    """Generated sentences on what the reversed label files change (tested on tables that would make it wrong).

    Names every reversed file's stored and corrected value and the change from the correct-label condition,
    says which value the authors printed, and states whether, once corrected, the swapped labels still
    leave a self-preference above chance (the interval of ``corrected`` above 0.5) or reverse it.
    """
    rev = effect[effect.reversed]
    if rev.empty:
        return "No label file stores the reversed preference: the label experiment reads as stored."
    parts = []
    for r in rev.itertuples():
        base = effect[(effect.dataset == r.dataset) & (effect.evaluator == r.evaluator) & (effect.condition == "correct")]
        b = base.corrected.iloc[0] if len(base) else np.nan
        if r.corrected_low > 0.5:
            side = "still prefers its own summary"
        elif r.corrected_high < 0.5:
            side = "prefers the other summary"
        else:
            side = "is at chance"
        who = {"gpt4": "GPT-4", "gpt35": "GPT-3.5"}.get(r.evaluator, f"`{r.evaluator}`")
        printed = ("the authors' analysis printed the stored value" if r.authors_printed_is == "stored"
                   else "the authors' analysis printed the corrected value" if r.authors_printed_is == "corrected"
                   else "the authors' analysis printed no value for it")
        parts.append(
            f"{who} on {r.dataset.upper() if r.dataset == 'xsum' else 'CNN/DailyMail'} with swapped labels: stored S = "
            f"{_f(r.stored)}, corrected S = {_f(r.corrected)} [{_f(r.corrected_low)}, {_f(r.corrected_high)}] "
            f"(correct labels: {_f(b)}; change {_f(r.drop_corrected)} [{_f(r.drop_corrected_low)}, "
            f"{_f(r.drop_corrected_high)}] instead of the stored {_f(r.drop_stored)}); once corrected it {side}, "
            f"and {printed}")
    ok = effect[~effect.reversed & (effect.condition == "wrong")]
    tail = ""
    if len(ok):
        tail = (" The files of the same experiment that store the score as designed ("
                + ", ".join(f"{r.evaluator} on {r.dataset}" for r in ok.itertuples())
                + ") show changes of " + ", ".join(_f(x) for x in ok.drop_corrected) + ".")
    return "; ".join(parts) + "." + tail


# --------------------------------------------------------------------------------------------------
# defects
# --------------------------------------------------------------------------------------------------


def new_defects(scores: pd.DataFrame | None = None, same: pd.DataFrame | None = None,
                llama_labels: pd.DataFrame | None = None, individual: pd.DataFrame | None = None,
                effect: pd.DataFrame | None = None) -> list[dict]:
    """Rows of ``defects.csv`` (``defect, file, evidence, n_affected, stored, recomputed``) from this audit.

    Each argument defaults to the audit of the released files; tests pass hand-made tables.
    """
    scores = score_answer_audit() if scores is None else scores
    same = same_prompt_audit() if same is None else same
    llama_labels = llama_label_audit() if llama_labels is None else llama_labels
    individual = individual_audit() if individual is None else individual
    rows = []

    rev = scores[scores.orientation == "reversed"]
    if len(rev):
        effect = label_effect_table() if effect is None else effect
    for r in rev.itertuples():
        twin = same[(same.file_a == r.file) & (same.experiment == "labels")]
        cross = "" if twin.empty else (
            f"; the {int(twin.n_pairs.iloc[0])} {twin.subset.iloc[0]} (the same prompts) give the same answers in "
            f"{twin.same_answers.iloc[0]:.1%} of pairs, yet their stored scores correlate with this file's at r = "
            f"{twin.score_corr.iloc[0]:.3f} and equal 1 - this file's score in {twin.same_score_reversed.iloc[0]:.1%} "
            f"(as stored: {twin.same_score.iloc[0]:.1%})")
        exact = ("" if np.isnan(r.reversed_share_12) else
                 f"stored score = 1 - the upstream formula from the stored answers and top-1 probabilities in "
                 f"{r.reversed_share_12:.1%} of the records answered own-own (as the formula: {r.formula_share_12:.1%}); ")
        parts = r.file.split("/")
        e = effect[(effect.dataset == parts[2]) & (effect.evaluator == parts[3].removesuffix("_results.json"))
                   & (effect.condition == parts[1].split("_")[0])] if parts[0] == "label_results" else effect.iloc[:0]
        stored = recomputed = "see label_effect.csv"
        if len(e):
            e0 = e.iloc[0]
            stored = f"S={e0.stored:.3f} (drop from correct labels {e0.drop_stored:+.3f})"
            printed = {"stored": "the authors' analysis printed the stored value",
                       "corrected": "the authors' analysis printed the corrected value"}.get(
                e0.authors_printed_is, "the authors' analysis printed no value for it")
            recomputed = f"S={e0.corrected:.3f} (drop {e0.drop_corrected:+.3f}); {printed}"
        rows.append({"defect": "label experiment: stored self-preference is the preference for the OTHER summary",
                     "file": r.file,
                     "evidence": f"{exact}sign test: {r.sign_agreement:.1%} of {r.n_decisive} decisive pairs on the side "
                                 f"of 0.5 their answers give{cross}",
                     "n_affected": int(r.n), "stored": stored, "recomputed": recomputed})

    bad = scores[(scores.orientation != "reversed") & (scores.neither > 0)]
    if len(bad):
        effects = []
        for r in bad.itertuples():
            if not _exists(r.file):
                continue
            df = _frame(r.file)
            fa, ba, fp, bp, sc = _TASKS["labelled comparison" if r.file.startswith("label_results") else r.task]
            lab = classify_scores(df[sc], df[fa], df[ba], df[fp], df[bp]).to_numpy()
            effects.append(f"{r.file}: mean {sc} {df[sc].mean():.4f} with them, {df[sc][lab != 'neither'].mean():.4f} without")
        rows.append({"defect": "stored score impossible under the upstream formula given the stored answers and probabilities",
                     "file": f"{len(bad)} GPT files",
                     "evidence": "; ".join(f"{r.file} ({r.task}): {r.neither} of {r.n_checkable}" for r in bad.itertuples()),
                     "n_affected": int(bad.neither.sum()), "stored": "; ".join(effects) or "score",
                     "recomputed": "not reproducible (records left as stored; the means above show their weight)"})

    dup = llama_labels[(llama_labels.condition == "random") & (llama_labels.matches_human_row > 0.99)]
    for r in dup.itertuples():
        rows.append({"defect": "Llama random-label file: every record is the article's human comparison, written four times",
                     "file": r.file,
                     "evidence": f"stored self_preference = the raw random-label P('1') of the article's human record in "
                                 f"{r.matches_human_row:.1%} of {r.n_records} records (of its own record: {r.matches_own_row:.1%}); "
                                 f"'model' names {r.distinct_sources} source; random_labels are the human record's in "
                                 f"{r.labels_of_human_row:.1%}",
                     "n_affected": int(round(r.n_records * 3 / 4)),
                     "stored": f"{r.stored_mean:.3f} (= vs human only: {r.raw_human_mean:.3f})",
                     "recomputed": f"{r.raw_mean:.3f} (raw file, all four sources)"})

    gt = individual[individual.ground_truth_correct.notna() & (individual.ground_truth_correct < 0.999)]
    if len(gt):
        rows.append({"defect": "individual setting: ground_truth field wrong (own summaries marked 0)",
                     "file": f"{len(gt)} individual_setting_results/recognition_results/*_ft_llama files",
                     "evidence": f"ground_truth is 1 in {int(gt.ground_truth_positives.sum())} records of {len(gt)} files holding "
                                 f"{int(gt.own_records.sum())} records of the evaluator's own summaries (the field is right only "
                                 f"for the other sources' records: {gt.ground_truth_correct.max():.0%} of each file at most); "
                                 "the GPT and base files mark own summaries 1",
                     "n_affected": int(gt.own_records.sum()), "stored": "ground_truth = 0 everywhere",
                     "recomputed": "own = target_model is the evaluator's family (used by this re-analysis)"})
    ph = individual[(individual.exactly_half > 0.2) | (individual.all_nan > 0.2)]
    if len(ph):
        rows.append({"defect": "individual setting: placeholder values instead of model outputs",
                     "file": f"{len(ph)} individual_setting_results/*_ft_llama files",
                     "evidence": "; ".join(
                         f"{r.file.removeprefix('individual_setting_results/')}: "
                         + (f"P(Yes) exactly 0.5 in {r.exactly_half:.1%}" if not np.isnan(r.exactly_half) else
                            f"all five score probabilities NaN in {r.all_nan:.1%}")
                         for r in ph.itertuples()),
                     "n_affected": int(sum(r.n * (r.exactly_half if not np.isnan(r.exactly_half) else r.all_nan)
                                           for r in ph.itertuples())),
                     "stored": "0.5 / NaN", "recomputed": "no information (a mean over them is 0.5 by construction)"})

    w = worse_prompt_audit(same)
    g35, g4 = w[w.family != "gpt4"], w[w.family == "gpt4"]
    if len(g35) and len(g4) and g35.flipped_answers_min.iloc[0] > g4.flipped_answers_max.iloc[0] \
            and g35.same_answers_max.iloc[0] < g4.same_answers_min.iloc[0]:
        r35, r4 = g35.iloc[0], g4.iloc[0]
        rows.append({"defect": "'which is worse' (unresolved): GPT-3.5 answers are its 'which is better' answers reversed "
                               "(flip not applied, or the question ignored)",
                     "file": f"{int(r35.files)} results_with_worse/*gpt35* files",
                     "evidence": f"after the upstream flip, GPT-3.5 files repeat the 'better' answers in "
                                 f"{r35.same_answers_min:.1%}-{r35.same_answers_max:.1%} of pairs and reverse them in "
                                 f"{r35.flipped_answers_min:.1%}-{r35.flipped_answers_max:.1%} (scores r = {r35.score_corr_min:.2f} to "
                                 f"{r35.score_corr_max:.2f}); GPT-4 repeats them in {r4.same_answers_min:.1%}-{r4.same_answers_max:.1%} "
                                 f"(r = {r4.score_corr_min:.2f} to {r4.score_corr_max:.2f}); the files cannot tell a missing "
                                 "flip from a model that names the summary it prefers whatever it is asked",
                     "n_affected": int(r35.pairs),
                     "stored": "S under 'worse' as stored: " + "; ".join(
                         f"{ev} on {ds} {_frame(f'results_with_worse/{ds}/{ev}_results.json')['self_preference'].mean():.3f}"
                         for ds in DATASETS for ev in ("gpt35",) if _exists(f"results_with_worse/{ds}/{ev}_results.json")),
                     "recomputed": "1 - S if the flip is missing: " + "; ".join(
                         f"{ev} on {ds} {1 - _frame(f'results_with_worse/{ds}/{ev}_results.json')['self_preference'].mean():.3f}"
                         for ds in DATASETS for ev in ("gpt35",) if _exists(f"results_with_worse/{ds}/{ev}_results.json"))
                     + " (not decidable from the files)"})
    return rows


def worse_prompt_text(worse: pd.DataFrame) -> str:
    """Generated sentence on what the "which is worse" files allow (from :func:`worse_prompt_audit`).

    Says that the GPT-3.5 reading is undecidable only when GPT-3.5's stored answers are mostly the
    reversed "better" answers while GPT-4's are mostly the same ones; otherwise says the two families agree.
    """
    w = worse.set_index("family")
    if "gpt4" not in w.index or len(w) < 2:
        return "The 'which is worse' files of only one family were released: nothing to compare them with."
    g4, g35 = w.loc["gpt4"], w.drop(index="gpt4").iloc[0]
    if g35.flipped_answers_min > g4.flipped_answers_max and g35.same_answers_max < g4.same_answers_min:
        return (f"After the upstream flip, GPT-4's 'which is worse' answers repeat its 'which is better' answers in "
                f"{g4.same_answers_min:.0%} to {g4.same_answers_max:.0%} of pairs, as a model that reads the question "
                f"should; every GPT-3.5 file (base and fine-tuned, {int(g35.files)} files) instead reverses them in "
                f"{g35.flipped_answers_min:.0%} to {g35.flipped_answers_max:.0%} of pairs and repeats them in at most "
                f"{g35.same_answers_max:.0%}. Either the flip was not applied to the GPT-3.5 files, and then their "
                "'worse' S must be read as 1 - S, or GPT-3.5 names the summary it prefers whatever it is asked; the "
                "files cannot tell the two apart, so the 'worse' S of GPT-3.5 supports neither reading.")
    return (f"GPT-4 repeats its 'better' answers in {g4.same_answers_min:.0%} to {g4.same_answers_max:.0%} of pairs "
            f"under the 'worse' prompt and GPT-3.5 in {g35.same_answers_min:.0%} to {g35.same_answers_max:.0%}: the two "
            "families read the files the same way.")


def audit_summary_text(scores: pd.DataFrame) -> str:
    """One generated sentence over :func:`score_answer_audit`: how many file x task checks read as designed.

    ``unclear`` rows are split into those with no decisive pair (a control answering the same option in
    every pair: nothing to test) and the rest, so an unclear file is never counted as passing.
    """
    n = len(scores)
    o = scores.orientation.value_counts()
    nodec = int(((scores.orientation == "unclear") & (scores.n_decisive == 0)).sum())
    other_unclear = int(o.get("unclear", 0)) - nodec
    rev = scores[scores.orientation == "reversed"]
    text = (f"Of the {n} checks (GPT file x task), {int(o.get('as designed', 0))} store the score as the upstream code "
            f"computes it, {len(rev)} store its reverse")
    text += f" ({', '.join(f'`{f}`' for f in rev.file)})" if len(rev) else ""
    text += f", and {nodec} cannot be tested because every pair got the same answer in both orders (no decisive pair)"
    if other_unclear:
        text += f"; {other_unclear} remain unclear"
    neither = scores[(scores.orientation != "reversed") & (scores.neither > 0)]
    if len(neither):
        text += (f". {int(neither.neither.sum())} records in {len(neither)} files have a score that no reading of the "
                 "code gives from their own answers and probabilities ("
                 + ", ".join(f"`{r.file}` {r.task}: {r.neither} of {r.n_checkable}" for r in neither.itertuples()) + ")")
    return text + "."


def llama_label_text(ll: pd.DataFrame) -> str:
    """Generated sentence on the Llama label files (:func:`llama_label_audit`)."""
    rnd = ll[ll.condition == "random"]
    dup = rnd[rnd.matches_human_row > 0.99]
    fixed = ll[(ll.condition != "random") & (ll.matches_own_row > 0.99)]
    parts = []
    if len(fixed):
        parts.append(f"The correct- and swapped-label Llama files store, record by record, the renormalised raw P(\"1\") "
                     f"of the raw label file ({len(fixed)} of {int((ll.condition != 'random').sum())} files, every record)")
    if len(dup):
        parts.append(f"the random-label files do not: in {len(dup)} of {len(rnd)} of them every record carries the "
                     f"value of the article's *human* comparison ({dup.matches_human_row.min():.0%} of records; "
                     f"{dup.matches_own_row.min():.0%} to {dup.matches_own_row.max():.0%} match their own record, "
                     "the share of human records), with the human record's random labels and `model = \"human\"`. "
                     f"Each file is one comparison per article written four times, so its stored mean ("
                     + ", ".join(f"{r.stored_mean:.3f} on {r.dataset}" for r in dup.itertuples())
                     + ") is the human comparison's, not the four sources' ("
                     + ", ".join(f"{r.raw_mean:.3f}" for r in dup.itertuples()) + " from the raw file)"
                     + ("; the authors' analysis printed no random-label value"
                        if not (AUTHORS_LABEL_OUTPUT.condition == "random").any() else ""))
    ok = ll.raw_random_is_correct_or_wrong.min()
    parts = ["; ".join(parts) + "."] if parts else []
    parts.append(f"In the raw file itself the random-label output equals the correct-label output where Llama's label "
                 f"comes first and the swapped-label output otherwise in {ok:.0%} of records, as it must for one prompt.")
    return " ".join(parts)


def individual_text(ind: pd.DataFrame) -> str:
    """Generated sentence on the individual-setting files (:func:`individual_audit`)."""
    gt = ind[ind.ground_truth_correct.notna()]
    bad = gt[gt.ground_truth_correct < 0.999]
    half = ind[ind.exactly_half > 0.2]
    nan = ind[ind.all_nan > 0.2]
    parts = [f"{len(gt) - len(bad)} of the {len(gt)} recognition files mark the evaluator's own summaries with "
             "`ground_truth = 1`"]
    if len(bad):
        k = int(bad.evaluator.str.contains("_ft_llama").sum())
        who = "all of them fine-tuned Llama files" if k == len(bad) else f"{k} of them fine-tuned Llama files"
        parts[0] += (f"; the other {len(bad)} ({who}) "
                     f"mark {int(bad.ground_truth_positives.sum())} of their {int(bad.own_records.sum())} own-summary "
                     "records, so an accuracy computed from that field scores every own summary as someone else's")
    if len(half):
        parts.append(f"{len(half)} recognition files store P(\"Yes\") = 0.5 exactly in {half.exactly_half.min():.0%} to "
                     f"{half.exactly_half.max():.0%} of their records (elsewhere at most "
                     f"{ind.loc[ind.exactly_half <= 0.2, 'exactly_half'].max():.1%}), a placeholder, not an output")
    if len(nan):
        parts.append(f"{len(nan)} score files have all five score probabilities NaN in {nan.all_nan.min():.0%} to "
                     f"{nan.all_nan.max():.0%} of their records")
    return "; ".join(parts) + ". A mean over placeholders is 0.5 by construction and says nothing about recognition."


#: The released 2- and 10-example fine-tuning sets (the 500-example ones were not released).
FINETUNING_DATA = {
    ("gpt35", "xsum", 2): "finetuning_data_gpt35/xsum/2_ft_gpt35_detection_finetuning_data.jsonl",
    ("gpt35", "xsum", 10): "finetuning_data_gpt35/xsum/10_gpt35_detection_finetuning_data.jsonl",
    ("gpt35", "cnn", 2): "finetuning_data_gpt35/cnn/cnn_2_ft_gpt35_detection_finetuning_data.jsonl",
    ("gpt35", "cnn", 10): "finetuning_data_gpt35/cnn/cnn_10_ft_gpt35_detection_finetuning_data.jsonl",
    ("llama", "xsum", 2): "finetuning_data_llama/xsum/xsum_2_ft_llama_detection_finetuning_data.json",
    ("llama", "xsum", 10): "finetuning_data_llama/xsum/xsum_10_ft_llama_detection_finetuning_data.json",
    ("llama", "cnn", 2): "finetuning_data_llama/cnn/cnn_2_ft_llama_detection_finetuning_data.json",
    ("llama", "cnn", 10): "finetuning_data_llama/cnn/cnn_10_ft_llama_detection_finetuning_data.json",
}


def _finetuning_examples(path: str) -> list[tuple[str, str, str]]:
    """(system prompt, user prompt, target answer) per example of a released fine-tuning file."""
    import json

    from judgelab.data.fetch import fetch

    text = open(fetch("self_recognition", path), encoding="utf-8").read()
    out = []
    if path.endswith(".jsonl"):
        for line in text.splitlines():
            if line.strip():
                m = json.loads(line)["messages"]
                out.append((m[0]["content"], m[1]["content"], m[2]["content"]))
    else:
        for e in json.loads(text):
            t = e["input_text"]
            system = t.split("<<SYS>>\n", 1)[1].split("\n<</SYS>>", 1)[0]
            user, answer = t.split("<</SYS>>\n\n", 1)[1].rsplit("[/INST]", 1)
            out.append((system, user.strip(), answer.strip()))
    return out


@_cached_table
def finetuning_data_audit() -> pd.DataFrame:
    """``audit_finetuning_data.csv``: are the released fine-tuning sets what their names say?

    Per file: ``examples`` (expected 8 per article: four other sources x two orders), ``label_correct``
    (share whose target answer is the position of the family's own summary, found by matching both shown
    summaries against the released summaries), ``unmatched`` (summaries found in no released file),
    ``articles_are_first_n`` (the articles are ``keys[:N]``, as the design says), ``answer_1_share`` (0.5:
    balanced) and ``system_prompt_is_evaluation_one`` (the same system prompt as the evaluated detection task).
    """
    import re

    from judgelab.data.self_recognition import load_summaries
    from judgelab.prompts import panickssery2024 as P

    rows = []
    for (fam, ds, n), path in FINETUNING_DATA.items():
        summ = load_summaries(ds)
        by_text = summ.assign(text=summ["summary"].str.strip()).groupby("text")
        who = by_text["author"].agg(set).to_dict()
        key_of = by_text["key"].first().to_dict()
        pos = _key_index(ds)
        ex = _finetuning_examples(path)
        correct = unmatched = 0
        articles, answers, same_system = set(), [], 0
        for system, user, answer in ex:
            m = re.search(r"Summary1:\n(.*?)\n\nSummary2:\n(.*?)\n\nCan you tell", user, re.S)
            s1, s2 = m.group(1).strip(), m.group(2).strip()
            unmatched += (s1 not in who) + (s2 not in who)
            truth = "1" if fam in who.get(s1, set()) else "2" if fam in who.get(s2, set()) else "?"
            correct += answer == truth
            articles |= {pos[key_of[s]] for s in (s1, s2) if s in key_of}
            answers.append(answer)
            same_system += system == P.DETECTION_SYSTEM_PROMPT
        rows.append({"file": path, "family": fam, "dataset": ds, "n_train": n, "examples": len(ex),
                     "expected_examples": 8 * n, "label_correct": correct / len(ex), "unmatched": unmatched,
                     "articles_are_first_n": articles == set(range(n)),
                     "answer_1_share": float(np.mean([a == "1" for a in answers])),
                     "system_prompt_is_evaluation_one": same_system / len(ex)})
    return pd.DataFrame(rows)


def passing_checks_text(same: pd.DataFrame, design: pd.DataFrame, ftdata: pd.DataFrame) -> str:
    """Generated sentence on the checks that pass (an audit reports those too), each clause from its table."""
    parts = []
    ok_ft = ftdata[(ftdata.label_correct == 1) & ftdata.articles_are_first_n & (ftdata.examples == ftdata.expected_examples)]
    parts.append(f"{len(ok_ft)} of the {len(ftdata)} released fine-tuning sets (2 and 10 examples) hold 8 examples per "
                 "training article, on exactly the first N articles, with the target answer at the position of the "
                 "model's own summary in every example (answer \"1\" in "
                 + (f"{ftdata.answer_1_share.min():.0%} of every set)" if ftdata.answer_1_share.nunique() == 1 else
                    f"{ftdata.answer_1_share.min():.0%} to {ftdata.answer_1_share.max():.0%})"))
    two = int((design.labels_are_the_two_sources == 1).sum())
    parts.append(f"the random labels are the two true sources in every record of {two} of the {len(design)} GPT "
                 f"random-label files, the evaluator's label first in {design.first_label_own.min():.1%} to "
                 f"{design.first_label_own.max():.1%}")
    v = same[same.experiment.isin(["vs_human", "vs_model"])]
    if len(v):
        parts.append(f"the {len(v)} prompt-variant files repeat the main files' comparison answers (the same prompt) in "
                     f"{v.same_answers.min():.1%} to {v.same_answers.max():.1%} of pairs (r = {v.score_corr.min():.2f} to "
                     f"{v.score_corr.max():.2f})")
    d = same[same.task == "detection"]
    if len(d):
        low2 = d.nsmallest(min(4, len(d)), "same_answers")
        parts.append(f"the {len(d)} 'worse' files repeat the main files' detection answers in {d.same_answers.min():.1%} "
                     f"to {d.same_answers.max():.1%} of pairs (lowest: "
                     + ", ".join(f"{r.evaluator} on {r.dataset} {r.same_answers:.1%}" for r in low2.itertuples())
                     + "; one prompt sent twice to the API does not always get the same answer)")
    return "What passes: " + "; ".join(parts) + "."

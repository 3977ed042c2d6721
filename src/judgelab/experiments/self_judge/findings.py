"""The Self-J chapter's sentences, generated from its tables (every number and every direction).

Each function takes one table the pipeline wrote (``results/self_judge/*.csv``, see
:data:`~judgelab.experiments.self_judge.chapter.STAGE_TABLES`) or one that
:mod:`~judgelab.experiments.self_judge.chapter` derives from them, and returns Markdown. A direction (higher,
lower, above chance) is stated only where the 95 % interval lies on one side; otherwise the sentence says the
interval includes no difference. A stage that has not run is said to be pending, with how much of it the
stores hold (:func:`pending_sentence`), never rendered as a number. ``tests/test_self_judge_findings.py`` runs
each function on a table that makes its sentence true and on one that makes it false or flips it.

This module imports no model code and no pipeline (only the paper's numbers of :mod:`.evaluation`), so the
sentences can be tested on hand-made tables.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from judgelab.experiments.self_judge.evaluation import PAPER_PEARSON, POOLED

#: :func:`.chapter.stage_progress`'s state of a stage whose tables cover part of its work (defined here, where
#: the sentences need it; the chapter module imports it)
PARTIAL = "tables cover part of the work"

#: Ye & Ng 2024 (README of github.com/nusnlp/Self-J): best-of-32 with the Self-J judge as reward model,
#: WizardLM-13B-V1.2 on AlpacaEval, win rate (%) against the reference annotator: (version, before, after)
PAPER_BEST_OF_N: tuple[tuple[str, float, float], ...] = (("AlpacaEval v1", 89.17, 92.48),
                                                         ("AlpacaEval v2", 12.03, 15.90))
PAPER_N = 850  # the paper's test answers (five responding models), hub-only
#: fewer resampled units (answers, instructions) than this and a bootstrap interval is no basis for a direction
MIN_N = 10

SOURCE_NAMES = {"self_instruct": "Self-Instruct", "alpaca_seed": "Alpaca seed tasks",
                "prometheus_eval": "BiGGen-Bench", "mt_bench": "MT-bench / Vicuna-bench"}

STAGE_NAMES = {"speed": "policy speed", "answers": "policy answers", "labels": "training labels",
               "evaluate": "evaluation of the untrained methods", "perplexity": "perplexity baseline",
               "train": "judge training", "evaluate_trained": "evaluation of the trained judges",
               "best_of_n": "best-of-N"}

_BASE_NAMES: dict[str, str] = {
    "cosine": "Cosine",
    "selfeval_ref": "Self-eval (with reference)",
    "selfeval_ref_cosine": "Self-eval + Cosine",
    "selfeval_free": "Self-eval (without reference)",
    "logprob": "Perplexity (mean log-probability)",
    "length_words": "Answer length (words)",
    "oracle": "Oracle (the true quality)",
    "random": "Random acceptance",
    "score": "Picker's reference-free score",
}


def method_name(column: str, combination: str = "mean") -> str:
    """A score column's name for the reader: the paper's where it has one, the setting spelled out."""
    if column in _BASE_NAMES:
        name = _BASE_NAMES[column]
        return f"{name} ({combination}, ours)" if column == "selfeval_ref_cosine" else name
    if column.startswith("selfeval_ref_cosine_"):
        how = column.removeprefix("selfeval_ref_cosine_")
        return f"Self-eval + Cosine ({how}{', ours' if how == combination else ''})"
    if column.startswith("selfj_"):
        variant, _, setting = column.removeprefix("selfj_").rpartition("_")
        where = {"ref": "with reference", "free": "without reference"}.get(setting, setting)
        return f"{'Self-J' if variant == 'self_j' else 'Self-J ablation ' + variant} ({where})"
    return column


# --- formatting ------------------------------------------------------------------------------------------------
def _fin(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _f(x, digits: int = 2) -> str:
    return f"{float(x):.{digits}f}" if _fin(x) else "undefined"


def _iv(est, lo, hi, digits: int = 2) -> str:
    if not _fin(est):
        return "undefined"
    if not (_fin(lo) and _fin(hi)):
        return f"{_f(est, digits)} (no interval)"
    return f"{_f(est, digits)} [{_f(lo, digits)}, {_f(hi, digits)}]"


def _signed(est, lo, hi, digits: int = 2) -> str:
    s = _iv(est, lo, hi, digits)
    return ("+" + s) if _fin(est) and float(est) >= 0 else s


def _side(lo, hi, at: float = 0.0) -> int:
    """+1: interval above ``at``; -1: below; 0: includes it (or undefined)."""
    if _fin(lo) and float(lo) > at:
        return 1
    if _fin(hi) and float(hi) < at:
        return -1
    return 0


def _n(x) -> str:
    return f"{int(x):,}"


def _pct(x, digits: int = 0) -> str:
    return f"{100 * float(x):.{digits}f} %" if _fin(x) else "undefined"


def _list(items: list[str]) -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# --- the paper --------------------------------------------------------------------------------------------------
def paper_sentence() -> str:
    """The paper's headline numbers, from :data:`PAPER_PEARSON` and :data:`PAPER_BEST_OF_N`."""
    p = PAPER_PEARSON
    w, wo = "with reference", "without reference"
    bon = "; ".join(f"{v} from {a:.2f} to {b:.2f}" for v, a, b in PAPER_BEST_OF_N)
    return (f"On their {PAPER_N} test answers (Pearson r x 100 with GPT-4's scores, averaged over five responding "
            f"models): with the reference, the cosine gives {p[(w, 'Cosine')]:.2f}, self-evaluation "
            f"{p[(w, 'Self-eval')]:.2f}, the two combined {p[(w, 'Self-eval + Cosine')]:.2f} and the trained Self-J "
            f"judge {p[(w, 'Self-J')]:.2f}; without it, perplexity gives {p[(wo, 'Perplexity')]:.2f}, "
            f"self-evaluation {p[(wo, 'Self-eval')]:.2f} and the trained 13B judge {p[(wo, 'Self-J judge')]:.2f} "
            f"(UltraRM-13b, a reward model trained on human preferences, {p[(wo, 'UltraRM-13b')]:.2f}). As a reward "
            f"model for best-of-32 sampling it raises WizardLM-13B-V1.2's AlpacaEval win rate ({bon}).")


# --- progress ---------------------------------------------------------------------------------------------------
def _work(r) -> str:
    share = f" ({_pct(r.done / r.total)})" if r.total else ""
    return f"{_n(r.done)} of {_n(r.total)} {r.unit}{share}"


def pending_sentence(progress: pd.DataFrame, stage: str, brief: bool = False) -> str:
    """What the reader gets in place of a stage's results: that the stage is complete, or that it is pending
    with how much of its work the stores hold ("608 of 1,280 judge calls ..."), and which tables will appear.
    ``brief``: one short line, for the second and later sections that wait on the same stage."""
    rows = progress[progress["stage"] == stage]
    if rows.empty:
        return f"The {STAGE_NAMES.get(stage, stage)} stage is not part of this run."
    r = next(rows.itertuples())
    name = STAGE_NAMES.get(stage, stage)
    if r.state == "done":
        return f"The {name} stage is complete (`{stage}`: {_work(r)}); its tables are read below."
    if brief:
        return (f"*Pending: the {name} stage (`{stage}`), {r.state}" + (f", {_work(r)}" if r.done else "")
                + ".*")
    tables = ", ".join(f"`{t}`" for t in str(r.missing_tables).split(", ") if t)
    if r.state == "not started":
        head = f"**Not yet run.** The {name} stage (`{stage}`) has not started in the {r.profile} profile's stores"
    elif r.state == "computed, tables not written":
        head = (f"**Computed, not yet tabulated.** The stores hold all the work of the {name} stage (`{stage}`: "
                f"{_work(r)}), but its tables have not been written")
    else:
        head = f"**In progress.** The {name} stage (`{stage}`) is running; stored so far: {_work(r)}"
    return (head + f"; the results shown here appear when it completes ({tables}). Nothing in this section is "
            "estimated from a partial run.")


def partial_sentence(progress: pd.DataFrame, stage: str) -> str:
    """For a stage whose tables cover part of its work (some judge variants trained or evaluated, the others
    still running): a line saying so, with how much is stored; empty for any other state."""
    rows = progress[progress["stage"] == stage]
    if rows.empty or next(rows.itertuples()).state != PARTIAL:
        return ""
    r = next(rows.itertuples())
    return (f"*Part of the {STAGE_NAMES.get(stage, stage)} stage (`{stage}`) is in these tables: the stores "
            f"hold {_work(r)}; the rest is still running and appears here when it completes.*")


def figure_message(progress: pd.DataFrame, stage: str) -> str:
    """The short text a figure shows in place of a pending stage's curves ("not yet run: ..." with the count
    of work stored); empty when the stage is done."""
    rows = progress[progress["stage"] == stage]
    if rows.empty:
        return f"{stage}: not part of this run"
    r = next(rows.itertuples())
    if r.state == "done":
        return ""
    if r.state == "not started":
        return f"not yet run: stage {stage}"
    return f"not yet run: stage {stage} has {_work(r)}"


def progress_sentence(progress: pd.DataFrame) -> str:
    """One sentence over all stages: how many are complete, which are in progress (with their counts) and
    which have not started."""
    done = progress[progress["state"] == "done"]
    running = progress[progress["state"].isin(["in progress", "computed, tables not written", PARTIAL])]
    waiting = progress[progress["state"] == "not started"]
    head = f"{len(done)} of {len(progress)} stages are complete"
    if len(done) == len(progress):
        return head + ": every table of this chapter is computed."
    parts = [head + (f" ({_list([f'`{s}`' for s in done['stage']])})" if len(done) else "")]
    if len(running):
        parts.append("in progress: " + "; ".join(f"`{r.stage}`, {_work(r)}" for r in running.itertuples()))
    if len(waiting):
        parts.append("not started: " + _list([f"`{s}`" for s in waiting["stage"]]))
    return "; ".join(parts) + ". Sections whose stage is pending say so where their results will be."


# --- the design --------------------------------------------------------------------------------------------------
def design_sentence(record: dict) -> str:
    """The profile's sizes (:meth:`~.run.SelfJudgeProfile.as_record`) in words, with the limitation a single
    sample per training instruction brings."""
    k = int(record["train_samples"])
    same = record["judge"] == record["policy"] or str(record["policy"]).startswith(str(record["judge"]))
    judge = (f"the judge is {record['judge']}" + (" (the policy's weights, in the transformers runtime)" if same
                                                  else ""))
    text = (f"Profile `{record['profile']}`: the policy {record['policy']} answers {_n(record['n_train'])} training "
            f"instructions ({k} sample{'s' if k != 1 else ''} each) and {_n(record['n_heldout'])} held-out ones "
            f"({_n(record['best_of_n'])} samples each, for best-of-N), at temperature {record['temperature']:g} and "
            f"at most {_n(record['max_new_tokens'])} new tokens; {judge}.")
    if k == 1:
        text += (" **One sample per training instruction**: the paper samples several answers per instruction, so "
                 "its judge learns how the quality of answers to one instruction varies; here each instruction "
                 "contributes one answer and one label.")
    return text


# --- policy speed ----------------------------------------------------------------------------------------------
def _load(lo, hi) -> str:
    return f"load average {lo:.1f}" + (f"-{hi:.1f}" if f"{hi:.1f}" != f"{lo:.1f}" else "")


def speed_sentence(speed: pd.DataFrame, policy: str) -> str:
    """Which candidate policy decoded fastest on the same instructions, and whether the chosen policy is it."""
    if speed.empty:
        return "No candidate policy has been timed."
    s = speed.sort_values("tokens_per_s", ascending=False)
    lo = float(min(s["load_avg_before"].min(), s["load_avg_after"].min()))
    hi = float(max(s["load_avg_before"].max(), s["load_avg_after"].max()))
    parts = [f"{r.model} {r.tokens_per_s:.1f} tokens/s ({_n(r.generated_tokens)} tokens in {r.seconds:.1f} s)"
             for r in s.itertuples()]
    first = s.iloc[0]
    k = int(first["prompts"])
    head = (f"Answering the same {_n(k)} training instruction{'s' if k != 1 else ''} (at most "
            f"{_n(first['max_new_tokens'])} new tokens, temperature {first['temperature']:g}, "
            f"{_n(first['threads'])} thread, {_load(lo, hi)}): " + "; ".join(parts) + ".")
    if policy not in set(s["model"]):
        return head + f" The policy, {policy}, was not among the timed candidates."
    if len(s) == 1:
        return head + f" The policy is {policy}, the only candidate timed."
    pol = s.set_index("model").loc[policy, "tokens_per_s"]
    if policy == first["model"]:
        other = s.iloc[1]
        return head + (f" The policy is the fastest, {policy}: {pol / other['tokens_per_s']:.1f}x the tokens/s of "
                       f"{other['model']}.")
    return head + (f" The policy, {policy}, is not the fastest: {first['model']} decodes "
                   f"{first['tokens_per_s'] / pol:.1f}x as many tokens/s.")


def runtime_sentence(gen: pd.DataFrame, model: str) -> str:
    """The llama.cpp runtime against the transformers runtime on the same model (greedy, the benchmark's
    prompts): why the policy generates through llama.cpp."""
    g = gen[gen["model"] == model].set_index("method")["tokens_per_s"]
    if not {"judgelab-llama.cpp", "judgelab-transformers"} <= set(g.index):
        return f"The generation benchmark has no llama.cpp and transformers rows for {model}."
    ratio = g["judgelab-llama.cpp"] / g["judgelab-transformers"]
    verdict = (f"{ratio:.1f}x as fast" if ratio > 1 else f"slower ({ratio:.2f}x the tokens/s)")
    return (f"For {model}, judgelab's llama.cpp runtime generated {g['judgelab-llama.cpp']:.1f} tokens/s against "
            f"the transformers runtime's {g['judgelab-transformers']:.1f}: {verdict}.")


def timing_sentence(timing: pd.DataFrame, progress: pd.DataFrame | None = None) -> str:
    """When the run stored its answers, the median gap between them and, while answers are pending, how long
    the rest would take at that pace."""
    if timing.empty or not int(timing["answers"].iloc[0]):
        return "No answer of the policy is stored yet."
    t = timing.iloc[0]
    text = (f"The run stored {_n(t['answers'])} answers of {t['policy']} between {t['first']} and {t['last']} "
            f"(UTC), a median {_f(t['median_gap_s'], 0)} s apart (mean {_f(t['mean_gap_s'], 0)} s; one thread, on a "
            "machine shared with the judge's run)")
    if int(t["pauses_over_1h"]):
        text += f"; {int(t['pauses_over_1h'])} pause(s) of over an hour left out"
    text += "."
    if progress is not None:
        a = progress[progress["stage"] == "answers"]
        if len(a) and a["state"].iloc[0] != "done" and _fin(t["median_gap_s"]):
            left = int(a["total"].iloc[0]) - int(a["done"].iloc[0])
            if left > 0:
                text += (f" At that pace the {_n(left)} answers still to come take about "
                         f"{left * float(t['median_gap_s']) / 3600:.1f} hours.")
    return text


# --- data -------------------------------------------------------------------------------------------------------
def data_sentence(sources: pd.DataFrame, refused: pd.DataFrame) -> str:
    """Training instructions per source, kept and refused with the reasons, and the selection."""
    kept = int(sources["kept"].sum())
    parts = [f"{SOURCE_NAMES.get(r.source, r.source)} {_n(r.kept)}" for r in sources.itertuples() if r.kept]
    none = [SOURCE_NAMES.get(r.source, r.source) for r in sources.itertuples() if not r.kept]
    text = f"{_n(kept)} instructions have a gold reference ({', '.join(parts)})"
    if len(refused):
        reasons = "; ".join(f"{SOURCE_NAMES.get(src, src)}: " + ", ".join(f"{_n(r.n)} {r.reason}" for r in g.itertuples())
                            for src, g in refused.groupby("source", sort=False))
        text += f"; {_n(refused['n'].sum())} were refused ({reasons})"
    text += "."
    if none:
        text += f" {_list(none)} contribute{'s' if len(none) == 1 else ''} no instruction."
    text += (f" A seeded draw takes {_n(sources['train'].sum())} for training and holds out "
             f"{_n(sources['heldout'].sum())} (best-of-N, selective following on the policy's own answers).")
    return text


def leakage_sentence(leakage: pd.DataFrame) -> str:
    """The contamination check: no selected instruction may be an evaluation question."""
    r = leakage.iloc[0]
    head = (f"Leakage check ({r['check']}): {_n(r['refused_as_evaluation'])} instructions were refused earlier "
            f"because they are evaluation questions, and ")
    if int(r["overlapping"]) == 0:
        return head + (f"none of the {_n(r['selected'])} selected instructions matches any of the "
                       f"{_n(r['evaluation_questions'])} evaluation questions: no evaluation instruction is trained on.")
    return head + (f"**{_n(r['overlapping'])} of the {_n(r['selected'])} selected instructions match an evaluation "
                   "question**: the pipeline refuses to run on such a selection.")


def evaluation_sentence(evaluation: pd.DataFrame) -> str:
    """The GPT-4-scored evaluation answers: how many, by whom, and which responder GPT-4 rated highest."""
    e = evaluation.sort_values("gpt4_mean", ascending=False)
    n = int(e["answers"].sum())
    top, bottom = e.iloc[0], e.iloc[-1]
    return (f"{_n(n)} answers by {len(e)} models ({_list([str(m) for m in evaluation['model']])}) to "
            f"{_n(e['questions'].max())} questions; GPT-4's mean score (the mean of its three 1-5 scores per "
            f"answer) is highest for {top['model']} ({_f(top['gpt4_mean'])}) and lowest for {bottom['model']} "
            f"({_f(bottom['gpt4_mean'])}). The paper's {PAPER_N} answers of five models are not reachable offline: "
            "these are a stand-in, compared with the paper in kind, not cell for cell.")


def answers_sentence(summary: pd.DataFrame) -> str:
    """The policy's answers per split: usable, empty (kept and counted), too long for the context, missing."""
    out = []
    for split, name in (("train", "training"), ("heldout", "held-out")):
        s = summary[summary["split"] == split]
        if s.empty:
            continue
        tot = {c: int(s[c].sum()) for c in ("ok", "empty", "too long", "missing")}
        n = sum(tot.values())
        samples = s["sample"].nunique()
        text = (f"{name} answers: {_n(tot['ok'])} of {_n(n)} usable ({samples} sample"
                f"{'s' if samples != 1 else ''} per instruction)")
        extra = [f"{_n(tot['empty'])} empty (kept, counted, not rated)" if tot["empty"] else "",
                 f"{_n(tot['too long'])} whose prompt exceeded the context" if tot["too long"] else "",
                 f"{_n(tot['missing'])} not generated yet" if tot["missing"] else ""]
        extra = [e for e in extra if e]
        out.append(text + ("; " + ", ".join(extra) if extra else "; none empty or missing"))
    return ("The policy's " + "; ".join(out) + ".") if out else "No answer summary."


# --- training labels ---------------------------------------------------------------------------------------------
def labels_sentence(labels: pd.DataFrame) -> str:
    """The two label sources on the policy's own training answers: self-evaluation (how many valid, how much
    of the judge's answer was a digit at all) and the cosine, and whether they agree."""
    from judgelab.stats import pearson

    n = len(labels)
    valid = labels["valid"].astype(bool)
    v = labels[valid]
    text = (f"The policy rated {_n(valid.sum())} of its {_n(n)} training answers against the reference "
            f"({_n((~valid).sum())} invalid: no mass on any digit, left unlabelled); the median probability its "
            f"next token put on the ten digits at all is {_f(labels['digit_mass'].median(), 3)}. Self-evaluation "
            f"averages {_f(v['self_eval'].mean())} on 0-9 (sd {_f(v['self_eval'].std())}), the cosine "
            f"{_f(labels['cosine'].mean())} (sd {_f(labels['cosine'].std())})")
    both = v[["self_eval", "cosine"]].dropna()
    if len(both) < 4 or both["self_eval"].nunique() < 2 or both["cosine"].nunique() < 2:
        return text + "; too few varied answers to correlate the two."
    r = pearson(both["self_eval"], both["cosine"])
    side = _side(r["r_low"], r["r_high"])
    verdict = ("they agree: answers closer to the reference are rated higher" if side > 0 else
               "they disagree: answers closer to the reference are rated lower" if side < 0 else
               "their correlation is not distinguishable from zero, so the two sources carry different information")
    return text + f"; the two correlate at r = {_iv(r['r'], r['r_low'], r['r_high'])}: {verdict}."


def label_distribution_sentence(dist: pd.DataFrame) -> str:
    """How many of the ten digits each variant's labels use, and the share of the most common one: a label
    that is nearly constant teaches the judge little."""
    parts, narrow = [], []
    for row in dist.to_dict("records"):
        counts = np.array([row.get(str(d), 0) for d in range(10)], dtype=float)
        total = counts.sum()
        if total == 0:
            parts.append(f"{row['variant']}: no label")
            continue
        mode, used = int(counts.argmax()), int((counts > 0).sum())
        parts.append(f"{row['variant']} ({row['label_from']}) uses {used} of the 10 digits, "
                     f"{_pct(counts[mode] / total)} of its labels are {mode}")
        if used <= 2:
            narrow.append(str(row["variant"]))
    text = "Labels per variant: " + "; ".join(parts) + "."
    if narrow:
        text += (f" {_list(narrow)} teach{'es' if len(narrow) == 1 else ''} at most two digits: a judge can learn "
                 "little more than a constant from such labels.")
    return text


# --- Pearson -----------------------------------------------------------------------------------------------------
def pearson_sentence(paper: pd.DataFrame, setting: str) -> str:
    """Our pooled r x 100 (95 % interval) per method of one setting beside the paper's average, and which of
    the methods both tables have is best in each."""
    t = paper[(paper["setting"] == setting) & paper["ours_pooled_r100"].notna()]
    if t.empty:
        return f"No method {setting} has been evaluated yet."
    parts = []
    for r in t.itertuples():
        p = f"; paper {r.paper_r100:.2f}" if _fin(r.paper_r100) else ""
        unscored = f", {_n(r.n_unscored)} unscored" if r.n_unscored else ""
        parts.append(f"{r.method} {_iv(r.ours_pooled_r100, r.ours_pooled_low, r.ours_pooled_high, 1)} "
                     f"({_n(r.n)} answers{unscored}{p})")
    text = f"Pooled Pearson r x 100 {setting}: " + "; ".join(parts) + "."
    neg = [str(r.method) for r in t.itertuples() if _side(r.ours_pooled_low, r.ours_pooled_high) < 0]
    flat = [str(r.method) for r in t.itertuples() if _side(r.ours_pooled_low, r.ours_pooled_high) == 0]
    if neg:
        text += (f" {_list(neg)} correlate{'s' if len(neg) == 1 else ''} *negatively* with GPT-4's score (the "
                 "interval lies below 0): answers scored higher tend to be the ones GPT-4 rated lower.")
    if flat:
        text += f" {_list(flat)}: not distinguishable from no correlation (the interval includes 0)."
    common = t[t["paper_r100"].notna()]
    if len(common) >= 2:
        ours_best = common.loc[common["ours_pooled_r100"].idxmax(), "method"]
        paper_best = common.loc[common["paper_r100"].idxmax(), "method"]
        if ours_best == paper_best:
            text += f" Of the methods in both tables, {ours_best} is the best here as in the paper."
        else:
            text += f" Of the methods in both tables, {ours_best} is the best here; in the paper it is {paper_best}."
        top = t.loc[t["ours_pooled_r100"].idxmax()]
        if top["method"] != ours_best:
            text += (f" Highest of all here is {top['method']} "
                     f"({_iv(top.ours_pooled_r100, top.ours_pooled_low, top.ours_pooled_high, 1)}), which the "
                     "paper's table does not list.")
    return text


def comparison_sentence(diffs: pd.DataFrame, a: str, b: str, combination: str = "mean") -> str:
    """Whether method ``a``'s pooled r exceeds ``b``'s on the same answers (paired, questions resampled)."""
    rows = diffs[(diffs["a"] == a) & (diffs["b"] == b)]
    na, nb = method_name(a, combination), method_name(b, combination)
    if rows.empty or not _fin(rows["diff"].iloc[0]):
        note = rows["note"].iloc[0] if len(rows) else "not computed"
        return f"{na} against {nb}: {note}."
    r = rows.iloc[0]
    head = f"{na} against {nb}: r {_f(r['r_a'])} vs {_f(r['r_b'])} on the {_n(r['n'])} answers both scored, "
    if not (_fin(r["low"]) and _fin(r["high"])):
        sign = "+" if float(r["diff"]) >= 0 else ""
        return head + f"difference {sign}{_f(r['diff'])}; too few questions for an interval."
    side = _side(r["low"], r["high"])
    how = ("higher" if side > 0 else "lower" if side < 0 else "not distinguishable (the interval includes 0)")
    return head + f"difference {_signed(r['diff'], r['low'], r['high'])}: {how}."


def claims_sentence(claims: pd.DataFrame) -> str:
    """How many of the paper's claims our paired intervals support, contradict or cannot tell, and which
    have not been run."""
    ran = claims[claims["verdict"] != "not run"]
    if ran.empty:
        return "None of the paper's claims can be checked yet: their methods have not been evaluated."
    counts = ran["verdict"].value_counts()
    head = (f"Of the {len(ran)} claims checked: {int(counts.get('supported', 0))} supported (our interval "
            f"above 0), {int(counts.get('contradicted', 0))} contradicted (below 0), "
            f"{int(counts.get('not distinguishable', 0))} not distinguishable")
    other = len(ran) - int(counts.get("supported", 0) + counts.get("contradicted", 0) +
                           counts.get("not distinguishable", 0))
    if other:
        head += f"; {other} have no interval (too few questions)"
    head += "."
    lines = [f"- {r.claim}: {r.verdict} (ours {_signed(r.ours_diff_r100, r.ours_low_r100, r.ours_high_r100, 1)}; "
             f"paper {r.paper_diff_r100:+.2f})" for r in ran.itertuples()]
    pending = claims[claims["verdict"] == "not run"]
    tail = (f"\n\nNot run yet: {_list([str(c) for c in pending['claim']])}." if len(pending) else "")
    return head + " Differences in r x 100:\n\n" + "\n".join(lines) + tail


def combination_sentence(pearson: pd.DataFrame, combination: str = "mean") -> str:
    """How much the unpublished combination formula matters: each candidate's pooled r, the spread, and
    whether ours is the best of them."""
    combos = pearson[pearson["method"].str.startswith("selfeval_ref_cosine_") & (pearson["model"] == POOLED)]
    combos = combos[combos["r"].notna()]
    if combos.empty:
        return "No combined score has been evaluated yet."
    parts = [f"{m.removeprefix('selfeval_ref_cosine_')} {_iv(r, lo, hi)}"
             for m, r, lo, hi in zip(combos["method"], combos["r"], combos["r_low"], combos["r_high"])]
    best = combos.loc[combos["r"].idxmax()]
    best_name = best["method"].removeprefix("selfeval_ref_cosine_")
    spread = combos["r"].max() - combos["r"].min()
    text = (f"The three candidate combinations give pooled r = {'; '.join(parts)}: a spread of {_f(spread)} in r "
            "from the choice of formula alone.")
    if best_name == combination:
        text += f" Ours ({combination}) has the highest point estimate of the three (paired comparisons below)."
    else:
        ours = combos[combos["method"] == f"selfeval_ref_cosine_{combination}"]
        gap = f", ours {_f(best['r'] - ours['r'].iloc[0])} below it" if len(ours) else ""
        text += f" Ours ({combination}, fixed before the evaluation) is not the best: {best_name} is{gap}."
    return text


def per_model_sentence(pearson: pd.DataFrame, method: str, combination: str = "mean") -> str:
    """For one method, the responding model it ranks best and worst within (r and interval)."""
    t = pearson[(pearson["method"] == method) & ~pearson["model"].isin([POOLED, "average"]) & pearson["r"].notna()]
    if t.empty:
        return f"{method_name(method, combination)} has no per-model r (too few answers per responding model)."
    hi, lo = t.loc[t["r"].idxmax()], t.loc[t["r"].idxmin()]
    avg = pearson[(pearson["method"] == method) & (pearson["model"] == "average")]
    avg_text = f"; the per-model average, the paper's statistic, is {_f(avg['r'].iloc[0])}" if len(avg) else ""
    return (f"Within one responding model, {method_name(method, combination)} ranges from r = "
            f"{_iv(lo['r'], lo['r_low'], lo['r_high'])} ({lo['model']}) to "
            f"{_iv(hi['r'], hi['r_low'], hi['r_high'])} ({hi['model']}){avg_text}.")


def invalid_sentence(invalid: pd.DataFrame) -> str:
    """Invalid judge answers per method: counted and left out, never scored 0."""
    if invalid.empty:
        return "No method records the validity of its answers."
    bad = invalid[invalid["invalid"] > 0]
    if bad.empty:
        text = (f"Every method scored every answer: no judge answer was without a digit "
                f"({_n(invalid['answers'].max())} answers per method).")
    else:
        text = ("Answers a method could not score (no digit in the judge's top answer; an empty answer for "
                "perplexity) are left out of its r and counted, never scored 0: "
                + "; ".join(f"{r.name} {_n(r.invalid)} of {_n(r.answers)} ({_pct(r.invalid_share, 1)})"
                            for r in bad.itertuples()) + ".")
    mass = invalid[invalid["median_digit_mass"].notna()]
    if len(mass):
        text += (" The median probability the judge's first answer token is a digit at all: "
                 + "; ".join(f"{r.name} {_f(r.median_digit_mass, 3)}" for r in mass.itertuples())
                 + " -- the score is the expectation over that renormalised sliver.")
    return text


def length_sentence(diffs: pd.DataFrame, combination: str = "mean") -> str:
    """Which methods beat answer length (pooled r, paired intervals): a judge that cannot is not judging
    content."""
    t = diffs[(diffs["b"] == "length_words") & diffs["diff"].notna()]
    if t.empty:
        return "Answer length has not been compared with the other methods yet."
    above, below, flat, no_iv = [], [], [], []
    for r in t.itertuples():
        if not (_fin(r.low) and _fin(r.high)):
            no_iv.append(f"{method_name(r.a, combination)} ({_f(r.diff)})")
            continue
        s = _side(r.low, r.high)
        (above if s > 0 else below if s < 0 else flat).append(
            f"{method_name(r.a, combination)} ({_signed(r.diff, r.low, r.high)})")
    length_r = float(t["r_b"].iloc[0])
    text = f"Answer length alone correlates with GPT-4's score at pooled r = {_f(length_r)}. Against it (difference in r): "
    bits = [f"beats it: {'; '.join(above)}" if above else "",
            f"does worse: {'; '.join(below)}" if below else "",
            f"not distinguishable: {'; '.join(flat)}" if flat else "",
            f"too few questions for an interval: {'; '.join(no_iv)}" if no_iv else ""]
    text += ". ".join(b for b in bits if b) + "."
    if not above and (below or flat):
        text += " No method beats answer length here."
    return text



def length_controlled_sentence(table: pd.DataFrame, combination: str = "mean") -> str:
    """What lies beneath the length effect (:func:`~judgelab.experiments.self_judge.chapter.length_controlled`):
    how GPT-4's score moves with answer length, which methods' scores move with length (with or against it),
    and which keep a correlation with GPT-4 once length is held fixed (a direction only where the 95 %
    interval excludes 0)."""
    t = table[table["r_quality"].notna() & (table["method"] != "length_words")]
    if t.empty:
        return "The length-controlled correlations have not been computed yet."
    ref = t.iloc[0]
    q_side = _side(ref.r_quality_length_low, ref.r_quality_length_high)
    q_way = {1: "rises", -1: "falls", 0: "does not move distinguishably"}[q_side]
    bits = [f"GPT-4's score {q_way} with (log) answer length "
            f"(r = {_signed(ref.r_quality_length, ref.r_quality_length_low, ref.r_quality_length_high)})."]
    with_l, against_l = [], []
    for r in t.itertuples():
        s = _side(r.r_length_low, r.r_length_high)
        item = f"{method_name(r.method, combination)} ({_signed(r.r_length, r.r_length_low, r.r_length_high)})"
        if s > 0:
            with_l.append(item)
        elif s < 0:
            against_l.append(item)
    if against_l:
        bits.append("These scores fall as answers get longer: " + "; ".join(against_l) + ".")
    if with_l:
        bits.append("These rise as answers get longer: " + "; ".join(with_l) + ".")
    parts = [(method_name(r.method, combination), _side(r.partial_r_low, r.partial_r_high),
              _signed(r.partial_r, r.partial_r_low, r.partial_r_high)) for r in t.itertuples()]
    bits.append("Holding (log) length fixed, the partial r with GPT-4's score is "
                + "; ".join(f"{name} {iv}" for name, _, iv in parts) + ".")
    pos = [name for name, side, _ in parts if side > 0]
    neg = [name for name, side, _ in parts if side < 0]
    if pos:
        bits.append("Signal beyond length remains for " + _list(pos) + ".")
    if neg:
        bits.append("Beyond length, " + _list(neg) + (" disagrees" if len(neg) == 1 else " disagree") + " with GPT-4.")
    if not pos and not neg:
        bits.append("No method keeps a correlation with GPT-4 distinguishable from 0 once length is held fixed.")
    return " ".join(bits)

# --- selective instruction following -----------------------------------------------------------------------------
def selective_sentence(selective: pd.DataFrame, combination: str = "mean", quality: str = "GPT-4 score") -> str:
    """Per method, the share of the oracle's gain over random acceptance it captures (area between the curves,
    bootstrap interval): which beat random, and the best."""
    if selective.empty:
        return "Selective following has not been computed yet."
    s = selective.copy()
    parts, beat, worse = [], [], []
    for r in s.itertuples():
        parts.append(f"{method_name(r.method, combination)} {_iv(r.normalised, r.normalised_low, r.normalised_high)}")
        side = _side(r.normalised_low, r.normalised_high)
        if side:
            (beat if side > 0 else worse).append(method_name(r.method, combination))
    best = s.loc[s["normalised"].idxmax()] if s["normalised"].notna().any() else None
    first = s.iloc[0]
    few = int(s["n"].min()) < MIN_N if "n" in s.columns else False
    text = (f"Accepting the answers a method scores highest, the mean {quality} of the accepted ones, averaged "
            f"over coverages, is {_f(first['random_area'])} for random acceptance and {_f(first['oracle_area'])} "
            "for the oracle. The share of the oracle's gain over random each method captures (0: chance, 1: "
            "oracle): " + "; ".join(parts) + ".")
    if few:
        text += f" With {_n(s['n'].min())} answers the intervals are no basis for a direction."
    else:
        text += (f" Better than random: {_list(beat)}." if beat else
                 " No method is distinguishably better than random acceptance.")
        if worse:
            text += (f" *Worse* than random: {_list(worse)} (it accepts the answers GPT-4 rated lower first)."
                     if len(worse) == 1 else
                     f" *Worse* than random: {_list(worse)} (they accept the answers GPT-4 rated lower first).")
    if best is not None:
        text += (f" The best, {method_name(best['method'], combination)}, keeps a mean {quality} of "
                 f"{_f(best['quality_at_0.2'])} on the 20 % it accepts first (all answers: {_f(first['random_area'])}).")
    return text


# --- training and the trained judges --------------------------------------------------------------------------------
def training_sentence(runs: pd.DataFrame) -> str:
    """What each judge variant was trained on and for how long."""
    if runs.empty:
        return "No judge variant has been trained."
    parts = []
    for r in runs.itertuples():
        dropped = f", {_n(r.n_dropped)} dropped for a missing label" if r.n_dropped else ""
        parts.append(f"{r.variant} ({r.description}): {_n(r.n_examples)} examples{dropped}, {_n(r.steps)} steps, "
                     f"{_f(r.seconds / 60, 1)} min")
    return (f"{len(runs)} judge variant{'s' if len(runs) != 1 else ''} of {runs['judge'].iloc[0]} trained: "
            + "; ".join(parts) + ".")


def ablation_sentence(diffs: pd.DataFrame, setting: str = "free", combination: str = "mean") -> str:
    """The full Self-J judge against each ablation, reference-free (the judge Self-J deploys) by default."""
    full = f"selfj_self_j_{setting}"
    t = diffs[(diffs["a"] == full) & diffs["b"].str.startswith("selfj_") & diffs["diff"].notna()]
    if t.empty:
        return "The ablations have not been evaluated yet."
    return " ".join(comparison_sentence(diffs, full, b, combination) for b in t["b"])


def ablations_text(diffs: pd.DataFrame, combination: str = "mean") -> str:
    """The full judge against each evaluated ablation, reference-free then with the reference; one pending
    sentence, not one per setting, while no ablation has been evaluated."""
    parts = [ablation_sentence(diffs, setting, combination) for setting in ("free", "ref")]
    done = [p for p in parts if p != "The ablations have not been evaluated yet."]
    return "\n\n".join(done) if done else "The ablations have not been evaluated yet."


def best_of_n_sentence(bon: pd.DataFrame) -> str:
    """The picker's win rate against the first sample and against the reference at each N, by the rater, both
    orders averaged, with intervals: above 0.5 is a gain."""
    if bon.empty:
        return "Best-of-N has not been run."
    out = []
    for base, g in bon.groupby("baseline", sort=False):
        g = g.sort_values("best_of")
        parts = [f"N = {int(r.best_of)}: {_iv(r.win, r.win_low, r.win_high)}" for r in g.itertuples()]
        top = g.iloc[-1]
        side = _side(top["win_low"], top["win_high"], 0.5)
        verdict = ("too few instructions for a direction" if int(top["n"]) < MIN_N else
                   "the pick is preferred" if side > 0 else "the pick is dispreferred" if side < 0
                   else "not distinguishable from a tie")
        out.append(f"against the {base}: {'; '.join(parts)} (at N = {int(top['best_of'])}, {verdict}; "
                   f"{_n(top['n'])} instructions, {_n(top['n_identical'])} picks identical to the baseline)")
    r0 = bon.iloc[0]
    return (f"Win rate of the answer {r0['picker']} picks (reference-free score) as rated by {r0['rater']} "
            f"(both orders averaged, 95 % intervals; 0.5 is a tie): " + "; ".join(out) + ".")


def selective_own_sentence(sel_own: pd.DataFrame) -> str:
    """Selective following on the policy's own held-out answers, quality a proxy (named)."""
    if sel_own.empty:
        return "Selective following on the policy's own answers has not been run."
    quality = str(sel_own["quality"].iloc[0])
    return (f"On the policy's own held-out answers (first samples; the quality is a **proxy**, "
            f"{quality.removeprefix('proxy: ')}, not a strong judge): " + selective_sentence(sel_own, quality="proxy quality"))

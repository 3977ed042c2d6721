"""The numerical-bias chapter's sentences, generated from its tables (every number and every direction).

Each function takes one table of :class:`~judgelab.experiments.numerical_bias.run.NumericalBiasResults` (as
written to ``results/numerical_bias/*.csv``) and returns Markdown. A direction is stated only where the 95 %
interval lies on one side of no effect; otherwise the sentence says the interval includes it. Missing cells
are named as missing, not read. ``tests/test_numerical_bias_findings.py`` runs each function on a table
that would make its sentence false and checks that the sentence changes.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

SUBSET_NAMES = {"en-de": "En-De", "en-zh": "En-Zh", "ne-en": "Ne-En", "si-en": "Si-En", "tmu_gfm": "TMU-GFM",
                "complex": "CompLex"}


def _f(x: float, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "undefined"
    return f"{x:.{digits}f}"


def _iv(est: float, lo: float, hi: float, digits: int = 2) -> str:
    if not np.isfinite(est):
        return "undefined"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{_f(est, digits)} (no interval)"
    return f"{_f(est, digits)} [{_f(lo, digits)}, {_f(hi, digits)}]"


def _side(lo: float, hi: float) -> int:
    """+1: interval above 0; -1: below; 0: includes 0 (or undefined)."""
    if np.isfinite(lo) and lo > 0:
        return 1
    if np.isfinite(hi) and hi < 0:
        return -1
    return 0


def subset_name(s: str) -> str:
    return SUBSET_NAMES.get(s, s)


# --- gold --------------------------------------------------------------------------------------------------
def gold_sentence(gold: pd.DataFrame) -> str:
    """Our gold kurtosis (whole test split) beside the paper's three values, and whether they agree to the
    two decimals the paper reports."""
    g = gold[np.isfinite(gold["paper_kurtosis"].astype(float))]
    if g.empty:
        return "The paper reports no gold kurtosis for these subsets."
    parts = [f"{subset_name(r.subset)} {_f(r.kurtosis_full)} (paper {_f(r.paper_kurtosis)})" for r in g.itertuples()]
    same = [round(float(r.kurtosis_full), 2) == round(float(r.paper_kurtosis), 2) for r in g.itertuples()]
    n_full = sorted(set(int(n) for n in g["n_full"]))
    head = (f"The excess kurtosis of the human scores over the whole test20 split ({'/'.join(map(str, n_full))} "
            f"segments per pair): {', '.join(parts)}")
    if all(same):
        return head + f": all {len(same)} equal to the paper's to two decimals."
    off = [subset_name(r.subset) for r, ok in zip(g.itertuples(), same) if not ok]
    return head + f": {len(same) - len(off)} of {len(same)} equal to two decimals; {', '.join(off)} differ{'s' if len(off) == 1 else ''}."


# --- alignment ---------------------------------------------------------------------------------------------
def alignment_sentence(claims: pd.DataFrame) -> str:
    """Did alignment raise gemma-3-270m's kurtosis? Per stage (base -> SFT, base -> DPO): on how many
    subsets the paired difference's interval lies above zero, below it, or spans it; with the numbers."""
    c = claims[claims["claim"] == "alignment raises kurtosis"]
    if c.empty:
        return "No alignment stage of gemma-3-270m has been scored."
    out = []
    for later in ("sft", "dpo"):
        rows = c[c["scope"].str.contains(f"-> {later},", regex=False)]
        ran = rows[rows["verdict"] != "not run"]
        label = later.upper()
        if ran.empty:
            out.append(f"The {label} stage has not been scored yet, so base -> {label} is not measured.")
            continue
        sides = [_side(r.low, r.high) for r in ran.itertuples()]
        up, down = sides.count(1), sides.count(-1)
        flat = len(sides) - up - down
        detail = "; ".join(f"{subset_name(r.scope.rsplit(', ', 1)[1])} {'+' if r.ours >= 0 else ''}{_iv(r.ours, r.low, r.high)}"
                           for r in ran.itertuples())
        n = int(ran["n"].max())
        if up == len(sides):
            verdict = f"rose on all {len(sides)} subsets"
        elif down == len(sides):
            verdict = f"fell on all {len(sides)} subsets, against the paper"
        else:
            bits = [f"rose on {up}" if up else "", f"fell on {down}" if down else "",
                    f"did not move distinguishably on {flat}" if flat else ""]
            verdict = ", ".join(b for b in bits if b) + f" of {len(sides)} subsets"
        out.append(f"From base to {label}, the kurtosis of gemma-3-270m's item scores (10-sample means at T=0.7, "
                   f"completion form, {n} items per subset, paired differences with 95 % intervals) {verdict}: {detail}.")
    return " ".join(out)


# --- kurtosis against r ------------------------------------------------------------------------------------
def kurtosis_r_sentence(kr: pd.DataFrame, scope: str = "all cells") -> str:
    """The correlation of kurtosis with Pearson r across cells, against the paper's -0.60."""
    r = kr[kr["scope"] == scope]
    if r.empty or not np.isfinite(float(r["pearson"].iloc[0])):
        n = int(r["n_cells"].iloc[0]) if len(r) else 0
        return f"Across cells ({scope}), the correlation of kurtosis with r is undefined ({n} cells with both)."
    r = next(r.itertuples())
    side = _side(r.pearson_low, r.pearson_high)
    paper = float(r.paper_pearson)
    if side < 0:
        verdict = "negative, as in the paper: the more a judge's scores pile up, the less they agree with humans"
    elif side > 0:
        verdict = "positive, unlike the paper: here the more peaked judges agree more with humans"
    else:
        verdict = "not distinguishable from zero (its interval includes 0)"
    return (f"Across {int(r.n_cells)} cells ({scope}), kurtosis and Pearson r correlate at "
            f"{_iv(r.pearson, r.pearson_low, r.pearson_high)} (Spearman {_iv(r.spearman, r.spearman_low, r.spearman_high)}; "
            f"the paper: {paper:.2f}): {verdict}.")


# --- mitigations -------------------------------------------------------------------------------------------
def mitigation_sentence(claims: pd.DataFrame) -> str:
    """Per aligned judge, form and subset, on the items every method scored: which mitigation gave the
    highest r with the gold, and which the lowest kurtosis, and whether each is a score range (the paper's
    finding). Point estimates: a winner whose runner-up lies inside its interval is said to be so."""
    c = claims[claims["claim"] == "score range is the best mitigation"]
    if c.empty:
        return "No judge has been scored on the alternative ranges yet, so the mitigations are not compared."
    out = []
    for criterion, what in (("r", "the highest Pearson r with the human scores"), ("kurtosis", "the lowest kurtosis")):
        cc = c[c["criterion"] == criterion] if "criterion" in c else c
        if cc.empty:
            continue
        wins = int(cc["verdict"].str.startswith("supported").sum())
        close = int(cc["verdict"].str.contains("inside", regex=False).sum())
        cells = f"{len(cc)} cell{'s' if len(cc) != 1 else ''} compared"
        if wins == len(cc):
            head = f"A score range gave {what} in {'all ' if len(cc) > 1 else ''}the {cells}, as in the paper"
        elif wins == 0:
            head = f"A score range gave {what} in none of the {cells}, unlike the paper"
        else:
            head = f"A score range gave {what} in {wins} of the {cells}"
        head += (f" ({close} of them by less than the winner's 95 % interval)." if close else ".")
        out.append(head + "\n\n" + "\n".join(f"- **{r.scope}**: {r.detail}." for r in cc.itertuples()))
    return "\n\n".join(out)


def mitigation_r_sentence(mit: pd.DataFrame, judge: str, form: str, subset: str, scope: str = "range items") -> str:
    """For one judge, form and subset: each mitigation's kurtosis and r beside the baseline's."""
    m = mit[(mit["judge"] == judge) & (mit["form"] == form) & (mit["subset"] == subset) & (mit["scope"] == scope)]
    if m.empty:
        return f"{judge} ({form}, {subset_name(subset)}) has no mitigation rows."
    base = next(m[m["method_family"] == "baseline"].itertuples())
    parts = []
    for r in m[m["method_family"] != "baseline"].itertuples():
        dk = r.kurtosis - base.kurtosis
        dr = r.pearson_r - base.pearson_r
        kdir = "lower" if dk < 0 else "higher" if dk > 0 else "the same"
        rdir = "higher" if dr > 0 else "lower" if dr < 0 else "the same"
        parts.append(f"{r.method}: kurtosis {_f(r.kurtosis)} ({kdir}), r {_f(r.pearson_r)} ({rdir})")
    return (f"{judge}, {form} form, {subset_name(subset)} ({int(base.n_items)} items): baseline kurtosis "
            f"{_iv(base.kurtosis, base.kurtosis_low, base.kurtosis_high)}, r "
            f"{_iv(base.pearson_r, base.pearson_r_low, base.pearson_r_high)}; " + "; ".join(parts) + ".")


# --- resource level ----------------------------------------------------------------------------------------
def resource_sentence(claims: pd.DataFrame) -> str:
    """High-resource (En-De, En-Zh) against low-resource pairs (Ne-En, Si-En), per judge and form."""
    c = claims[claims["claim"] == "high-resource pairs more biased"]
    if c.empty:
        return "No judge has been scored on all four MLQE-PE pairs yet."
    sides = [_side(r.low, r.high) for r in c.itertuples()]
    up, down = sides.count(1), sides.count(-1)
    detail = "; ".join(f"{r.scope} {'+' if r.ours >= 0 else ''}{_iv(r.ours, r.low, r.high)}" for r in c.itertuples())
    if up == len(c):
        head = f"For all {len(c)} judge-form cells, the high-resource pairs' kurtosis is the higher, as in the paper"
    elif down == len(c):
        head = f"For all {len(c)} judge-form cells, the low-resource pairs' kurtosis is the higher, against the paper"
    else:
        head = (f"The high-resource pairs' kurtosis is the higher for {up}, the lower for {down}, and not "
                f"distinguishable for {len(c) - up - down} of {len(c)} judge-form cells")
    return head + f" (mean kurtosis of En-De and En-Zh minus that of Ne-En and Si-En, 95 % intervals): {detail}."


# --- the two protocols -------------------------------------------------------------------------------------
def agreement_sentence(ag: pd.DataFrame, alpha: float = 0.01) -> str:
    """Does the sampled protocol (a) agree with the exact distribution (b)? Per judge: the chi-square p, the
    share of items whose sampled mean lies in the exact central 95 %, the valid rates."""
    if ag.empty:
        return "The sampled protocol has not been run."
    lines = []
    for r in ag.itertuples():
        if not np.isfinite(r.chi2_p):
            fit = "too few valid samples for a goodness-of-fit test"
        elif r.chi2_p >= alpha:
            fit = f"the samples fit the exact distribution (chi-square p = {r.chi2_p:.3f})"
        else:
            fit = f"the samples do not fit the exact distribution (chi-square p = {r.chi2_p:.2g} < {alpha})"
        within = "" if not np.isfinite(r.share_within_95) else (
            f"; {100 * r.share_within_95:.0f} % of items' sampled means lie in the exact central 95 % (about 95 % "
            "expected)")
        lines.append(f"- **{r.judge}** ({r.form}, {int(r.n_items)} items, {int(r.n_samples)} samples): {fit}{within}; "
                     f"valid outputs {100 * r.valid_rate_sampled_first:.1f} % sampled (the paper's first-number rule), "
                     f"{100 * r.valid_rate_sampled_leading:.1f} % starting with the number, "
                     f"{100 * r.valid_mass_exact:.1f} % exact.")
    return "\n".join(lines)


def valid_sentence(vo: pd.DataFrame) -> str:
    """Per model: how many sampled outputs were scores, how many were clipped, non-numeric or empty."""
    s = vo[vo["source"] == "sampled"]
    if s.empty:
        return "No outputs were sampled."
    lines = []
    for r in s.itertuples():
        clipped = int(r.n_clipped_low + r.n_clipped_high)
        lines.append(f"- **{r.judge}** ({r.form}): {int(r.n_valid + clipped)} of {int(r.n_outputs)} outputs "
                     f"({100 * r.valid_rate:.1f} %) held a number ({clipped} of them clipped to the range), "
                     f"{int(r.n_non_numeric)} held none and {int(r.n_empty)} were empty"
                     + (f" (e.g. {r.example_non_numeric!r})" if isinstance(r.example_non_numeric, str) else "") + ".")
    worst = s.loc[s["valid_rate"].idxmin()]
    head = (f"The lowest valid rate is {worst['judge']}'s ({worst['form']} form): {100 * worst['valid_rate']:.1f} % of its "
            "sampled outputs were scores; the paper's protocol averages only those, so its item scores rest on fewer "
            "samples than ten.")
    return head + "\n\n" + "\n".join(lines)


def bias_sentence(bias: pd.DataFrame, judge: str, form: str, subset: str) -> str:
    """One cell in words: kurtosis, r, the modal score and its share, the valid rate."""
    b = bias[(bias["judge"] == judge) & (bias["form"] == form) & (bias["subset"] == subset)
             & (bias["lo"] == 0) & (bias["hi"] == 10)]
    if b.empty:
        return f"{judge} ({form}) has not been scored on {subset_name(subset)}."
    r = next(b.itertuples())
    return (f"On {subset_name(subset)}, {judge} ({form} form, {int(r.n_items)} items) has a kurtosis of "
            f"{_iv(r.kurtosis, r.kurtosis_low, r.kurtosis_high)} (single samples "
            f"{_iv(r.kurtosis_single, r.kurtosis_single_low, r.kurtosis_single_high)}), Pearson r with the human "
            f"scores {_iv(r.pearson_r, r.pearson_r_low, r.pearson_r_high)}; {100 * r.modal_share:.0f} % of its items "
            f"score {_f(r.modal_score, 1)}, and {100 * r.valid_rate:.1f} % of its answers start with a number.")

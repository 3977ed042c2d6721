"""The paper's claims beside the released outputs and this replication, with verdicts (issue 20, item 2).

One table per chapter (``claims_02_reanalysis.csv``, ``claims_03_open_models.csv``,
``claims_04_finetuning.csv``, written by ``judgelab reanalysis``): each row is one claim of
Panickssery, Bowman & Feng (2024), the quantity it rests on, the value **recomputed from the released
outputs** (``released_*``) and **ours** (``ours_*``: this book's corrected reading of the same outputs in
chapter 2, the open judges in chapter 3, the fine-tuned open judge in chapter 4), each with its 95 %
interval and ``n``, and a verdict per column computed by :func:`verdict` from the interval alone.

Wording. The claims are **paraphrases** (``wording = "paraphrase"``): the paper's PDF is not reachable
offline and the mirror and this repository quote no sentence of its text, only its prompts
(:mod:`judgelab.prompts.panickssery2024`) and two headline numbers
(:data:`judgelab.experiments.reanalysis.PUBLIC_NUMBERS`). ``source`` names where the claim is made; section
numbers other than the fine-tuning section (section 4, as cited in chapter 4) were not checked against the
PDF and say so.

Every claim is directional: "``quantity`` > ``threshold``" (or ``<``). The verdict is

* ``holds``: the whole interval lies beyond the threshold in the claimed direction;
* ``does not hold``: the whole interval lies on the other side (or touches the threshold from it);
* ``cannot tell at this scale``: the interval contains the threshold;
* ``not measured``: no interval (the quantity does not exist for that column).

The tables read committed CSVs only (``results/panickssery2024``, ``results/open_models``,
``results/finetuning``), so they can be rebuilt without the released files or a model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from judgelab.paths import results_path, write_csvs

VERDICTS = ("holds", "does not hold", "cannot tell at this scale", "not measured")
COLUMNS = ["chapter", "claim", "wording", "source", "quantity", "claimed", "released_what", "released",
           "released_low", "released_high", "released_n", "released_verdict", "ours_what", "ours", "ours_low",
           "ours_high", "ours_n", "ours_verdict"]
DS = {"xsum": "XSUM", "cnn": "CNN/DailyMail"}
UNCHECKED = " (section number not checked against the PDF)"


def _public_numbers() -> str:
    from judgelab.experiments.reanalysis import PUBLIC_NUMBERS

    p = PUBLIC_NUMBERS.set_index("dataset")["public"]
    return f"{p['xsum']:.3f} on XSUM and {p['cnn']:.3f} on CNN/DailyMail"


def verdict(low, high, threshold: float, direction: str = ">") -> str:
    """The verdict on "value ``direction`` ``threshold``" from a confidence interval ``[low, high]``."""
    if direction not in (">", "<"):
        raise ValueError(f"direction must be '>' or '<', not {direction!r}")
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return "not measured"
    if low > high:
        raise ValueError(f"interval [{low}, {high}] has its bounds the wrong way round")
    if direction == ">":
        return "holds" if low > threshold else "does not hold" if high <= threshold else "cannot tell at this scale"
    return "holds" if high < threshold else "does not hold" if low >= threshold else "cannot tell at this scale"


def with_verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """Recompute ``released_verdict`` and ``ours_verdict`` from the intervals and ``claimed`` ("> 0.5")."""
    out = table.copy()
    direction = out["claimed"].str.split().str[0]
    threshold = out["claimed"].str.split().str[1].astype(float)
    for col in ("released", "ours"):
        out[f"{col}_verdict"] = [verdict(lo, hi, t, d) for lo, hi, t, d in
                                 zip(out[f"{col}_low"], out[f"{col}_high"], threshold, direction)]
    return out


def _value(row, col: str, low: str | None = None, high: str | None = None, n: str = "n") -> dict:
    """``{value, low, high, n}`` from one table row (a Series), or NaNs when the row is missing."""
    if row is None:
        return {"value": np.nan, "low": np.nan, "high": np.nan, "n": np.nan}
    return {"value": float(row[col]) if col in row and pd.notna(row[col]) else np.nan,
            "low": float(row[low or f"{col}_low"]), "high": float(row[high or f"{col}_high"]),
            "n": float(row[n]) if n in row and pd.notna(row[n]) else np.nan}


def _one(df: pd.DataFrame, **eq):
    m = df
    for k, v in eq.items():
        m = m[m[k] == v]
    if len(m) > 1:
        raise ValueError(f"{len(m)} rows match {eq}")
    return m.iloc[0] if len(m) else None


def _row(chapter, claim, source, quantity, claimed, released_what, released, ours_what, ours) -> dict:
    return {"chapter": chapter, "claim": claim, "wording": "paraphrase", "source": source, "quantity": quantity,
            "claimed": claimed, "released_what": released_what, **{f"released{'' if k == 'value' else '_' + k}": v
                                                                  for k, v in released.items()},
            "ours_what": ours_what, **{f"ours{'' if k == 'value' else '_' + k}": v for k, v in ours.items()}}


def _table(rows) -> pd.DataFrame:
    t = pd.DataFrame(rows)
    t["released_verdict"] = t["ours_verdict"] = ""
    return with_verdicts(t)[COLUMNS]


# --------------------------------------------------------------------------------------------------
# chapter 2: the released outputs, as the paper computes them and as this book corrects them
# --------------------------------------------------------------------------------------------------


def _pooled_released(d: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reanalysis's pooled rows (``other == 'all'``): pairwise R/S as released, and the position-debiased
    table without a control variant (what chapters 2 and 3 compare against)."""
    pw = pd.read_csv(d / "pairwise.csv")
    deb = pd.read_csv(d / "debiased.csv")
    return pw[pw.other == "all"], deb[(deb.other == "all") & (deb.variant == "none")]


def claims_reanalysis(ra_dir: str | Path | None = None) -> pd.DataFrame:
    """``claims_02_reanalysis.csv`` from the tables of ``judgelab reanalysis`` (``results/panickssery2024``).

    ``released``: the quantity as the paper defines it, recomputed from the released outputs (Llama-2 from
    its raw probabilities, GPT from the stored per-pair scores, the label files as stored). ``ours``: the
    same outputs read as this book corrects them: position-debiased (Llama-2: mean sigma(d); GPT: the share of
    pairs the own summary wins once position is removed, which the GPT files only bound, so ``ours`` is
    that bound's interval with no point value) and, for the label files, corrected for the reversed files.
    """
    d = Path(ra_dir) if ra_dir is not None else results_path("panickssery2024")
    pw, deb = _pooled_released(d)
    bounds = pd.read_csv(d / "debiased_gpt_bounds.csv")
    bounds = bounds[bounds.variant == "none"]
    eff = pd.read_csv(d / "label_effect.csv")
    ch, rows = "02", []
    for measure, letter, claim, src in (
            ("recognition", "R", "Out of the box, GPT-4 and Llama 2 tell their own summaries from others' better than chance",
             "abstract; out-of-the-box results (section 3" + UNCHECKED + ")"),
            ("preference", "S", "Out of the box, the evaluator prefers its own summaries (self-preference; the title's "
                                "'favor their own generations'); GPT-4's pooled S is " + _public_numbers(),
             "title, abstract; out-of-the-box results (section 3" + UNCHECKED + ")")):
        # the abstract names GPT-4 and Llama 2 for recognition; the title's preference claim is general
        for ev in (("gpt4", "llama") if measure == "recognition" else ("gpt4", "gpt35", "llama")):
            for ds in ("xsum", "cnn"):
                rel = _value(_one(pw, dataset=ds, evaluator=ev), measure)
                if ev == "llama":
                    ours_what = f"debiased {letter}: mean sigma((l_f - l_b)/2) from the raw P('1'), P('2')"
                    ours = _value(_one(deb, dataset=ds, evaluator="llama"), f"debiased_{measure}", n=f"{measure}_n")
                else:
                    ours_what = (f"share of pairs the own summary wins with position removed ({letter} prompt); the GPT "
                                 "files only bound it: interval from the lower bound's low to the upper bound's high")
                    b = _one(bounds, dataset=ds, evaluator=ev)
                    ours = {"value": np.nan, "low": float(b[f"{measure}_own_wins_lower_low"]),
                            "high": float(b[f"{measure}_own_wins_upper_high"]), "n": float(b["n"])}
                who = {"gpt4": "GPT-4", "gpt35": "GPT-3.5", "llama": "Llama-2"}[ev]
                rows.append(_row(ch, claim, src, f"pooled {letter}, {who}, {DS[ds]}", "> 0.5",
                                 f"pooled {letter} as the paper defines it (released per-pair scores / raw probabilities)",
                                 rel, ours_what, ours))
    for ev, who in (("gpt4", "GPT-4"), ("gpt35", "GPT-3.5")):
        e = _one(eff, dataset="xsum", evaluator=ev, condition="wrong")
        printed = "" if pd.isna(e["authors_printed"]) else f" (the authors' analysis printed {e['authors_printed']:.3f})"
        rows.append(_row(ch, f"With the source labels swapped, {who}'s self-preference on XSUM falls below chance: the label, "
                             f"not the text, drives the choice{printed}",
                         "label experiment (test of reverse causation" + UNCHECKED + "); authors' analysis.ipynb",
                         f"S with swapped labels, {who}, XSUM", "< 0.5",
                         "S as stored in the swapped-label file", _value(e, "stored"),
                         "S corrected (the file stores the preference for the other summary: 1 - stored)",
                         _value(e, "corrected")))
        rows.append(_row(ch, f"Swapping the source labels lowers {who}'s self-preference on XSUM", "label experiment" + UNCHECKED,
                         f"change in S from correct to swapped labels, {who}, XSUM (paired)", "< 0",
                         "change as stored", _value(e, "drop_stored"), "change corrected", _value(e, "drop_corrected")))
    return _table(rows)


# --------------------------------------------------------------------------------------------------
# chapter 3: the open judges
# --------------------------------------------------------------------------------------------------


def claims_open_models(ra_dir: str | Path | None = None, om_dir: str | Path | None = None) -> pd.DataFrame:
    """``claims_03_open_models.csv``: the out-of-the-box claims, released (GPT-4; Llama-2 debiased) vs each open judge.

    Reads ``results/open_models/pairwise.csv`` and ``debiased.csv`` (pooled rows) for ``ours``.
    """
    d = Path(ra_dir) if ra_dir is not None else results_path("panickssery2024")
    o = Path(om_dir) if om_dir is not None else results_path("open_models")
    pw, deb = _pooled_released(d)
    opw = pd.read_csv(o / "pairwise.csv")
    opw = opw[opw.other == "all"]
    odeb = pd.read_csv(o / "debiased.csv")
    odeb = odeb[odeb.other == "all"]
    lab_path = o / "labels_change.csv"  # the label experiment with the open judges, where it has been run
    lab = pd.read_csv(lab_path) if lab_path.is_file() else None
    eff = pd.read_csv(d / "label_effect.csv") if lab is not None else None
    ch, rows = "03", []
    src = "abstract; out-of-the-box results (section 3" + UNCHECKED + ")"
    for judge in sorted(opw.evaluator.unique()):
        for ds in ("xsum", "cnn"):
            for measure, letter, claim in (
                    ("recognition", "R", "LLM evaluators tell their own summaries from others' better than chance"),
                    ("preference", "S", "LLM evaluators prefer their own summaries")):
                rows.append(_row(ch, claim, src, f"pooled {letter}, {DS[ds]}, {judge}", "> 0.5",
                                 "GPT-4, released outputs", _value(_one(pw, dataset=ds, evaluator="gpt4"), measure),
                                 f"{judge}, pooled {letter}", _value(_one(opw, dataset=ds, evaluator=judge), measure)))
            if lab is not None and judge in set(lab.judge):
                e = _one(eff, dataset=ds, evaluator="gpt4", condition="wrong")
                rows.append(_row(ch, "Swapping the source labels lowers self-preference", "label experiment" + UNCHECKED,
                                 f"change in S from correct to swapped labels, {DS[ds]}, {judge} (paired)", "< 0",
                                 "GPT-4, change corrected (released files)", _value(e, "drop_corrected"),
                                 f"{judge}, change in the position-debiased S (the paper's prompt and labels)",
                                 _value(_one(lab, dataset=ds, judge=judge), "change_debiased")))
            rows.append(_row(ch, "The recognition is there once the position bias is removed (issue 20's question; the paper "
                                 "averages the two orders instead)", "issue 20 item 1, on the paper's pairwise setting",
                             f"debiased R, {DS[ds]}, {judge}", "> 0.5", "Llama-2, released raw probabilities",
                             _value(_one(deb, dataset=ds, evaluator="llama"), "debiased_recognition", n="recognition_n"),
                             f"{judge}, debiased R",
                             _value(_one(odeb, dataset=ds, evaluator=judge), "debiased_recognition", n="recognition_n")))
    return _table(rows)


# --------------------------------------------------------------------------------------------------
# chapter 4: fine-tuning
# --------------------------------------------------------------------------------------------------


def _largest_recognition_variant(variants: pd.DataFrame, ds: str):
    v = variants[(variants.trained_on == ds) & (variants.evaluated_on == ds)
                 & variants.variant.astype(str).str.fullmatch(r"\d+")]
    if v.empty:
        return None
    return v.loc[v.n_train.astype(int).idxmax()]


def claims_finetuning(ra_dir: str | Path | None = None, ft_dir: str | Path | None = None) -> pd.DataFrame:
    """``claims_04_finetuning.csv``: fine-tuning claims, released (GPT-3.5, Llama-2) vs the fine-tuned open judge.

    ``ours`` for the recognition claims is this book's recognition variant with the most training articles
    on the dataset it was trained on (its ``N`` is named in ``ours_what``: the paper's N = 500 only when the
    committed run has it); for the correlation claim the Pearson r over this book's variants per evaluation set.
    """
    d = Path(ra_dir) if ra_dir is not None else results_path("panickssery2024")
    f = Path(ft_dir) if ft_dir is not None else results_path("finetuning")
    ft = pd.read_csv(d / "finetuned.csv", dtype={"variant": str})
    corr = pd.read_csv(d / "finetune_correlation.csv")
    variants = pd.read_csv(f / "variants.csv", dtype={"variant": str})
    ocorr = pd.read_csv(f / "correlation.csv")
    ch, rows = "04", []
    src = "fine-tuning (section 4)"
    for fam, who in (("gpt35", "GPT-3.5"), ("llama", "Llama-2")):
        for ds in ("xsum", "cnn"):
            rel = _one(ft, evaluator_family=fam, trained_on=ds, evaluated_on=ds, variant="500")
            ours_row = _largest_recognition_variant(variants, ds)
            judge = "" if ours_row is None else ours_row["judge"]
            n_ours = "" if ours_row is None else f"N = {int(ours_row['n_train'])}"
            for measure, letter, claim in (
                    ("recognition", "R", f"Fine-tuning on 500 self-recognition examples drives {who}'s self-recognition far "
                                         "above chance"),
                    ("preference", "S", f"{who}'s self-preference rises with its fine-tuned self-recognition")):
                rows.append(_row(ch, claim, src, f"{letter} after fine-tuning, {who}, trained and evaluated on {DS[ds]}", "> 0.5",
                                 f"{who} fine-tuned on N = 500, held-out articles (n = articles)",
                                 _value(rel, measure, n="n_eval"),
                                 f"{judge} fine-tuned on {n_ours}, held-out articles (n = articles)",
                                 _value(ours_row, measure, n="n_articles")))
    rel = _one(corr, family="all", values="recomputed")
    for ds in ("xsum", "cnn"):
        oc = _one(ocorr, points="all", evaluated_on=ds)
        rows.append(_row(ch, "Self-recognition and self-preference are linearly correlated across fine-tuned variants",
                         "abstract; fine-tuning (section 4)", "Pearson r of mean S on mean R over variants",
                         "> 0", "GPT-3.5 and Llama-2 variants and base models, both evaluation sets (n = points)",
                         {"value": float(rel["r"]), "low": float(rel["r_low"]), "high": float(rel["r_high"]), "n": float(rel["n"])},
                         f"{oc['judge'] if oc is not None else ''} variants evaluated on {DS[ds]} (n = points)",
                         _value(oc, "r", "r_low", "r_high")))
    return _table(rows)


# --------------------------------------------------------------------------------------------------
# text and output
# --------------------------------------------------------------------------------------------------


def claims_text(table: pd.DataFrame) -> str:
    """Generated sentences over one chapter's claims table: the verdicts counted per column, and the rows
    where the released outputs and ours disagree (one holds, the other does not). Tested on tables that
    would make each count wrong.
    """
    n = len(table)
    parts = []
    for col, who in (("released", "the released outputs"), ("ours", "ours")):
        v = table[f"{col}_verdict"].value_counts()
        counts = ", ".join(f"*{k}* {int(v[k])}" for k in VERDICTS if k in v.index)
        parts.append(f"{who}: {counts}")
    text = f"Verdicts on the {n} claims of this table, " + "; ".join(parts) + "."
    flip = table[((table.released_verdict == "holds") & (table.ours_verdict == "does not hold"))
                 | ((table.released_verdict == "does not hold") & (table.ours_verdict == "holds"))]
    if len(flip):
        text += (f" The released outputs and ours point opposite ways on {len(flip)}: "
                 + "; ".join(f"{r.quantity} ({r.released_verdict} as released, {r.ours_verdict} in ours)"
                             for r in flip.itertuples()) + ".")
    else:
        text += " On no claim do the released outputs and ours point opposite ways."
    return text


def write_claims(ra_dir: str | Path | None = None) -> dict[str, Path]:
    """Write the three claims tables into ``ra_dir`` (default ``results/panickssery2024``); return name -> path."""
    d = Path(ra_dir) if ra_dir is not None else results_path("panickssery2024")
    tables = {"claims_02_reanalysis": claims_reanalysis(d), "claims_03_open_models": claims_open_models(d),
              "claims_04_finetuning": claims_finetuning(d)}
    written = write_csvs({f"{k}.csv": v for k, v in tables.items()}, d)
    return {k: written[f"{k}.csv"] for k in tables}

"""Tidy loaders for the judging tasks of the numerical-bias chapter (Sato et al. 2026, arXiv 2601.16444).

The paper scores four kinds of items with an LLM judge and compares the judge's scores with human ones:
machine-translation quality (MTQE, on WMT20 MLQE-PE), grammatical-error-correction quality (GECQE), lexical
complexity (LCP) and -- our addition, a fourth domain -- summary quality (SummEval). The paper names its MTQE
data only; for GECQE and LCP we use the closest public sets (TMU-GFM and CompLex, see their ``SOURCE.md``).

Every loader reads verified files only (:func:`judgelab.data.fetch.fetch`: a file whose sha256 differs from
the pinned one stops with :class:`~judgelab.data.fetch.DataIntegrityError` naming it), returns one row per
item with the human **gold** score the judge is compared against, and keeps the individual raters' scores
where the source has them. Malformed rows raise :class:`ValueError` naming the file and the row.

Which MLQE-PE column is the gold: the paper reports gold excess kurtosis En-De 1.48, Ne-En 0.97,
Si-En -0.72. The per-segment **mean of the raw 0-100 direct-assessment scores** (column ``mean``) gives
exactly those (Fisher, biased estimator, as :func:`scipy.stats.kurtosis` computes by default); the mean of the
raters' z-scores (``z_mean``) gives 8.51, 1.12 and -0.52 instead. So ``gold`` is the raw mean and ``gold_z``
is kept beside it (tested in ``tests/test_numerical_bias_data.py``).
"""

from __future__ import annotations

import csv
import io
import json
import tarfile

import numpy as np
import pandas as pd

from judgelab.data.fetch import fetch

#: The seven WMT20 MLQE-PE language pairs; the paper reports at least En-De, En-Zh, Ne-En and Si-En.
MLQE_PAIRS: tuple[str, ...] = ("en-de", "en-zh", "et-en", "ne-en", "ro-en", "ru-en", "si-en")
#: The four pairs the paper's summaries name.
PAPER_PAIRS: tuple[str, ...] = ("en-de", "en-zh", "ne-en", "si-en")
MLQE_SPLITS: dict[str, str] = {"test20": "test", "dev": "dev"}  # split name -> upstream folder
TMU_ASPECTS: tuple[str, ...] = ("grammaticality", "fluency", "meaning")
COMPLEX_SUBSETS: tuple[str, ...] = ("single", "multi")
SUMMEVAL_ASPECTS: tuple[str, ...] = ("coherence", "consistency", "fluency", "relevance")

# csv's default quoting would swallow segments that contain a lone '"' (several MLQE-PE sources do): these
# files are plain tab-separated text with no quoting at all.
_TSV = {"sep": "\t", "quoting": csv.QUOTE_NONE, "keep_default_na": False, "na_values": [], "dtype": str}


def _check(value: str, allowed, what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {tuple(allowed)}, not {value!r}")


def _int_list(cell: str, *, file: str, row: int, column: str, n: int | None, lo: float, hi: float) -> list[int]:
    """Parse a list of integer ratings ('[91, 90]' or '3,4,3') and check its length and range."""
    text = cell.strip().removeprefix("[").removesuffix("]")
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{file} row {row}: column {column!r} is not a list of integers: {cell!r}") from None
    if n is not None and len(values) != n:
        raise ValueError(f"{file} row {row}: column {column!r} has {len(values)} ratings, expected {n}: {cell!r}")
    bad = [v for v in values if not lo <= v <= hi]
    if bad:
        raise ValueError(f"{file} row {row}: column {column!r} has ratings {bad} outside [{lo:g}, {hi:g}]")
    return values


def _float(cell: str, *, file: str, row: int, column: str) -> float:
    try:
        return float(cell)
    except ValueError:
        raise ValueError(f"{file} row {row}: column {column!r} is not a number: {cell!r}") from None


# --- MTQE: WMT20 MLQE-PE ----------------------------------------------------------------------------------
def mlqe_pe_path(pair: str, split: str = "test20") -> str:
    """The pinned upstream path of one pair's direct-assessment tarball."""
    _check(pair, MLQE_PAIRS, "pair")
    _check(split, MLQE_SPLITS, "split")
    folder = MLQE_SPLITS[split]
    return f"data/direct-assessments/{folder}/{pair}-{folder}.tar.gz"


def _tar_member(tar: tarfile.TarFile, suffix: str, path: str) -> bytes:
    names = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(suffix)]
    if len(names) != 1:
        raise ValueError(f"{path}: expected one member ending in {suffix!r}, found {[m.name for m in names]}")
    fh = tar.extractfile(names[0])
    assert fh is not None
    return fh.read()


def load_mlqe_pe(pair: str, split: str = "test20") -> pd.DataFrame:
    """One row per segment of one MLQE-PE language pair (1000 per pair and split).

    Columns: ``pair, split, item`` (row position, 0-999), ``segment`` (the upstream segment id: ``index``,
    ru-en's ``segid``), ``doc_id`` (the source document), ``source, translation``,
    ``gold`` (mean of the raters' raw 0-100 direct assessments: the paper's gold, see the module docstring),
    ``gold_z`` (mean of the raters' z-scores), ``ratings`` (list of raw scores: 6 raters for the
    test20 pairs the paper used, ru-en 3), ``ratings_z``, ``nmt_score`` (the NMT system's own
    log-probability, upstream ``model_scores``).
    """
    path = mlqe_pe_path(pair, split)
    with tarfile.open(fetch("mlqe_pe", path), "r:gz") as tar:
        table = _tar_member(tar, ".df.short.tsv", path).decode("utf-8")
        doc_ids = _tar_member(tar, ".doc_ids", path).decode("utf-8").splitlines()
    if doc_ids and doc_ids[0].strip() == "doc_id":  # a header line
        doc_ids = doc_ids[1:]
    raw = pd.read_csv(io.StringIO(table), **_TSV)
    seg = "segid" if "segid" in raw.columns else "index"  # ru-en names its segment ids 'segid'
    need = [seg, "original", "translation", "scores", "mean", "z_scores", "z_mean", "model_scores"]
    missing = [c for c in need if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: columns {missing} missing (has {list(raw.columns)})")
    if len(doc_ids) != len(raw):
        raise ValueError(f"{path}: {len(doc_ids)} doc ids for {len(raw)} segments")
    rows = []
    for i, r in enumerate(raw.itertuples(index=False)):
        ratings = _int_list(r.scores, file=path, row=i, column="scores", n=None, lo=0, hi=100)
        z = [float(v) for v in r.z_scores.strip("[]").split(",")]
        mean = _float(r.mean, file=path, row=i, column="mean")
        if not np.isclose(mean, np.mean(ratings), atol=1e-9):
            raise ValueError(f"{path} row {i}: mean {mean} is not the mean of the ratings {ratings}")
        rows.append({
            "pair": pair, "split": split, "item": i, "segment": int(getattr(r, seg)), "doc_id": doc_ids[i].strip(),
            "source": r.original, "translation": r.translation,
            "gold": mean, "gold_z": _float(r.z_mean, file=path, row=i, column="z_mean"),
            "ratings": ratings, "ratings_z": z,
            "nmt_score": _float(r.model_scores, file=path, row=i, column="model_scores"),
        })
    return pd.DataFrame(rows)


# --- GECQE stand-in: TMU-GFM ------------------------------------------------------------------------------
TMU_FILE = "tmu-gfm-dataset.csv"
_TMU_COLUMNS = {"grammaticality": ("grammer", "ave_g"), "fluency": ("fluency", "ave_f"), "meaning": ("meaning", "ave_m")}


def load_tmu_gfm() -> pd.DataFrame:
    """One row per rated GEC output (4,221): ``item, source, output, systems`` and, per aspect
    (grammaticality, fluency, meaning), ``ratings_<aspect>`` (the 5 raters' integer ratings, 0-4, as
    released) and ``gold_<aspect>`` (the upstream mean, ``ave_g`` / ``ave_f`` / ``ave_m``).

    The upstream means leave out ratings of 0: of the 21,105 ratings per aspect, 18 grammaticality and 84
    meaning ratings (no fluency rating) are 0, and every upstream mean of a row with a 0 equals the mean of
    its other ratings (e.g. ``2,3,1,0,3`` -> 2.25). That reads as 0 = "could not rate" (the grammaticality
    scale follows Heilman et al. 2014, whose lowest category is "other"); we keep the upstream means as the
    gold and check each one against that rule, so the gold lies in [1, 4].

    ``systems`` lists the GEC systems that produced the output (upstream joins several with commas when
    they produced the same sentence). The upstream column ``grammer`` (sic) is grammaticality.
    """
    raw = pd.read_csv(fetch("tmu_gfm", TMU_FILE), dtype=str, keep_default_na=False, na_values=[])
    need = ["source", "output", "system"] + [c for pair in _TMU_COLUMNS.values() for c in pair]
    missing = [c for c in need if c not in raw.columns]
    if missing:
        raise ValueError(f"{TMU_FILE}: columns {missing} missing (has {list(raw.columns)})")
    out = pd.DataFrame({
        "item": range(len(raw)),
        "source": raw["source"],
        "output": raw["output"],
        "systems": [s.split(",") for s in raw["system"]],
    })
    for aspect, (col, ave) in _TMU_COLUMNS.items():
        ratings = [_int_list(c, file=TMU_FILE, row=i, column=col, n=5, lo=0, hi=4) for i, c in enumerate(raw[col])]
        rated = np.array([np.mean([v for v in r if v > 0]) if any(r) else np.nan for r in ratings])
        gold = np.array([_float(c, file=TMU_FILE, row=i, column=ave) for i, c in enumerate(raw[ave])])
        bad = np.flatnonzero(~np.isclose(gold, rated, atol=1e-6))
        if len(bad):
            i = int(bad[0])
            raise ValueError(f"{TMU_FILE} row {i}: {ave}={gold[i]} is not the mean of the non-zero {col}={ratings[i]}")
        out[f"ratings_{aspect}"] = ratings
        out[f"gold_{aspect}"] = gold
    return out


# --- LCP stand-in: CompLex --------------------------------------------------------------------------------
def complex_path(subset: str, split: str = "test") -> str:
    _check(subset, COMPLEX_SUBSETS, "subset")
    _check(split, ("test", "trial"), "split")
    if split == "trial":
        if subset != "single":
            raise ValueError("CompLex's mirrored trial split has single words only (subset='single')")
        return "trial/lcp_single_trial.tsv"
    return f"test-labels/lcp_{subset}_test.tsv"


def load_complex(subset: str | None = None, split: str = "test") -> pd.DataFrame:
    """CompLex items (SemEval-2021 Task 1): one row per (sentence, target) with gold complexity in [0, 1].

    ``subset``: ``"single"`` (917 test words), ``"multi"`` (184 test two-word expressions) or ``None`` for
    both (1,101). Columns: ``subset, split, item`` (upstream id), ``corpus, sentence, token, gold``. The gold
    is the mean crowd rating on a 5-point scale mapped to 0-1 (the raters' individual ratings are not
    released). ``split="trial"`` gives the 421 single-word trial items (for examples or calibration).
    """
    subsets = COMPLEX_SUBSETS if subset is None else (subset,)
    frames = []
    for sub in subsets:
        path = complex_path(sub, split)
        raw = pd.read_csv(fetch("complex", path), **_TSV).rename(columns={"subcorpus": "corpus"})  # trial's name
        need = ["id", "corpus", "sentence", "token", "complexity"]
        if list(raw.columns) != need:
            raise ValueError(f"{path}: columns {list(raw.columns)}, expected {need}")
        gold = [_float(c, file=path, row=i, column="complexity") for i, c in enumerate(raw["complexity"])]
        bad = [i for i, g in enumerate(gold) if not 0.0 <= g <= 1.0]
        if bad:
            raise ValueError(f"{path} row {bad[0]}: complexity {gold[bad[0]]} outside [0, 1]")
        frames.append(pd.DataFrame({
            "subset": sub, "split": split, "item": raw["id"], "corpus": raw["corpus"],
            "sentence": raw["sentence"], "token": raw["token"], "gold": gold,
        }))
    return pd.concat(frames, ignore_index=True)


# --- a fourth domain: SummEval ----------------------------------------------------------------------------
def _jsonl(source: str, path: str) -> list[dict]:
    out = []
    with open(fetch(source, path), encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{source}/{path} line {i + 1}: not JSON ({err})") from None
    return out


def load_summeval() -> pd.DataFrame:
    """One row per SummEval summary (1,600 = 100 CNN/DM articles x 16 systems).

    Columns: ``item`` (``doc_id/system``), ``doc_id, system, article, summary`` and the four expert scores
    ``coherence, consistency, fluency, relevance`` (each the mean of 3 experts on 1-5; the individual expert
    ratings are not in the converted file).
    """
    articles = {a["doc_id"]: a["article"] for a in _jsonl("summeval", "articles.jsonl")}
    rows = _jsonl("summeval", "summaries.jsonl")
    out = pd.DataFrame(rows)
    need = ["doc_id", "system", "summary", *SUMMEVAL_ASPECTS]
    missing = [c for c in need if c not in out.columns]
    if missing:
        raise ValueError(f"summeval/summaries.jsonl: fields {missing} missing")
    unknown = sorted(set(out["doc_id"]) - set(articles))
    if unknown:
        raise ValueError(f"summeval/summaries.jsonl: {len(unknown)} doc_ids with no article, e.g. {unknown[0]}")
    for aspect in SUMMEVAL_ASPECTS:
        bad = out[(out[aspect] < 1) | (out[aspect] > 5)]
        if len(bad):
            raise ValueError(f"summeval/summaries.jsonl: {aspect} outside [1, 5] for {bad.iloc[0]['doc_id']}")
    out.insert(0, "item", out["doc_id"] + "/" + out["system"])
    out.insert(3, "article", out["doc_id"].map(articles))
    return out[["item", "doc_id", "system", "article", "summary", *SUMMEVAL_ASPECTS]]


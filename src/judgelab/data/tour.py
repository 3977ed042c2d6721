"""Descriptive tables for the data-tour chapter: what the released files of Panickssery et al. (2024) hold.

Everything here is computed from the pinned manifest and the verified files, never typed in by hand, so
the tour cannot drift from the data. The only hand-written text is :data:`FOLDER_NOTES`, one line per
upstream folder saying what it holds (checked against the files by ``tests/test_data.py``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pandas as pd

from judgelab.data.fetch import fetch
from judgelab.data.self_recognition import AUTHORS, DATASETS, SOURCE, load_articles, load_summaries
from judgelab.data.sources import get_source

#: What each top-level upstream folder holds, in the order the tour presents them.
FOLDER_NOTES: dict[str, str] = {
    "articles": "the 1000 source articles per dataset (id -> text); key order = fine-tuning/evaluation split",
    "summaries": "id -> summary: the 5 original sources (1000 each) and fine-tuned GPT-3.5 variants (30-50 each)",
    "results": "pairwise evaluator outputs: recognition (detection) and preference (comparison), both orders",
    "results_with_worse": "pairwise outputs of the variant the upstream calls 'with worse'; layout as results/",
    "results_vs_human": "pairwise outputs of the prompt variant the upstream calls 'vs human' (XSUM only)",
    "results_vs_model": "pairwise outputs of the prompt variant the upstream calls 'vs model' (XSUM only)",
    "individual_setting_results": "one summary at a time: P(Yes) for 'did you write this?' and P(1..5) quality scores",
    "label_results": "pairwise preference with source labels shown: correct, wrong or random labels",
    "comparisons": "fine-tuned models' preference for their new summaries over their original ones (50 items)",
    "finetuning_data_gpt35": "OpenAI chat fine-tuning sets (2 and 10 examples) for recognition",
    "finetuning_data_llama": "Llama-2 chat-format fine-tuning sets (2 and 10 examples) for recognition",
}

_WORD = re.compile(r"\S+")


def word_count(text: str) -> int:
    """Whitespace-separated tokens: the simple, reproducible length used throughout the tour."""
    return len(_WORD.findall(text))


def manifest(source: str = SOURCE) -> pd.DataFrame:
    """The pinned manifest as a table: ``path, folder, subfolder, ext, bytes, sha256``."""
    rows = []
    for pin in get_source(source).files.values():
        parts = pin.path.split("/")
        rows.append(
            {
                "path": pin.path,
                "folder": parts[0] if len(parts) > 1 else ".",
                "subfolder": "/".join(parts[1:-1]),
                "ext": pin.path.rsplit(".", 1)[-1] if "." in parts[-1] else "",
                "bytes": pin.size,
                "sha256": pin.sha256,
            }
        )
    return pd.DataFrame(rows)


def _load(source: str, path: str) -> Any:
    local = fetch(source, path)
    with open(local, encoding="utf-8") as fh:
        if path.endswith(".jsonl"):
            return [json.loads(line) for line in fh if line.strip()]
        return json.load(fh)


def file_records(source: str = SOURCE) -> pd.DataFrame:
    """One row per pinned file: ``path, folder, ext, bytes, kind, records, fields``.

    ``kind`` is the JSON shape (``dict`` = id -> value mapping, ``list`` = list of records, ``jsonl`` = one
    record per line); ``records`` its length; ``fields`` the keys of the first record (for lists of objects).
    """
    out = []
    for row in manifest(source).itertuples(index=False):
        data = _load(source, row.path)
        kind = "jsonl" if row.path.endswith(".jsonl") else type(data).__name__
        first = data[0] if isinstance(data, list) and data else None
        fields = ", ".join(first) if isinstance(first, dict) else ""
        out.append(
            {
                "path": row.path,
                "folder": row.folder,
                "ext": row.ext,
                "bytes": row.bytes,
                "kind": kind,
                "records": len(data),
                "fields": fields,
            }
        )
    return pd.DataFrame(out)


def folder_table(records: pd.DataFrame | None = None) -> pd.DataFrame:
    """The tour's folder table: what each upstream folder holds, files, size, records per file.

    ``records`` is :func:`file_records` (computed if not given). Columns: ``folder, holds, files, types,
    MB, records, records/file`` (the range of record counts over the folder's files, ``min-max``).
    """
    rec = file_records() if records is None else records
    rows = []
    order = list(FOLDER_NOTES) + sorted(set(rec["folder"]) - set(FOLDER_NOTES))
    for folder in order:
        part = rec[rec["folder"] == folder]
        if part.empty:
            continue
        kinds = Counter(k if e == k else f"{e} ({k})" for e, k in zip(part["ext"], part["kind"]))
        lo, hi = int(part["records"].min()), int(part["records"].max())
        rows.append(
            {
                "folder": folder,
                "holds": FOLDER_NOTES.get(folder, ""),
                "files": len(part),
                "types": ", ".join(f"{n} {k}" for k, n in kinds.most_common()),
                "MB": round(part["bytes"].sum() / 1e6, 2),
                "records": int(part["records"].sum()),
                "records/file": str(lo) if lo == hi else f"{lo}-{hi}",
            }
        )
    return pd.DataFrame(rows)


def record_schemas(records: pd.DataFrame | None = None) -> pd.DataFrame:
    """Distinct record layouts per folder: ``folder, fields, files, example`` (one example path each)."""
    rec = file_records() if records is None else records
    rec = rec[rec["fields"] != ""]
    grouped = rec.groupby(["folder", "fields"], sort=False)
    return grouped.agg(files=("path", "size"), example=("path", "first")).reset_index()


def text_lengths(datasets: tuple[str, ...] = DATASETS, authors: tuple[str, ...] = AUTHORS) -> pd.DataFrame:
    """Tidy lengths of every article and original summary: ``dataset, key, source, words, chars``.

    ``source`` is ``"article"`` for the article itself, else the summary's author.
    """
    frames = []
    for ds in datasets:
        art = load_articles(ds)
        frames.append(
            pd.DataFrame(
                {
                    "dataset": ds,
                    "key": art["key"],
                    "source": "article",
                    "words": art["article"].map(word_count),
                    "chars": art["article"].str.len(),
                }
            )
        )
        summ = load_summaries(ds, authors)
        frames.append(
            pd.DataFrame(
                {
                    "dataset": ds,
                    "key": summ["key"],
                    "source": summ["author"],
                    "words": summ["summary"].map(word_count),
                    "chars": summ["summary"].str.len(),
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    out["source"] = pd.Categorical(out["source"], categories=["article", *authors], ordered=True)
    return out


def length_stats(lengths: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per dataset and source: ``n``, mean/median/min/max words, mean chars, and words relative to the article."""
    lens = text_lengths() if lengths is None else lengths
    g = lens.groupby(["dataset", "source"], observed=True, sort=False)
    stats = g.agg(
        n=("words", "size"),
        mean_words=("words", "mean"),
        median_words=("words", "median"),
        min_words=("words", "min"),
        max_words=("words", "max"),
        mean_chars=("chars", "mean"),
    )
    art = lens[lens["source"] == "article"].set_index(["dataset", "key"])["words"]
    ratio = lens.assign(ratio=lens["words"] / art.reindex(pd.MultiIndex.from_frame(lens[["dataset", "key"]])).to_numpy())
    stats["median_compression"] = ratio.groupby(["dataset", "source"], observed=True, sort=False)["ratio"].median()
    stats.loc[(slice(None), "article"), "median_compression"] = float("nan")
    return stats.round(2).reset_index()


def example(dataset: str, index: int = 0) -> dict[str, str]:
    """The article at position ``index`` of ``dataset`` and its summaries: ``{"key", "article", author: summary}``."""
    art = load_articles(dataset)
    row = art.iloc[index]
    summ = load_summaries(dataset)
    summ = summ[summ["key"] == row["key"]]
    out = {"key": row["key"], "article": row["article"]}
    out.update(dict(zip(summ["author"], summ["summary"])))
    return out



#: Fine-tuning variants of Panickssery et al.: 2, 10 or 500 self-recognition examples, or a control task.
FINETUNE_VARIANTS: tuple[str, ...] = ("2", "10", "500", "always_1", "random", "readability", "length", "vowelcount")
_RESULT_NAME = re.compile(
    r"^(?:(?P<ft_dataset>xsum|cnn)_)?(?P<variant>" + "|".join(FINETUNE_VARIANTS) + r")_(?:ft_)?(?P<evaluator>gpt35|llama)$"
)


def parse_evaluator(stem: str) -> dict[str, str | None]:
    """Split an upstream evaluator name such as ``cnn_10_ft_gpt35`` or ``gpt4``.

    Returns ``evaluator`` (base model: gpt35, gpt4, llama), ``ft_dataset`` (the dataset it was fine-tuned
    on, or None) and ``variant`` (the fine-tuning variant, see :data:`FINETUNE_VARIANTS`, or None for the
    original model). Raises ValueError for a name it does not understand.
    """
    if stem in ("gpt35", "gpt4", "llama"):
        return {"evaluator": stem, "ft_dataset": None, "variant": None}
    m = _RESULT_NAME.match(stem)
    if not m:
        raise ValueError(f"not an evaluator name: {stem!r}")
    return {"evaluator": m["evaluator"], "ft_dataset": m["ft_dataset"], "variant": m["variant"]}


def result_files(folder: str = "results") -> pd.DataFrame:
    """The pairwise result files of one folder, parsed: ``path, eval_dataset, evaluator, ft_dataset, variant``."""
    rows = []
    for path in get_source(SOURCE).files:
        parts = path.split("/")
        if parts[0] != folder or not parts[-1].endswith("_results.json"):
            continue
        stem = parts[-1].removesuffix("_results.json")
        eval_ds = parts[1] if len(parts) == 3 else "xsum"
        rows.append({"path": path, "eval_dataset": eval_ds, **parse_evaluator(stem)})
    return pd.DataFrame(rows)

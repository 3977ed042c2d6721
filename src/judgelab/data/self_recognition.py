"""Tidy loaders for the released data of Panickssery, Bowman & Feng (2024), arXiv 2404.13076.

The upstream article files are JSON objects whose key order matters: the authors fine-tuned on
``keys[:N]`` and evaluated on ``keys[N:]``. Loaders keep that order in an ``index`` column.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from judgelab.data.fetch import fetch

SOURCE = "self_recognition"
DATASETS: tuple[str, ...] = ("xsum", "cnn")
#: The five released summary authors, in the order the paper lists them.
AUTHORS: tuple[str, ...] = ("human", "claude", "gpt35", "gpt4", "llama")


def load_json(path: str) -> Any:
    """Parse one verified upstream JSON file of this source (``path`` as in the upstream repository)."""
    with open(fetch(SOURCE, path), encoding="utf-8") as fh:
        return json.load(fh)


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, not {dataset!r}")


def article_keys(dataset: str) -> list[str]:
    """Article ids in upstream file order (training used ``keys[:N]``, evaluation ``keys[N:]``)."""
    _check_dataset(dataset)
    return list(load_json(f"articles/{dataset}_train_articles.json"))


def load_articles(dataset: str) -> pd.DataFrame:
    """One row per article: ``dataset, index, key, article``."""
    _check_dataset(dataset)
    raw = load_json(f"articles/{dataset}_train_articles.json")
    return pd.DataFrame(
        {"dataset": dataset, "index": range(len(raw)), "key": list(raw), "article": list(raw.values())}
    )


def load_summaries(dataset: str, authors: tuple[str, ...] = AUTHORS) -> pd.DataFrame:
    """One row per (article, author): ``dataset, index, key, author, summary``, in article order."""
    articles = load_articles(dataset)
    frames = []
    for author in authors:
        raw = load_json(f"summaries/{dataset}/{dataset}_train_{author}_responses.json")
        frames.append(articles[["dataset", "index", "key"]].assign(author=author, summary=articles["key"].map(raw)))
    out = pd.concat(frames, ignore_index=True)
    missing = out[out["summary"].isna()]
    if len(missing):
        raise ValueError(f"{len(missing)} summaries missing in {dataset}: e.g. {missing.iloc[0][['key', 'author']].tolist()}")
    return out.sort_values(["index", "author"], key=lambda s: s.map(AUTHORS.index) if s.name == "author" else s,
                           ignore_index=True)

"""Pinned data sources: where each upstream file lives and the sha256 it must have.

Every source the book uses is pinned to an upstream commit, and every file to the sha256 and size of its
raw upstream content (the manifests in ``judgelab/data/manifests``, copied from the mirror's
``MANIFEST.tsv``). Pinning the hash, not just the commit, is what lets us accept a file from any place -- a
local cache, a mirror directory, or the upstream URL -- and still know it is the file the papers used.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class PinnedFile:
    """One upstream file: its path inside the upstream repository, its sha256 and its size in bytes."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Source:
    """A pinned upstream data source.

    ``raw_url`` is a pattern with ``{path}``; it is ``None`` where no upstream file matches the mirrored one
    byte for byte (SummEval is converted from a pickle), so only a mirror or the cache can serve it.
    """

    name: str
    upstream: str
    commit: str | None
    raw_url: str | None
    description: str
    files: dict[str, PinnedFile] = field(repr=False, default_factory=dict)

    def file(self, path: str) -> PinnedFile:
        try:
            return self.files[path]
        except KeyError:
            near = [p for p in self.files if path.split("/")[-1] in p][:5]
            hint = f" Did you mean one of {near}?" if near else ""
            raise KeyError(f"{path!r} is not a pinned file of source {self.name!r}.{hint}") from None

    def url(self, path: str) -> str | None:
        return self.raw_url.format(path=path) if self.raw_url else None


def _github_raw(repo: str, commit: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{{path}}"


# name -> (upstream repository, commit or None, one-line description)
_PINS: dict[str, tuple[str, str | None, str]] = {
    "self_recognition": (
        "ArjunPanickssery/self_recognition",
        "5b1cb7321eef8a1564c8c782917e3706aafcc589",
        "Panickssery et al. 2024: articles, summaries by 5 sources, every evaluator output",
    ),
    "summeval": (
        "neulab/BARTScore",
        None,  # converted from SUM/SummEval/data.pkl at 248f511c to JSON lines: mirror only
        "SummEval: 1600 summaries of 100 CNN/DM articles with expert 1-5 scores",
    ),
    "mlqe_pe": (
        "sheffieldnlp/mlqe-pe",
        "2a670a1140416cf80507b5a829659383c878feb8",
        "MLQE-PE: WMT20 MT quality estimation with per-rater 0-100 scores",
    ),
    "prometheus_eval": (
        "prometheus-eval/prometheus-eval",
        "dcfb44272d5d0414832f5dbb8c2a05ebc2614234",
        "Prometheus eval sets: Vicuna/MT-bench responses with GPT-4 1-5 scores; BiGGen-Bench",
    ),
    "self_instruct": (
        "yizhongw/self-instruct",
        "0b26ccaa415992100fa32df62d41b994cf928e23",
        "Self-Instruct user-oriented instructions with gold outputs and 8 models' responses",
    ),
    "mt_bench": (
        "lm-sys/FastChat",
        "0e6d3e4beaab66f4d3f93db72541a4abab8af28d",
        "MT-bench and Vicuna-bench questions with GPT-4 reference answers",
    ),
    "alpaca_eval": (
        "tatsu-lab/alpaca_eval",
        "cd543a149df89434d8a54582c0151c0b945c3d20",
        "AlpacaEval 1 GPT-4 pairwise annotations for 10 models",
    ),
    "alpaca_seed": (
        "tatsu-lab/stanford_alpaca",
        "761dc5bfbdeeffa89b8bff5d038781a4055f796a",
        "Alpaca's 175 human-written seed tasks",
    ),
    "tmu_gfm": (
        "tmu-nlp/TMU-GFM-Dataset",
        "e22b35502e0fcdbf79bfe2a2bc1771c7ad301786",
        "TMU-GFM: 4,221 GEC outputs, 5 raters each on 0-4 grammaticality, fluency, meaning",
    ),
    "complex": (
        "MMU-TDMLab/CompLex",
        "4b31c2bd34da4c1265f9db3d727d95ee23099f14",
        "CompLex (SemEval-2021 LCP): 917 single + 184 multi-word test items with gold complexity 0-1",
    ),
}


def _read_manifest(name: str) -> dict[str, PinnedFile]:
    text = resources.files("judgelab.data").joinpath("manifests", f"{name}.tsv").read_text()
    rows = csv.DictReader(text.splitlines(), delimiter="\t")
    return {r["path"]: PinnedFile(r["path"], r["sha256"], int(r["bytes"])) for r in rows}


@cache
def get_source(name: str) -> Source:
    """The pinned source called ``name`` (see :data:`SOURCE_NAMES`)."""
    try:
        repo, commit, description = _PINS[name]
    except KeyError:
        raise KeyError(f"unknown data source {name!r}; known: {', '.join(SOURCE_NAMES)}") from None
    return Source(
        name=name,
        upstream=f"https://github.com/{repo}",
        commit=commit,
        raw_url=_github_raw(repo, commit) if commit else None,
        description=description,
        files=_read_manifest(name),
    )


SOURCE_NAMES: tuple[str, ...] = tuple(_PINS)

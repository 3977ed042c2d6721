"""The numerical-bias experiment (Sato et al. 2026): which judges score which items, stored, replayed, tabulated.

A **cell** is (judge, form, subset, score range): a judge (a model at one alignment stage), a prompt form
(``completion``: the text ending in ``Score:``; ``chat``: the same text as the user turn of the judge's chat
template), a subset of items (an MLQE-PE language pair, or TMU-GFM grammaticality) and a score range. Per item
of a cell the exact score distribution (:func:`~judgelab.experiments.numerical_bias.scoring.exact_distributions`)
is computed at the temperatures :data:`TEMPERATURES` *in the same forward passes*, and stored: one record per
(judge fingerprint, prompt, range, temperatures, decimals, ``min_prob``) in the judge's
:class:`~judgelab.store.CallStore` (``results/numerical_bias/stores/<judge>.sqlite``), with the profile, date,
hardware and throughput of the run in the store's metadata. From the records follow, with no model loaded:

* per item and temperature: the expected score, the valid / invalid / unresolved masses, and ten draws of the
  paper's protocol from the exact distribution (seeded per cell), whose mean is the paper's item score
  (``mean10``) and whose first draw is a single sample (``single``);
* the tables of the chapter (:class:`NumericalBiasResults`): bias per cell with bootstrap intervals, score
  histograms with the gold beside them, the kurtosis-against-r relation across cells, the mitigations
  (temperature, calibration after Jiang et al. 2023, score ranges, the expected score), the gold kurtosis
  against the paper's, the agreement of the sampled protocol (a) with the exact one (b), the valid-output
  counts per model, and a claims table (paper against ours, with a verdict per claim).

The sampled protocol (a) (10 generations at T=0.7, at most 5 new tokens) runs live on a small subset per judge
(``sampled_items`` items of en-de, the judge's main form), through the same store (``generate`` calls).

**Profiles** (:data:`PROFILES`): ``ci`` -- live and tiny (smollm2 in llama.cpp, a few en-de items; runs in
the default tests); ``book`` -- replays the committed stores at the sizes the last book run wrote beside its
tables (``results/numerical_bias/caps.json``), and with ``live=True`` (``--live``, ``JUDGELAB_LIVE=1``)
computes what they lack (``results/numerical_bias/book_schedule.sh`` is the order the stores were grown in);
``gpu`` -- the paper's four hub pairs and three small pairs, on CUDA; ``api`` -- OpenAI chat models, aligned
only, scored by sampling on every cell (they give no whole-vocabulary next-token distribution, so no exact
scores). :func:`run_numerical_bias` is what the CLI (``judgelab run numerical-bias``) and the notebook call.

Runtimes: the vendor-aligned zoo judges run in llama.cpp (``NAME@llama.cpp``: 1.4 s per exact item against
1.7 s in transformers for smollm2, measured on 10 en-de items at 1 thread), the gemma-3-270m stages in
transformers (their LoRA adapters are merged into the transformers weights).

Items: a fixed seeded permutation of each subset (:func:`subset_items`); a cell of n items takes the first n,
so the same items are scored by every judge, and a larger run only adds items.
"""

from __future__ import annotations

import os
import re
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _st

from judgelab.experiments.numerical_bias import analysis as A
from judgelab.experiments.numerical_bias import scoring as S
from judgelab.models.base import Prompt
from judgelab.paths import results_path, write_csvs
from judgelab.profiles import hardware
from judgelab.prompts import sato2026 as P
from judgelab.stats import LEVEL, N_RESAMPLES, SEED
from judgelab.store import CallStore, ReplayMiss, StoredModel, call_key

# --- constants of the design -------------------------------------------------------------------------------
MLQE_SUBSETS: tuple[str, ...] = ("en-de", "en-zh", "ne-en", "si-en")  # the paper's four pairs
TMU_SUBSET = "tmu_gfm"
COMPLEX_SUBSET = "complex"
SUBSETS: tuple[str, ...] = (*MLQE_SUBSETS, TMU_SUBSET)
ALL_SUBSETS: tuple[str, ...] = (*SUBSETS, COMPLEX_SUBSET)
#: TMU-GFM's aspect judged (the GECQE stand-in): the default of the prompts module
TMU_ASPECT = P.DEFAULT_ASPECT["gecqe"]
HIGH_RESOURCE: tuple[str, ...] = ("en-de", "en-zh")
LOW_RESOURCE: tuple[str, ...] = ("ne-en", "si-en")

TEMPERATURES: tuple[float, ...] = (0.4, 0.7, 1.0, 1.3)  # the paper's temperature mitigation grid
PAPER_T = S.PAPER_TEMPERATURE
EXPECTED_T = 1.0  # the expected score as G-Eval computes it: the model's own (T=1) distribution
DEFAULT_RANGE = P.DEFAULT_RANGE
ALT_RANGES: tuple[tuple[int, int], ...] = ((1, 5), (0, 9), (1, 100))

#: what the paper reports (second-hand summaries; see the issue): gold kurtosis, the headline, the relation
PAPER_GOLD_KURTOSIS: dict[str, float] = {"en-de": 1.48, "ne-en": 0.97, "si-en": -0.72}
PAPER_KURTOSIS_R = -0.60
PAPER_HEADLINE_EN_DE: dict[str, tuple[float, float]] = {  # family -> (base, instruct) kurtosis, En-De
    "gemma-7b": (0.27, 128.17), "mistral-7b": (0.41, 52.92), "llama-3-8b": (2.53, 21.05)}
PAPER_GEMMA_R_EN_DE = (0.33, 0.08)

STORE_KIND = "score_distribution"
#: kinds of cell (see :class:`NumericalBiasProfile`), in the order a judge's work is done
KINDS: tuple[str, ...] = ("main", "sampled", "ranges", "other_form")
RECORD_FORMAT = 1
#: log-probability codes per nat in the stored records (:func:`encode_record`)
LOG_STEPS = 1500


def default_results_dir(profile: str) -> Path:
    """``results/numerical_bias`` for the book; ``results/runs/<profile>/numerical_bias`` otherwise."""
    return results_path("numerical_bias") if profile == "book" else results_path("runs", profile, "numerical_bias")


# --- judges ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Judge:
    """A judge of the chapter: one model at one alignment stage, and the prompt forms it is given.

    ``spec``: a model string for :func:`judgelab.models.get_model`, or ``stage:<base|sft|dpo>`` for the
    gemma-3-270m stages aligned here (:mod:`judgelab.experiments.numerical_bias.alignment`). ``forms[0]`` is
    the judge's main form (completion for the gemma stages, so that base, SFT and DPO read the same text; chat
    for a vendor's aligned model, as it is meant to be used); the others are run on fewer items.
    ``stage``: ``base``, ``sft``, ``dpo`` (ours) or ``instruct`` (a vendor's aligned release; its base is not
    in the zoo unless named). ``exact``: whether the backend gives whole-vocabulary next-token probabilities.
    """

    name: str
    family: str
    stage: str
    spec: str
    forms: tuple[str, ...]
    exact: bool = True

    @property
    def aligned(self) -> bool:
        return self.stage != "base"

    @property
    def main_form(self) -> str:
        return self.forms[0]


def _zoo_instruct(name: str, family: str) -> Judge:
    return Judge(name, family, "instruct", f"{name}@llama.cpp", ("chat", "completion"))


JUDGES: dict[str, Judge] = {j.name: j for j in (
    _zoo_instruct("smollm2-135m-instruct", "smollm2-135m"),
    Judge("gemma-3-270m:base", "gemma-3-270m", "base", "stage:base", ("completion",)),
    Judge("gemma-3-270m:sft", "gemma-3-270m", "sft", "stage:sft", ("completion", "chat")),
    Judge("gemma-3-270m:dpo", "gemma-3-270m", "dpo", "stage:dpo", ("completion", "chat")),
    _zoo_instruct("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b"),
    _zoo_instruct("qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-1.5b"),
)}
#: the order the book runs in (cheapest first; the 1.5B last, where it may fall short)
BOOK_ORDER: tuple[str, ...] = ("smollm2-135m-instruct", "gemma-3-270m:base", "qwen2.5-coder-0.5b-instruct",
                               "gemma-3-270m:sft", "gemma-3-270m:dpo", "qwen2.5-coder-1.5b-instruct")


def _hub_pair(base: str, instruct: str, family: str) -> list[Judge]:
    return [Judge(base, family, "base", f"hf:{base}", ("completion",)),
            Judge(instruct, family, "instruct", f"hf:{instruct}", ("chat", "completion"))]


GPU_JUDGES: dict[str, Judge] = {j.name: j for j in (
    *_hub_pair("google/gemma-7b", "google/gemma-7b-it", "gemma-7b"),
    *_hub_pair("mistralai/Mistral-7B-v0.1", "mistralai/Mistral-7B-Instruct-v0.1", "mistral-7b"),
    *_hub_pair("meta-llama/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-8B-Instruct", "llama-3-8b"),
    *_hub_pair("Qwen/Qwen2-7B", "Qwen/Qwen2-7B-Instruct", "qwen2-7b"),
    *_hub_pair("Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B-Instruct", "qwen2.5-0.5b"),
    *_hub_pair("google/gemma-3-270m", "google/gemma-3-270m-it", "gemma-3-270m-hub"),
    *_hub_pair("HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m-hub"),
)}
API_JUDGES: dict[str, Judge] = {j.name: j for j in (
    Judge("gpt-4o-mini", "gpt-4o-mini", "instruct", "openai:gpt-4o-mini", ("chat",), exact=False),
)}


def all_judges() -> dict[str, Judge]:
    return {**JUDGES, **GPU_JUDGES, **API_JUDGES}


def judge(name: str) -> Judge:
    known = all_judges()
    if name not in known:
        raise ValueError(f"unknown numerical-bias judge {name!r}; choose from {sorted(known)}")
    return known[name]


# --- profiles ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NumericalBiasProfile:
    """Sizes of the numerical-bias experiment (items per cell, by kind of cell) and which judges run.

    Kinds of cell, for each judge: ``main`` (its main form, range 0-10, every subset: ``items`` items each),
    ``other_form`` (its other forms, range 0-10, every subset: ``other_form_items``), ``ranges`` (aligned
    judges only: main form, each of :data:`ALT_RANGES`, on ``range_subsets``: ``range_items``) and ``sampled``
    (protocol (a), main form, range 0-10, en-de: ``sampled_items`` items x ``samples`` generations).

    ``caps``: judge -> {kind: at most this many items in its cells of that kind}; a kind not named has none.
    In the ``book`` profile that is what has been computed and is replayed (a judge with no cap is not in the
    book yet); the sizes themselves are the design, and :meth:`shortfall` names every judge that has less.
    Outside replay a judge with no caps gets the design.
    """

    name: str
    judges: tuple[str, ...]
    items: int
    other_form_items: int
    range_items: int
    sampled_items: int
    subsets: tuple[str, ...] = SUBSETS
    range_subsets: tuple[str, ...] = ("en-de",)
    ranges: tuple[tuple[int, int], ...] = ALT_RANGES
    sampled_subset: str = "en-de"
    samples: int = S.PAPER_SAMPLES
    temperatures: tuple[float, ...] = TEMPERATURES
    decimals: int = 1
    min_prob: float = 1e-3
    max_lead: int = 2
    caps: dict[str, dict[str, int]] = field(default_factory=dict)
    replay: bool = False
    device: str | None = None
    #: llama.cpp threads (None: ``$OMP_NUM_THREADS`` if set, else every usable core)
    n_threads: int | None = None

    def designed(self, kind: str) -> int:
        if kind not in KINDS:
            raise ValueError(f"unknown kind of cell {kind!r}; one of {KINDS}")
        return {"main": self.items, "other_form": self.other_form_items, "ranges": self.range_items,
                "sampled": self.sampled_items}[kind]

    def size(self, judge_name: str, kind: str) -> int:
        if judge_name in self.caps:
            return min(self.designed(kind), self.caps[judge_name].get(kind, 0))
        return 0 if self.replay else self.designed(kind)

    def cap_text(self, judge_name: str) -> str:
        """The judge's sizes as the CLI takes them (``main:50,sampled:20``)."""
        return ",".join(f"{k}:{self.size(judge_name, k)}" for k in KINDS if self.size(judge_name, k))

    def active_judges(self) -> tuple[str, ...]:
        """The judges with at least one item (in the book: those computed so far)."""
        return tuple(j for j in self.judges if any(self.size(j, k) for k in KINDS))

    def shortfall(self) -> dict[str, dict[str, tuple[int, int]]]:
        """Judges with fewer items than designed: name -> {kind: (items per cell, designed)}."""
        out: dict[str, dict[str, tuple[int, int]]] = {}
        for j in self.judges:
            jj = judge(j)
            for k in KINDS:
                if (k == "ranges" and not jj.aligned) or (k == "other_form" and len(jj.forms) < 2) or (
                        not jj.exact and k != "sampled"):
                    continue
                if self.size(j, k) < self.designed(k):
                    out.setdefault(j, {})[k] = (self.size(j, k), self.designed(k))
        return out

    def decimals_for(self, score_range: tuple[int, int]) -> int:
        """Resolution of the exact distribution: one decimal on ranges up to 10 (small models write "7.5"
        often), whole numbers on 1-100 (a decimal there moves the score by under 1 %, and following it
        would multiply the enumeration)."""
        return self.decimals if score_range[1] <= 10 else 0


PROFILES: dict[str, NumericalBiasProfile] = {
    # live in the default tests: a smoke test of every kind of cell, not a measurement
    "ci": NumericalBiasProfile("ci", ("smollm2-135m-instruct",), items=3, other_form_items=1, range_items=2,
                               sampled_items=2, samples=2, subsets=("en-de",), ranges=((1, 5),),
                               min_prob=1e-2),
    # The design is the (200 items per subset and judge); the caps -- what has been computed, on the
    # hardware each store's run records name, and is replayed -- are read from results/numerical_bias/caps.json,
    # which the last book run wrote with its tables (book_caps). The stores resume: compute more with
    # `judgelab run numerical-bias --profile book --live --judges NAME=KIND:N,...` (results/numerical_bias/
    # book_schedule.sh is the order the committed stores were made in).
    "book": NumericalBiasProfile("book", BOOK_ORDER, items=200, other_form_items=50, range_items=50,
                                 sampled_items=50, replay=True, caps={}),
    "gpu": NumericalBiasProfile("gpu", tuple(GPU_JUDGES), items=1000, other_form_items=200, range_items=200,
                                sampled_items=100, device="cuda", min_prob=1e-4),
    "api": NumericalBiasProfile("api", tuple(API_JUDGES), items=100, other_form_items=0, range_items=50,
                                sampled_items=100),
}


CAPS_FILE = "caps.json"


def book_caps(results_dir: Path | str | None = None) -> dict[str, dict[str, int]]:
    """The sizes the committed book tables were written at (``results/numerical_bias/caps.json``, written by
    :func:`write_tables` with the tables): judge -> {kind: items per cell}. Empty where there is none."""
    import json

    path = Path(results_dir or default_results_dir("book")) / CAPS_FILE
    if not path.is_file():
        return {}
    try:
        caps = json.loads(path.read_text(encoding="utf-8"))["caps"]
        return {str(j): {str(k): int(n) for k, n in c.items()} for j, c in caps.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not a caps file of the numerical-bias book run ({err})") from None


def parse_caps(text: str) -> dict[str, int]:
    """``N`` (every kind at most N items) or ``KIND:N,KIND:N`` (those kinds only; :data:`KINDS`)."""
    text = text.strip()
    if text.isdigit():
        if int(text) < 1:
            raise ValueError(f"a size must be a whole number >= 1, got {text!r}")
        return {k: int(text) for k in KINDS}
    out: dict[str, int] = {}
    for part in text.split(","):
        kind, colon, n = part.strip().partition(":")
        if not colon or kind not in KINDS or not n.strip().isdigit():
            raise ValueError(f"expected N or KIND:N[,KIND:N] with KIND one of {KINDS} and N a whole number, got "
                             f"{text!r}")
        out[kind] = int(n)
    return out


def numerical_bias_profile(name: str | NumericalBiasProfile, judges: Sequence[str] | None = None,
                           items: int | None = None, live: bool = False) -> NumericalBiasProfile:
    """The profile ``name``, with ``judges`` (``NAME``, ``NAME=N`` or ``NAME=KIND:N,KIND:N``) capped so.

    A judge named without a size takes ``items`` for every kind (or keeps its caps, or gets the design);
    with ``judges`` given, only the judges named and those the profile already has caps for take part (in the
    book: the others are replayed as computed). ``items`` alone caps every judge of the profile at ``items``
    per cell. ``live`` (or ``JUDGELAB_LIVE=1``) computes what the stores lack instead of failing on it.
    """
    prof = name if isinstance(name, NumericalBiasProfile) else None
    if prof is None:
        if name not in PROFILES:
            raise ValueError(f"unknown numerical-bias profile {name!r}; choose one of {sorted(PROFILES)}")
        prof = PROFILES[name]
        if name == "book" and not prof.caps:
            prof = replace(prof, caps=book_caps())
    if items is not None and items < 1:
        raise ValueError(f"items must be at least 1, got {items}")
    caps = {j: dict(c) for j, c in prof.caps.items()}
    order = list(prof.judges)
    for spec in judges or ():
        jname, eq, n = spec.partition("=")
        judge(jname)  # a clear error for an unknown name
        if jname not in order:
            order.append(jname)
        if eq:
            caps[jname] = parse_caps(n)
        elif items is not None:
            caps[jname] = {k: items for k in KINDS}
        elif jname not in caps:
            caps[jname] = {k: prof.designed(k) for k in KINDS}
    if items is not None and not judges:
        caps = {j: {k: items for k in KINDS} for j in order}
    if judges:
        order = [j for j in order if j in caps]
    prof = replace(prof, judges=tuple(order), caps=caps)
    if live or os.environ.get("JUDGELAB_LIVE") == "1":
        prof = replace(prof, replay=False)
    return prof


# --- items -------------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _subset_table(subset: str) -> pd.DataFrame:
    from judgelab.data import numerical_bias as D

    if subset in D.MLQE_PAIRS:
        t = D.load_mlqe_pe(subset, "test20")
        return t.assign(task="mtqe", aspect=None, gold_scale_lo=0.0, gold_scale_hi=100.0)
    if subset == TMU_SUBSET:
        t = D.load_tmu_gfm()
        return t.assign(task="gecqe", aspect=TMU_ASPECT, gold=t[f"gold_{TMU_ASPECT}"], gold_scale_lo=0.0,
                        gold_scale_hi=4.0)
    if subset == COMPLEX_SUBSET:
        t = D.load_complex("single").reset_index(drop=True)
        return t.assign(item=range(len(t)), upstream_id=t["item"], task="lcp", aspect=None, gold_scale_lo=0.0,
                        gold_scale_hi=1.0)
    raise ValueError(f"unknown subset {subset!r}; choose from {ALL_SUBSETS}")


def _seed(*parts: object) -> int:
    """A stable seed for a named thing (crc32 of its parts, offset by the book's seed)."""
    return (SEED + zlib.crc32("|".join(map(str, parts)).encode())) % 2**32


def item_order(subset: str) -> np.ndarray:
    """The fixed seeded permutation of a subset's rows: a cell of n items takes the first n."""
    n = len(_subset_table(subset))
    return np.random.default_rng(_seed("items", subset)).permutation(n)


def subset_items(subset: str, n: int | None = None) -> pd.DataFrame:
    """The first ``n`` items (all with ``None``) of ``subset`` in its seeded order, with ``subset``, ``task``,
    ``aspect`` and ``gold`` columns."""
    t = _subset_table(subset)
    order = item_order(subset)
    if n is not None:
        if n > len(order):
            raise ValueError(f"{subset} has {len(order)} items, not {n}")
        order = order[:n]
    return t.iloc[order].assign(subset=subset).reset_index(drop=True)


def item_prompt(row: dict[str, Any], form: str, score_range: tuple[int, int]) -> Prompt:
    return P.prompt(row["task"], row, score_range, row.get("aspect") or None, form=form)


# --- cells and requests ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    judge: str
    form: str
    subset: str
    score_range: tuple[int, int]
    n: int
    kind: str  # main, other_form, ranges

    @property
    def range_text(self) -> str:
        return f"{self.score_range[0]}-{self.score_range[1]}"


def plan(prof: NumericalBiasProfile, judge_name: str) -> list[Cell]:
    """A judge's exact-scoring cells in the order they are computed: main cells first (a run stopped early
    leaves the subsets balanced), then the alternative ranges, then the other forms."""
    j = judge(judge_name)
    cells: list[Cell] = []
    if not j.exact:
        return cells
    n = prof.size(judge_name, "main")
    cells += [Cell(judge_name, j.main_form, s, DEFAULT_RANGE, n, "main") for s in prof.subsets if n]
    n = prof.size(judge_name, "ranges")
    if j.aligned and n:
        cells += [Cell(judge_name, j.main_form, s, r, n, "ranges") for r in prof.ranges for s in prof.range_subsets]
    n = prof.size(judge_name, "other_form")
    if n:
        cells += [Cell(judge_name, f, s, DEFAULT_RANGE, n, "other_form") for f in j.forms[1:] for s in prof.subsets]
    return cells


def request_params(prof: NumericalBiasProfile, score_range: tuple[int, int]) -> dict[str, Any]:
    """Everything besides the model and the prompt that decides a stored distribution."""
    return {"score_range": list(score_range), "temperatures": [float(t) for t in prof.temperatures],
            "decimals": prof.decimals_for(score_range), "min_prob": float(prof.min_prob),
            "max_lead": int(prof.max_lead), "format": RECORD_FORMAT}


# --- compact records ---------------------------------------------------------------------------------------
def _q(p: np.ndarray) -> np.ndarray:
    """Probabilities as uint16 codes of their natural log: 0 for 0, else 1 + round(-ln p * LOG_STEPS)."""
    with np.errstate(divide="ignore"):
        q = 1 + np.rint(-np.log(np.where(p > 0, p, 1.0)) * LOG_STEPS)
    return np.where(p > 0, np.clip(q, 1, 65535), 0).astype("<u2")


def _unq(q: np.ndarray) -> np.ndarray:
    return np.where(q > 0, np.exp(-(q.astype(float) - 1) / LOG_STEPS), 0.0)


def encode_record(dists: dict[float, S.ScoreDistribution]) -> dict[str, Any]:
    """A compact record of one item's distributions at every temperature.

    Each temperature's probabilities are stored densely as uint16 codes of their log (relative precision
    1/(2 * LOG_STEPS) = 0.03 %, down to 1e-19; zlib + base64), and their sum (``valid``) and the other masses
    to 6 significant digits; :func:`decode_record` rescales the decoded probabilities to the stored sum, so the
    masses add up as computed. About 1 KB per item for four temperatures (the plain JSON was 4.5 KB).
    """
    import base64

    first = next(iter(dists.values()))
    codes = np.concatenate([_q(np.asarray(d.probs, dtype=float)) for d in dists.values()])
    out: dict[str, Any] = {"range": list(first.score_range), "decimals": first.decimals,
                           "evaluations": first.evaluations, "t": [float(t) for t in dists],
                           "q": base64.b64encode(zlib.compress(codes.tobytes(), 9)).decode("ascii")}
    for name in ("valid", "below", "above", "invalid", "unresolved"):
        out[name] = [float(f"{getattr(d, name):.6g}") for d in dists.values()]
    return out


def decode_record(rec: dict[str, Any]) -> dict[float, S.ScoreDistribution]:
    """The distributions of a record (:func:`encode_record`)."""
    import base64

    lo, hi = rec["range"]
    width = (hi - lo) * 10 ** rec["decimals"] + 1
    codes = np.frombuffer(zlib.decompress(base64.b64decode(rec["q"])), dtype="<u2")
    if len(codes) != width * len(rec["t"]):
        raise ValueError(f"record of range {lo}-{hi} holds {len(codes)} codes, expected {width * len(rec['t'])}")
    out = {}
    for k, t in enumerate(rec["t"]):
        probs = _unq(codes[k * width : (k + 1) * width])
        if probs.sum() > 0:
            probs *= rec["valid"][k] / probs.sum()
        out[float(t)] = S.ScoreDistribution((lo, hi), float(t), probs, rec["below"][k], rec["above"][k],
                                            rec["invalid"][k], rec["unresolved"][k], rec["decimals"],
                                            rec["evaluations"])
    return out


# --- models and stores -------------------------------------------------------------------------------------
def store_file(judge_name: str, results_dir: Path | str) -> Path:
    safe = re.sub(r"[^a-z0-9._-]+", "-", judge_name.lower()).strip("-.")
    return Path(results_dir) / "stores" / f"{safe}.sqlite"


def _threads(prof: NumericalBiasProfile) -> int | None:
    if prof.n_threads:
        return prof.n_threads
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else None


def load_judge(j: Judge, prof: NumericalBiasProfile) -> Any:
    """The live model of a judge: a gemma stage from the alignment module, or a model string."""
    if j.spec.startswith("stage:"):
        try:
            from judgelab.experiments.numerical_bias import alignment
        except ModuleNotFoundError as err:
            raise RuntimeError(f"judge {j.name}: the alignment stages module "
                               "judgelab.experiments.numerical_bias.alignment is not available") from err
        return alignment.stage_model(j.spec.removeprefix("stage:"), profile="book")
    from judgelab.models import get_model

    kwargs: dict[str, Any] = {}
    if j.spec.endswith("@llama.cpp") and _threads(prof):
        kwargs["n_threads"] = _threads(prof)
    if prof.device and not j.spec.endswith("@llama.cpp") and not j.spec.startswith("openai:"):
        kwargs["device"] = prof.device
    return get_model(j.spec, **kwargs)


def runtime_of(fp: dict[str, Any]) -> str:
    backend = str(fp.get("backend", "?"))
    if backend == "llama.cpp":
        return f"llama.cpp {fp.get('llama_cpp_python', '')}".strip()
    return backend


def _model_name(store: CallStore, j: Judge) -> str:
    names = [m["name"] for m in store.models()]
    if len(names) != 1:
        raise ReplayMiss(f"{store.path} holds {len(names)} models ({names}); the store of judge {j.name} must hold "
                         "exactly one")
    return names[0]


@dataclass
class JudgeRecords:
    """What one judge's store gave: per cell the distributions of its items; the sampled rows; provenance."""

    judge: Judge
    dists: dict[Cell, list[dict[float, S.ScoreDistribution]]]
    samples: pd.DataFrame
    model_name: str
    fingerprint: dict[str, Any]
    fingerprint_id: str
    runs: list[dict[str, Any]]
    computed: dict[str, Any]


def _is_llamacpp(model: Any) -> bool:
    return hasattr(model, "llm")


class _Live:
    """Loads the judge's model at the first miss only (replay of a complete store loads nothing)."""

    def __init__(self, j: Judge, prof: NumericalBiasProfile, store: CallStore):
        self.j, self.prof, self.store = j, prof, store
        self.model: Any = None
        self.stored: StoredModel | None = None

    def get(self) -> Any:
        if self.model is None:
            self.model = load_judge(self.j, self.prof)
            self.stored = StoredModel(self.model, self.store, progress=False)
            self.store.set_meta("judge", {"name": self.j.name, "spec": self.j.spec, "stage": self.j.stage,
                                          "family": self.j.family, "model_name": self.model.name})
            # a live run is recorded when it computes something (replaying a complete store writes nothing)
            self.store.set_meta(f"run:{self.prof.name}:{time.strftime('%Y-%m-%d')}", {
                "profile": self.prof.name, "hardware": hardware(), "date": time.strftime("%Y-%m-%d"),
                "n_threads": _threads(self.prof), "load_1min": os.getloadavg()[0]})
        return self.model


def _miss_message(j: Judge, what: str, n: int, total: int, prof: NumericalBiasProfile, path: Path) -> str:
    return (f"replay: {n} of {total} {what} of judge {j.name} are not in {path}; compute them with "
            f"`judgelab run numerical-bias --profile {prof.name} --live --judges {j.name}={prof.cap_text(j.name)}` "
            "(JUDGELAB_LIVE=1 in a notebook), or lower the judge's cap in the profile")


def judge_records(j: Judge, prof: NumericalBiasProfile, results_dir: Path, progress: bool = True) -> JudgeRecords:
    """Every record a judge's cells need, from its store; what is missing is computed live (or, in replay,
    refused with :class:`~judgelab.store.ReplayMiss` naming the judge, the count and the command).

    A live run first reads the store read-only: a store that has everything is not even opened for writing,
    so replaying it leaves the file byte for byte as it was."""
    if not prof.replay and store_file(j.name, results_dir).is_file():
        try:
            return _judge_records(j, replace(prof, replay=True), results_dir, progress)
        except ReplayMiss:
            pass
    return _judge_records(j, prof, results_dir, progress)


def _judge_records(j: Judge, prof: NumericalBiasProfile, results_dir: Path, progress: bool = True) -> JudgeRecords:
    from tqdm.auto import tqdm

    path = store_file(j.name, results_dir)
    cells = plan(prof, j.name)
    n_sampled = prof.size(j.name, "sampled")
    computed: dict[str, Any] = {"records": 0, "seconds": 0.0, "generations": 0, "generate_seconds": 0.0}
    if prof.replay and not path.is_file():
        raise ReplayMiss(f"replay: no store of judge {j.name} at {path}; compute it with `judgelab run numerical-bias "
                         f"--profile {prof.name} --live --judges {j.name}={prof.cap_text(j.name)}` (JUDGELAB_LIVE=1 in a "
                         "notebook), or point the results folder at the stores")
    with CallStore(path, readonly=prof.replay, identity=j.spec) as store:
        live = _Live(j, prof, store)
        if prof.replay or store.models():
            name = _model_name(store, j)
            fid, fp = store.fingerprint_for(name)
        else:
            model = live.get()
            name, fid, fp = model.name, live.stored.fingerprint_id, model.fingerprint
        # --- exact distributions ---
        dists: dict[Cell, list] = {}
        todo: list[tuple[Cell, int, str, Prompt]] = []
        for cell in cells:
            items = subset_items(cell.subset, cell.n)
            params = request_params(prof, cell.score_range)
            prompts = [item_prompt(r, cell.form, cell.score_range) for r in items.to_dict("records")]
            keys = [call_key(fid, STORE_KIND, p, params) for p in prompts]
            found = store.get_many(keys)
            dists[cell] = [found.get(k) for k in keys]
            todo += [(cell, i, keys[i], prompts[i]) for i, k in enumerate(keys) if k not in found]
        if todo and prof.replay:
            c = todo[0][0]
            raise ReplayMiss(_miss_message(j, "score distributions", len(todo), sum(len(v) for v in dists.values()),
                                           prof, path) + f"; first missing: {c.form} {c.subset} {c.range_text} "
                             f"item {todo[0][1]}")
        if todo:
            model = live.get()
            bar = tqdm(total=len(todo), desc=f"exact scores {j.name}", unit="item", disable=not progress)
            batch = 1 if _is_llamacpp(model) else 8
            t0 = time.perf_counter()
            for start in range(0, len(todo), 8):
                chunk = todo[start : start + 8]
                by_range: dict[tuple[int, int], list[int]] = {}
                for k, (cell, *_rest) in enumerate(chunk):
                    by_range.setdefault(cell.score_range, []).append(k)
                rows = []
                for score_range, ks in by_range.items():
                    params = request_params(prof, score_range)
                    out = S.exact_distributions(model, [chunk[k][3] for k in ks], score_range,
                                                temperatures=prof.temperatures, decimals=params["decimals"],
                                                min_prob=prof.min_prob, max_lead=prof.max_lead, batch_prompts=batch)
                    for k, d in zip(ks, out):
                        cell, i, key, _ = chunk[k]
                        rows.append((key, f"{cell.subset}/{i}/{cell.form}/{cell.range_text}", encode_record(d)))
                stored = store.put_many(live.stored.fingerprint_id, STORE_KIND, rows)
                for cell, i, key, _ in chunk:
                    dists[cell][i] = stored[key]
                bar.update(len(chunk))
            bar.close()
            computed["records"] = len(todo)
            computed["seconds"] = time.perf_counter() - t0
        dists = {c: [decode_record(r) for r in recs] for c, recs in dists.items()}
        # --- sampled protocol (a): on the sampled subset; for a judge without exact scores, every cell ---
        samples = pd.DataFrame()
        jobs = [(prof.sampled_subset, n_sampled, DEFAULT_RANGE)] if n_sampled and j.exact else []
        if not j.exact:
            n_main, n_rng = prof.size(j.name, "main"), prof.size(j.name, "ranges")
            jobs = [(sub, n_main, DEFAULT_RANGE) for sub in prof.subsets if n_main]
            jobs += [(sub, n_rng, r) for r in prof.ranges for sub in prof.range_subsets if n_rng and j.aligned]
        frames = [_sampled(store, live, j, prof, name, fp, sub, n, r, computed, progress, path) for sub, n, r in jobs]
        if frames:
            samples = pd.concat(frames, ignore_index=True)
        if not prof.replay and (computed["records"] or computed["generations"]):
            compact_store(store)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            model = live.model
            store.set_meta(f"throughput:{prof.name}:{stamp}", {
                **computed, "seconds_per_item": computed["seconds"] / max(computed["records"], 1),
                "seconds_per_generation": computed["generate_seconds"] / max(computed["generations"], 1),
                "runtime": runtime_of(fp), "batch_prompts": 1 if model is not None and _is_llamacpp(model) else 8,
                "hardware": hardware(), "n_threads": _threads(prof), "load_1min": os.getloadavg()[0],
                "date": time.strftime("%Y-%m-%d")})
        runs = [{"name": k, **v} for k, v in _all_meta(store).items() if k.startswith(("run:", "throughput:"))]
    return JudgeRecords(j, dists, samples, name, fp, fid, runs, computed)


def _sampled(store: CallStore, live: _Live, j: Judge, prof: NumericalBiasProfile, name: str, fp: dict[str, Any],
             subset: str, n: int, score_range: tuple[int, int], computed: dict[str, Any], progress: bool,
             path: Path) -> pd.DataFrame:
    """The paper's protocol on the first ``n`` items of ``subset`` (main form): ``prof.samples`` generations
    each at T=0.7, through the store (replayed where stored)."""
    items = subset_items(subset, n)
    prompts = [item_prompt(r, j.main_form, score_range) for r in items.to_dict("records")]
    labels = [f"{subset}/{i}/{j.main_form}/{score_range[0]}-{score_range[1]}/sampled" for i in range(len(prompts))]
    t0 = time.perf_counter()
    before = store.count(kind="generate")
    # one item per call, whatever the backend: llama.cpp seeds every prompt of a call alike, so items sharing
    # a call would share their noise -- correlated draws across items (the transformers backend's sampler did
    # the same until prompt_seed: gemma-3-270m base with 8 items per call gave p = 4.5e-20 in the pooled
    # chi-square against the exact distributions); one item per call keeps stored records' keys unchanged
    per_call = 1
    kw = dict(n=prof.samples, labels=labels, decimals=prof.decimals, prompts_per_call=per_call)
    try:
        sm = StoredModel(None, store, replay=True, name=name, progress=False)
        samples = S.sample_scores(sm, prompts, score_range, **kw)
    except ReplayMiss:
        if prof.replay:
            raise ReplayMiss(_miss_message(j, f"sampled generations ({subset}, {score_range[0]}-{score_range[1]})",
                                           n * prof.samples, n * prof.samples, prof, path)) from None
        live.get()
        samples = S.sample_scores(live.stored, prompts, score_range, progress=progress, **kw)
        computed["generations"] += store.count(kind="generate") - before
        computed["generate_seconds"] += time.perf_counter() - t0
    return samples.assign(judge=j.name, form=j.main_form, subset=subset, lo=score_range[0], hi=score_range[1],
                          gold=items["gold"].to_numpy()[samples["item"].to_numpy()])


def sampled_cell_items(samples: pd.DataFrame, j: Judge) -> pd.DataFrame:
    """Item rows (as :func:`cell_items` makes them, T=0.7 only) from sampled outputs, for a judge without
    exact distributions: ``mean10`` the mean of the valid samples (the paper's score), ``single`` the first
    sample, ``valid`` the share of valid samples; ``expected`` is unknown (NaN)."""
    if samples.empty:
        return pd.DataFrame()
    rows = []
    for (subset, lo, hi), s in samples.groupby(["subset", "lo", "hi"], sort=False):
        agg = S.aggregate_samples(s).set_index("item")
        first = s.sort_values("sample").groupby("item")["value"].first()
        gold = s.groupby("item")["gold"].first()
        draws = s.sort_values("sample").groupby("item")["value"].apply(lambda v: v.to_numpy(float))
        rows.append(pd.DataFrame({
            "item": agg.index, "temperature": PAPER_T, "expected": np.nan, "mode": np.nan,
            "valid": (agg["n_valid"] / agg["n_samples"]).to_numpy(), "invalid": 1 - (agg["n_valid"] / agg["n_samples"]).to_numpy(),
            "unresolved": 0.0, "mean10": agg["score"].to_numpy(), "single": first.reindex(agg.index).to_numpy(),
            "n_valid10": agg["n_valid"].to_numpy(), "draws": list(draws.reindex(agg.index)),
            "gold": gold.reindex(agg.index).to_numpy(), "judge": j.name, "family": j.family, "stage": j.stage,
            "aligned": j.aligned, "form": j.main_form, "subset": subset, "lo": lo, "hi": hi,
            "kind": "main" if (lo, hi) == DEFAULT_RANGE else "ranges", "n_samples10": agg["n_samples"].to_numpy()}))
    return pd.concat(rows, ignore_index=True)


#: page size of the stores: a record (~1.3 KB) must fit in a B-tree page's local payload (a quarter of a page
#: in a WITHOUT ROWID table), or each one spills into an overflow page of its own (4 KB pages: 4 KB a record)
STORE_PAGE_SIZE = 16384


def compact_store(store: CallStore) -> None:
    """Rebuild a store with :data:`STORE_PAGE_SIZE` pages, packed (VACUUM): 1.06 MB -> 0.48 MB for 250 records.
    Skipped (the store stays as it is) where another connection holds the file."""
    import sqlite3

    conn = store.conn
    try:
        if conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0] != "delete":
            return
        if conn.execute("PRAGMA page_size").fetchone()[0] < STORE_PAGE_SIZE:
            conn.execute(f"PRAGMA page_size={STORE_PAGE_SIZE}")
        conn.execute("VACUUM")
    except sqlite3.OperationalError:
        pass
    finally:
        conn.execute("PRAGMA journal_mode=WAL")


def _all_meta(store: CallStore) -> dict[str, Any]:
    import json

    return {n: json.loads(v) for n, v in store.conn.execute("SELECT name, value FROM meta")}


# --- item-level scores -------------------------------------------------------------------------------------
def draw_samples(d: S.ScoreDistribution, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws of the paper's protocol from an exact distribution: a score, or NaN for an answer that is
    not a number (invalid and unresolved mass alike)."""
    p = np.append(d.probs, max(0.0, d.invalid + d.unresolved))
    values = np.append(d.scores, np.nan)
    return rng.choice(values, size=n, p=p / p.sum())


def cell_items(cell: Cell, dists: list[dict[float, S.ScoreDistribution]], j: Judge, samples: int = 10
               ) -> pd.DataFrame:
    """One row per (item, temperature) of a cell: ``expected, mode, valid, invalid, unresolved``, the
    ``mean10`` of ``samples`` draws (the paper's item score; NaN when none is valid), ``single`` (the first
    draw), ``n_valid10`` and the draws themselves (``draws``). Draws are seeded per cell and temperature."""
    items = subset_items(cell.subset, cell.n)
    rows = []
    temps = sorted(dists[0]) if dists else []
    for t in temps:
        rng = np.random.default_rng(_seed("draws", cell.judge, cell.form, cell.subset, cell.range_text, t))
        for i, by_t in enumerate(dists):
            d = by_t[t]
            draws = draw_samples(d, samples, rng)
            valid = np.isfinite(draws)
            rows.append({"item": i, "temperature": t, "expected": d.expected(), "mode": d.mode(),
                         "valid": d.valid, "invalid": d.invalid, "unresolved": d.unresolved,
                         "mean10": float(draws[valid].mean()) if valid.any() else np.nan, "single": draws[0],
                         "n_valid10": int(valid.sum()), "draws": draws})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["gold"] = items["gold"].to_numpy()[out["item"].to_numpy()]
    return out.assign(judge=j.name, family=j.family, stage=j.stage, aligned=j.aligned, form=cell.form,
                      subset=cell.subset, lo=cell.score_range[0], hi=cell.score_range[1], kind=cell.kind,
                      n_samples10=samples)


CELL_KEYS = ["judge", "family", "stage", "aligned", "form", "subset", "lo", "hi", "kind"]


# --- the results and their tables --------------------------------------------------------------------------
@dataclass
class NumericalBiasResults:
    """Everything the chapter shows, from the stores: item scores, sampled outputs, provenance; the tables
    are methods (each a DataFrame, written by :func:`write_tables` under the same names)."""

    profile: NumericalBiasProfile
    items: pd.DataFrame  # one row per (cell, item, temperature)
    samples: pd.DataFrame  # protocol (a): one row per (judge, item, sample)
    judges: pd.DataFrame  # provenance per judge
    costs: pd.DataFrame  # throughput records of the live runs
    n_resamples: int = N_RESAMPLES

    def shortfall(self) -> pd.DataFrame:
        """Per judge and kind of cell with fewer items than designed: items per cell and designed."""
        rows = [{"judge": j, "kind": k, "items_per_cell": have, "designed": want}
                for j, kinds in self.profile.shortfall().items() for k, (have, want) in kinds.items()]
        return pd.DataFrame(rows, columns=["judge", "kind", "items_per_cell", "designed"])

    # -- bias per cell --
    def bias(self) -> pd.DataFrame:
        """Per cell at T=0.7: kurtosis of the items' 10-sample means (the paper's statistic) and of single
        samples, Pearson r with gold, valid rate (exact valid mass per sample), modal share, each with its 95 %
        bootstrap interval (items resampled); mean invalid and unresolved mass."""
        return bias_per_cell(self.items, self.n_resamples)

    def histograms(self) -> pd.DataFrame:
        return histograms(self.items)

    def kurtosis_vs_r(self) -> pd.DataFrame:
        return kurtosis_vs_r(self.bias(), self.n_resamples)

    def mitigations(self) -> pd.DataFrame:
        return mitigations(self.items, self.n_resamples)

    def gold_kurtosis(self) -> pd.DataFrame:
        n = {s: int(self.items.loc[self.items["subset"] == s, "item"].nunique()) for s in self.profile.subsets}
        return gold_kurtosis(self.profile.subsets, n, self.n_resamples)

    def agreement(self) -> pd.DataFrame:
        return agreement(self.samples, self.items, self.profile)

    def valid_outputs(self) -> pd.DataFrame:
        return valid_outputs(self.samples, self.items)

    def claims(self) -> pd.DataFrame:
        return claims(self.items, self.bias(), self.kurtosis_vs_r(), self.mitigations(), self.n_resamples)

    def tables(self) -> dict[str, pd.DataFrame]:
        bias = self.bias()
        kr = kurtosis_vs_r(bias, self.n_resamples)
        mit = mitigations(self.items, self.n_resamples)
        return {"bias.csv": bias, "histograms.csv": self.histograms(), "kurtosis_vs_r.csv": kr,
                "mitigations.csv": mit, "gold_kurtosis.csv": self.gold_kurtosis(), "agreement.csv": self.agreement(),
                "valid_outputs.csv": self.valid_outputs(),
                "claims.csv": claims(self.items, bias, kr, mit, self.n_resamples), "judges.csv": self.judges,
                "costs.csv": self.costs, "shortfall.csv": self.shortfall()}


def _cell_frame(items: pd.DataFrame, t: float) -> pd.DataFrame:
    return items[np.isclose(items["temperature"], t)]


def bias_per_cell(items: pd.DataFrame, n_resamples: int = N_RESAMPLES, t: float = PAPER_T) -> pd.DataFrame:
    if items.empty:
        return pd.DataFrame()
    x = _cell_frame(items, t).assign(n_one=1.0)
    main = A.bias_table(x, by=CELL_KEYS, score="mean10", gold="gold", n_valid="valid", n_samples="n_one",
                        n_resamples=n_resamples)
    single = A.bias_table(x, by=CELL_KEYS, score="single", gold="gold", n_valid=None, n_samples=None,
                          n_resamples=n_resamples)
    keep = {c: c.replace("kurtosis", "kurtosis_single").replace("pearson_r", "pearson_r_single")
            for c in single.columns if c.startswith(("kurtosis", "pearson_r"))}
    single = single[CELL_KEYS + list(keep)].rename(columns=keep)
    out = main.merge(single, on=CELL_KEYS, how="left")
    extra = x.groupby(CELL_KEYS, sort=False).agg(mean_invalid=("invalid", "mean"), mean_unresolved=("unresolved", "mean"),
                                                 max_unresolved=("unresolved", "max"),
                                                 mean_score=("mean10", "mean")).reset_index()
    out = out.merge(extra, on=CELL_KEYS, how="left")
    return out.assign(temperature=t)


def histograms(items: pd.DataFrame, t: float = PAPER_T) -> pd.DataFrame:
    """Score counts per cell at T=0.7: ``what`` = ``mean10`` (items' 10-sample means, rounded to 0.01) and
    ``single`` (one sample per item; NaN score: not a number), ``mass`` (the exact per-sample distribution
    summed over items: expected counts), and ``gold`` rows per subset (``judge`` = ``gold``; the gold on its
    own scale in ``score``, and mapped linearly onto 0-10 in ``score_0_10``)."""
    if items.empty:
        return pd.DataFrame()
    x = _cell_frame(items, t)
    frames = []
    for kind in ("mean10", "single"):
        v = x.assign(score=x[kind].round(2))
        c = v.groupby(CELL_KEYS + ["score"], dropna=False, sort=True).size().rename("count").reset_index()
        frames.append(c.assign(what=kind))
    mass = []
    for keys, g in x.groupby(CELL_KEYS, sort=False):
        lo, hi = int(keys[CELL_KEYS.index("lo")]), int(keys[CELL_KEYS.index("hi")])
        dec = 1 if hi <= 10 else 0  # the grid the draws were taken on
        grid = np.round(lo + np.arange((hi - lo) * 10**dec + 1) / 10**dec, dec)
        counts = _mass(g, grid, dec)
        mass.append(pd.DataFrame({**dict(zip(CELL_KEYS, keys)), "score": grid, "count": counts, "what": "mass"}))
    frames += mass
    for subset in x["subset"].unique():
        items_s = x[(x["subset"] == subset)].drop_duplicates("item")
        g = _subset_table(subset)
        lo, hi = float(g["gold_scale_lo"].iloc[0]), float(g["gold_scale_hi"].iloc[0])
        v = items_s["gold"].round(4)
        c = v.value_counts().sort_index()
        frames.append(pd.DataFrame({"judge": "gold", "subset": subset, "score": c.index, "count": c.to_numpy(),
                                    "what": "gold", "score_0_10": (c.index - lo) / (hi - lo) * 10}))
    out = pd.concat(frames, ignore_index=True)
    return out[[*CELL_KEYS, "what", "score", "score_0_10", "count"]]


def _mass(g: pd.DataFrame, grid: np.ndarray, dec: int) -> np.ndarray:
    """Expected per-sample counts over the grid, summed over a cell's items, from the stored distributions
    (kept on the frame as ``dist`` where present; else estimated from the draws)."""
    if "dist" in g:
        return np.sum([d.probs for d in g["dist"]], axis=0)
    counts = np.zeros(len(grid))
    for draws in g["draws"]:
        v = draws[np.isfinite(draws)]
        k = np.rint((v - grid[0]) * 10**dec).astype(int)
        np.add.at(counts, k, 1.0 / len(draws))
    return counts


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return float("nan")
    return float(_st.pearsonr(x[keep], y[keep]).statistic)


def _boot_ci(values: np.ndarray, est: float, level: float = LEVEL) -> tuple[float, float, int]:
    v = values[np.isfinite(values)]
    if len(v) == 0 or not np.isfinite(est):
        return float("nan"), float("nan"), int(len(values) - len(v))
    a = (1 - level) / 2
    lo, hi = np.quantile(v, [a, 1 - a])
    return float(min(lo, est)), float(max(hi, est)), int(len(values) - len(v))


def kurtosis_vs_r(bias: pd.DataFrame, n_resamples: int = N_RESAMPLES) -> pd.DataFrame:
    """Pearson r (and Spearman rho) of kurtosis against Pearson r across the main and other-form cells at
    range 0-10 (the paper: -0.60), with a bootstrap interval resampling cells; per scope (every cell, each
    form, aligned judges only). Cells where either statistic is undefined are left out and counted."""
    cols = ["scope", "n_cells", "n_undefined_cells", "pearson", "pearson_low", "pearson_high", "spearman",
            "spearman_low", "spearman_high", "paper_pearson"]
    if bias.empty:
        return pd.DataFrame(columns=cols)
    b = bias[(bias["lo"] == DEFAULT_RANGE[0]) & (bias["hi"] == DEFAULT_RANGE[1])]
    scopes = {"all cells": b, "completion form": b[b["form"] == "completion"], "chat form": b[b["form"] == "chat"],
              "aligned judges": b[b["aligned"].astype(bool)]}
    rows = []
    rng_seed = _seed("kurtosis_vs_r")
    for scope, g in scopes.items():
        x, y = g["kurtosis"].to_numpy(float), g["pearson_r"].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        row: dict[str, Any] = {"scope": scope, "n_cells": int(ok.sum()), "n_undefined_cells": int((~ok).sum()),
                               "paper_pearson": PAPER_KURTOSIS_R}
        pe, sp = _pearson(x, y), (float(_st.spearmanr(x, y).statistic) if len(x) >= 3 else float("nan"))
        rng = np.random.default_rng(rng_seed)
        bp, bs = np.full(n_resamples, np.nan), np.full(n_resamples, np.nan)
        if len(x) >= 3:
            for b_ in range(n_resamples):
                k = rng.integers(0, len(x), len(x))
                bp[b_] = _pearson(x[k], y[k])
                if np.ptp(x[k]) > 0 and np.ptp(y[k]) > 0:
                    bs[b_] = _st.spearmanr(x[k], y[k]).statistic
        row["pearson"], (row["pearson_low"], row["pearson_high"], _) = pe, _boot_ci(bp, pe)
        row["spearman"], (row["spearman_low"], row["spearman_high"], _) = sp, _boot_ci(bs, sp)
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


# -- mitigations --
MITIGATION_BASELINE = "baseline (T=0.7, 10-sample mean)"


def _calibrated(g: pd.DataFrame, lo: int, hi: int, dec: int, seed: int) -> tuple[np.ndarray, str]:
    """Jiang et al. (2023) generative calibration on one cell at T=0.7: the marginal p(y) from 1,000 draws
    (random items, one draw each), a Beta target fitted by moments to them, each item's score the q/p-weighted
    mean of its 10 draws. Returns the item scores and a note (empty when it could be fitted)."""
    rng = np.random.default_rng(seed)
    draws = list(g["draws"])
    pick = rng.integers(0, len(draws), 1000)
    marginal = np.array([draws[k][rng.integers(0, len(draws[k]))] for k in pick])
    marginal = marginal[np.isfinite(marginal)]
    try:
        cal = A.fit_calibration(marginal, (lo, hi), decimals=dec)
    except ValueError as err:
        return np.full(len(g), np.nan), f"calibration not fitted: {err}"
    out = np.full(len(g), np.nan)
    for k, d in enumerate(draws):
        v = d[np.isfinite(d)]
        if len(v):
            w = cal.ratio(v)
            out[k] = float((w * v).sum() / w.sum())
    return out, f"Beta({cal.beta[0]:.3g}, {cal.beta[1]:.3g}) target; marginal of {cal.n_marginal} draws"


def mitigation_scores(items: pd.DataFrame) -> pd.DataFrame:
    """Item scores under every mitigation, per aligned judge, form and subset (one row per item and method):
    ``method``, ``family`` (baseline / temperature / calibration / range / expected), ``score``, ``gold``;
    ``scope`` ``all`` (the cell's items) or ``range items`` (the items the alternative ranges were scored on,
    every method on those same items, so that the range comparison is like with like)."""
    if items.empty:
        return pd.DataFrame()
    a = items[items["aligned"].astype(bool)]
    base = a[(a["lo"] == DEFAULT_RANGE[0]) & (a["hi"] == DEFAULT_RANGE[1])]
    keys = ["judge", "family", "stage", "form", "subset"]
    frames = []
    for k, g in base.groupby(keys, sort=False):
        kk = dict(zip(keys, k))
        g07 = g[np.isclose(g["temperature"], PAPER_T)].sort_values("item")

        def add(method: str, fam: str, scores, gold, item, note: str = "") -> None:
            frames.append(pd.DataFrame({**kk, "method": method, "method_family": fam, "score": scores, "gold": gold,
                                        "item": item, "note": note}))

        add(MITIGATION_BASELINE, "baseline", g07["mean10"].to_numpy(), g07["gold"].to_numpy(), g07["item"].to_numpy())
        for t in sorted(g["temperature"].unique()):
            if np.isclose(t, PAPER_T):
                continue
            gt = g[np.isclose(g["temperature"], t)].sort_values("item")
            add(f"temperature T={t:g}", "temperature", gt["mean10"].to_numpy(), gt["gold"].to_numpy(),
                gt["item"].to_numpy())
        cal, note = _calibrated(g07, *DEFAULT_RANGE, 1, _seed("calibration", *k))
        add("calibration (Jiang et al. 2023)", "calibration", cal, g07["gold"].to_numpy(), g07["item"].to_numpy(), note)
        ge = g[np.isclose(g["temperature"], EXPECTED_T)].sort_values("item")
        add(f"expected score (T={EXPECTED_T:g})", "expected", ge["expected"].to_numpy(), ge["gold"].to_numpy(),
            ge["item"].to_numpy())
        alt = a[(a["judge"] == kk["judge"]) & (a["form"] == kk["form"]) & (a["subset"] == kk["subset"])
                & np.isclose(a["temperature"], PAPER_T) & (a["kind"] == "ranges")]
        for (lo, hi), gr in alt.groupby(["lo", "hi"], sort=False):
            gr = gr.sort_values("item")
            add(f"range {lo}-{hi}", "range", gr["mean10"].to_numpy(), gr["gold"].to_numpy(), gr["item"].to_numpy())
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True).assign(scope="all")
    rng_items = out[out["method_family"] == "range"].groupby(keys)["item"].apply(lambda s: set(s))
    scoped = []
    for k, its in rng_items.items():
        m = np.ones(len(out), bool)
        for c, v in zip(keys, k):
            m &= (out[c] == v).to_numpy()
        sub = out[m & out["item"].isin(its).to_numpy()]
        scoped.append(sub.assign(scope="range items"))
    return pd.concat([out, *scoped], ignore_index=True)


def mitigations(items: pd.DataFrame, n_resamples: int = N_RESAMPLES) -> pd.DataFrame:
    """Kurtosis and Pearson r (95 % bootstrap intervals) of every mitigation (:func:`mitigation_scores`) per
    aligned judge, form, subset and scope; with the baseline's kurtosis and r beside each row."""
    ms = mitigation_scores(items)
    if ms.empty:
        return pd.DataFrame()
    by = ["scope", "judge", "family", "stage", "form", "subset", "method", "method_family"]
    t = A.bias_table(ms, by=by, score="score", gold="gold", n_valid=None, n_samples=None, n_resamples=n_resamples)
    notes = ms.groupby(by, sort=False)["note"].first().reset_index()
    t = t.merge(notes, on=by, how="left")
    base = t[t["method_family"] == "baseline"][["scope", "judge", "form", "subset", "kurtosis", "pearson_r"]]
    base = base.rename(columns={"kurtosis": "baseline_kurtosis", "pearson_r": "baseline_pearson_r"})
    return t.merge(base, on=["scope", "judge", "form", "subset"], how="left")


def gold_kurtosis(subsets: Sequence[str], n_sample: dict[str, int], n_resamples: int = N_RESAMPLES) -> pd.DataFrame:
    """Excess kurtosis of the gold: over the whole test split (what the paper reports) and over our sample of
    it, with bootstrap intervals, the paper's value beside."""
    rows = []
    for s in subsets:
        full = _subset_table(s)
        t_full = A.bias_table(full.assign(score=full["gold"]), score="score", gold=None, n_valid=None, n_samples=None,
                              n_resamples=n_resamples).iloc[0]
        n = n_sample.get(s, 0)
        samp = subset_items(s, n) if n else full.iloc[:0]
        k_s = A.excess_kurtosis(samp["gold"]) if n else float("nan")
        paper = PAPER_GOLD_KURTOSIS.get(s, float("nan"))
        rows.append({"subset": s, "n_full": len(full), "kurtosis_full": t_full["kurtosis"],
                     "kurtosis_full_low": t_full["kurtosis_low"], "kurtosis_full_high": t_full["kurtosis_high"],
                     "paper_kurtosis": paper,
                     "matches_paper_2dp": (bool(round(t_full["kurtosis"], 2) == paper) if np.isfinite(paper) else None),
                     "n_sample": n, "kurtosis_sample": k_s})
    return pd.DataFrame(rows)


def _pooled_chisquare(observed: np.ndarray, expected: np.ndarray, min_expected: float = 5.0) -> tuple[float, int]:
    order = np.argsort(expected)
    pe, po, ae, ao = [], [], 0.0, 0.0
    for k in order:
        ae, ao = ae + expected[k], ao + observed[k]
        if ae >= min_expected:
            pe.append(ae)
            po.append(ao)
            ae, ao = 0.0, 0.0
    if ae > 0 and pe:
        pe[-1] += ae
        po[-1] += ao
    if len(pe) < 2:
        return float("nan"), len(pe)
    pe_a = np.asarray(pe) * (sum(po) / sum(pe))
    return float(_st.chisquare(po, pe_a).pvalue), len(pe)


def agreement(samples: pd.DataFrame, items: pd.DataFrame, prof: NumericalBiasProfile) -> pd.DataFrame:
    """Protocol (a), sampled, against (b), exact, on the same items (main form, range 0-10, T=0.7): per judge,
    the valid rates (leading-number rule, which (b) describes, and the paper's first-number rule), a
    chi-square goodness of fit of all samples' scores (leading rule; rare scores pooled) against the exact
    distributions, the mean of the items' sampled means against the mean expected score, and the share of
    items whose sampled mean lies within the central 95 % of its exact mean distribution (about 0.95 when
    the two agree)."""
    cols = ["judge", "form", "subset", "n_items", "n_samples", "valid_rate_sampled_leading",
            "valid_rate_sampled_first", "valid_mass_exact", "chi2_p", "chi2_categories", "mean_sampled",
            "mean_exact", "mean_abs_diff", "pearson_sampled_exact", "share_within_95", "kurtosis_sampled",
            "kurtosis_exact_draws"]
    if samples.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for (jn, form, subset), s in samples.groupby(["judge", "form", "subset"], sort=False):
        x = items[(items["judge"] == jn) & (items["form"] == form) & (items["subset"] == subset)
                  & (items["lo"] == DEFAULT_RANGE[0]) & (items["hi"] == DEFAULT_RANGE[1])
                  & np.isclose(items["temperature"], PAPER_T)].sort_values("item")
        x = x[x["item"].isin(s["item"].unique())]
        if x.empty or "dist" not in x or x["dist"].isna().any():
            continue  # a judge without exact distributions (an API model): nothing to compare with
        dists = dict(zip(x["item"], x["dist"]))
        # chi-square over (score, invalid) categories pooled over items
        grid = next(iter(dists.values())).scores
        exp = np.zeros(len(grid) + 1)
        obs = np.zeros(len(grid) + 1)
        for i, g in s.groupby("item"):
            d = dists[i]
            exp[:-1] += d.probs * len(g)
            exp[-1] += (d.invalid + d.unresolved) * len(g)
            v = g["leading_value"].to_numpy(float)
            ok = np.isfinite(v)
            k = np.rint((v[ok] - grid[0]) * d.scale).astype(int)
            np.add.at(obs, k, 1)
            obs[-1] += (~ok).sum()
        p, ncat = _pooled_chisquare(obs, exp)
        agg = S.aggregate_samples(s, value="leading_value", status="leading_status").set_index("item")
        within = []
        for i, r in agg.iterrows():
            if not np.isfinite(r["score"]):
                continue
            md = dists[i].mean_distribution(prof.samples).dropna()
            cdf = np.cumsum(md["prob"].to_numpy()) / md["prob"].sum()
            m = md["mean"].to_numpy()
            lo_q = m[np.searchsorted(cdf, 0.025)]
            hi_q = m[min(np.searchsorted(cdf, 0.975), len(m) - 1)]
            within.append(lo_q - 1e-9 <= r["score"] <= hi_q + 1e-9)
        e = np.array([dists[i].expected() for i in agg.index])
        sm = agg["score"].to_numpy(float)
        ok = np.isfinite(sm) & np.isfinite(e)
        rows.append({"judge": jn, "form": form, "subset": subset, "n_items": s["item"].nunique(), "n_samples": len(s),
                     "valid_rate_sampled_leading": float(s["leading_status"].isin(S.VALID_STATUSES).mean()),
                     "valid_rate_sampled_first": float(s["status"].isin(S.VALID_STATUSES).mean()),
                     "valid_mass_exact": float(np.mean([dists[i].valid for i in agg.index])),
                     "chi2_p": p, "chi2_categories": ncat,
                     "mean_sampled": float(np.nanmean(sm)) if ok.any() else np.nan,
                     "mean_exact": float(np.mean(e[ok])) if ok.any() else np.nan,
                     "mean_abs_diff": float(np.mean(np.abs(sm[ok] - e[ok]))) if ok.any() else np.nan,
                     "pearson_sampled_exact": _pearson(sm, e), "share_within_95": float(np.mean(within)) if within
                     else np.nan, "kurtosis_sampled": A.excess_kurtosis(sm),
                     "kurtosis_exact_draws": A.excess_kurtosis(x["mean10"])})
    return pd.DataFrame(rows, columns=cols)


def valid_outputs(samples: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """Per judge and form: the sampled outputs counted by status under the paper's first-number rule (valid,
    clipped low / high, non-numeric, empty: nothing dropped unseen) and under the leading-number rule; and the
    exact masses over every main cell at T=0.7 (mean valid, invalid and unresolved mass per sample)."""
    rows = []
    if not samples.empty:
        for (jn, form), s in samples.groupby(["judge", "form"], sort=False):
            counts = s["status"].value_counts()
            lead = s["leading_status"].value_counts()
            rows.append({"judge": jn, "form": form, "source": "sampled", "n_outputs": len(s),
                         **{f"n_{st}": int(counts.get(st, 0)) for st in S.STATUSES},
                         "valid_rate": float(s["status"].isin(S.VALID_STATUSES).mean()),
                         "n_valid_leading": int(sum(lead.get(st, 0) for st in S.VALID_STATUSES)),
                         "valid_rate_leading": float(s["leading_status"].isin(S.VALID_STATUSES).mean()),
                         "example_non_numeric": next(iter(s.loc[s["status"] == "non_numeric", "text"]), None)})
    if not items.empty:
        x = items[np.isclose(items["temperature"], PAPER_T) & (items["lo"] == DEFAULT_RANGE[0])
                  & (items["hi"] == DEFAULT_RANGE[1])]
        for (jn, form), g in x.groupby(["judge", "form"], sort=False):
            rows.append({"judge": jn, "form": form, "source": "exact", "n_outputs": len(g),
                         "valid_rate": float(g["valid"].mean()), "mean_invalid_mass": float(g["invalid"].mean()),
                         "mean_unresolved_mass": float(g["unresolved"].mean()),
                         "max_unresolved_mass": float(g["unresolved"].max())})
    return pd.DataFrame(rows)


# -- claims --
def _verdict(low: float, high: float, want_positive: bool) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return "not measurable"
    if (low > 0) == want_positive and (low > 0 or high < 0):
        return "supported"
    if low > 0 or high < 0:
        return "contradicted"
    return "not resolved (interval includes 0)"


def paired_kurtosis_difference(a: pd.DataFrame, b: pd.DataFrame, n_resamples: int = N_RESAMPLES,
                               score: str = "mean10", seed: int = SEED) -> tuple[float, float, float, int]:
    """kurtosis(b) - kurtosis(a) over the items both scored, with a paired bootstrap (items resampled
    jointly). Returns (difference, low, high, n items)."""
    m = a[["item", score]].merge(b[["item", score]], on="item", suffixes=("_a", "_b"))
    xa, xb = m[f"{score}_a"].to_numpy(float), m[f"{score}_b"].to_numpy(float)
    est = A.excess_kurtosis(xb) - A.excess_kurtosis(xa)
    rng = np.random.default_rng(seed)
    boots = np.empty(n_resamples)
    for k in range(n_resamples):
        idx = rng.integers(0, len(m), len(m))
        boots[k] = A.excess_kurtosis(xb[idx]) - A.excess_kurtosis(xa[idx])
    lo, hi, _ = _boot_ci(boots, est)
    return est, lo, hi, len(m)


def claims(items: pd.DataFrame, bias: pd.DataFrame, kr: pd.DataFrame, mit: pd.DataFrame,
           n_resamples: int = N_RESAMPLES) -> pd.DataFrame:
    """The paper's claims beside ours, with a verdict each: ``claim, scope, paper, ours, low, high, n,
    verdict, detail``. Verdicts read intervals: ``supported`` where the interval lies on the paper's side,
    ``contradicted`` where it lies on the other, ``not resolved`` where it spans no effect, ``not run``
    where the cells are missing."""
    rows: list[dict[str, Any]] = []
    cols = ["claim", "criterion", "scope", "paper", "ours", "low", "high", "n", "verdict", "detail"]
    x = _cell_frame(items, PAPER_T) if not items.empty else items
    # 1. alignment raises kurtosis: gemma-3-270m base -> sft -> dpo, same items, completion form
    paper1 = "Gemma-7B En-De {} -> {}".format(*PAPER_HEADLINE_EN_DE["gemma-7b"])
    stages = {}
    if not x.empty:
        g = x[(x["family"] == "gemma-3-270m") & (x["form"] == "completion") & (x["kind"] == "main")]
        stages = {st: gg for st, gg in g.groupby("stage")}
    for later in ("sft", "dpo"):
        for subset in SUBSETS:
            scope = f"gemma-3-270m base -> {later}, {subset}"
            if "base" not in stages or later not in stages:
                rows.append({"claim": "alignment raises kurtosis", "scope": scope, "paper": paper1, "ours": np.nan,
                             "low": np.nan, "high": np.nan, "n": 0, "verdict": "not run",
                             "detail": f"stage(s) {[s for s in ('base', later) if s not in stages]} not scored"})
                continue
            a, b = stages["base"], stages[later]
            a, b = a[a["subset"] == subset], b[b["subset"] == subset]
            if a.empty or b.empty:
                continue
            d, lo, hi, n = paired_kurtosis_difference(a, b, n_resamples, seed=_seed("claim1", later, subset))
            rows.append({"claim": "alignment raises kurtosis", "scope": scope, "paper": paper1, "ours": d, "low": lo,
                         "high": hi, "n": n, "verdict": _verdict(lo, hi, True),
                         "detail": f"kurtosis {A.excess_kurtosis(a['mean10']):.3g} -> {A.excess_kurtosis(b['mean10']):.3g}"
                                   " (difference, paired item bootstrap)"})
    # 2. stronger bias goes with lower r
    r = kr[kr["scope"] == "all cells"] if not kr.empty else kr
    if len(r):
        r = r.iloc[0]
        rows.append({"claim": "stronger bias goes with lower r", "scope": "all cells, range 0-10",
                     "paper": PAPER_KURTOSIS_R, "ours": r["pearson"], "low": r["pearson_low"], "high": r["pearson_high"],
                     "n": r["n_cells"], "verdict": _verdict(r["pearson_low"], r["pearson_high"], False),
                     "detail": f"Spearman {r['spearman']:.3g} [{r['spearman_low']:.3g}, {r['spearman_high']:.3g}]"})
    # 3. score range is the best mitigation, per aligned judge x form x subset, on the items every method scored:
    #    by Pearson r with the gold (performance) and by the lowest kurtosis (the paper's bias measure)
    if not mit.empty:
        m = mit[mit["scope"] == "range items"]
        for (jn, form, subset), g in m.groupby(["judge", "form", "subset"], sort=False):
            base = g[g["method_family"] == "baseline"]
            for criterion, col, pick in (("r", "pearson_r", "idxmax"), ("kurtosis", "kurtosis", "idxmin")):
                best = {}
                for fam in ("temperature", "calibration", "range"):
                    gf = g[(g["method_family"] == fam) & np.isfinite(g[col])]
                    if len(gf):
                        best[fam] = gf.loc[getattr(gf[col], pick)()]
                if "range" not in best or len(best) < 2:
                    continue
                sign = 1 if criterion == "r" else -1
                winner = max(best, key=lambda f: sign * best[f][col])
                other = max((f for f in best if f != "range"), key=lambda f: sign * best[f][col])
                rb, ob = best["range"], best[other]
                overlap = rb[f"{col}_low"] <= ob[col] <= rb[f"{col}_high"]
                verdict = ("supported" if winner == "range" else "contradicted") + (
                    " (point estimates; the runner-up lies inside the range's interval)" if overlap else "")
                bv = float(base[col].iloc[0]) if len(base) else float("nan")
                rows.append({"claim": "score range is the best mitigation", "criterion": criterion,
                             "scope": f"{jn}, {form}, {subset}",
                             "paper": "range best of temperature / calibration / range", "ours": rb[col],
                             "low": rb[f"{col}_low"], "high": rb[f"{col}_high"], "n": int(rb["n_items"]),
                             "verdict": verdict,
                             "detail": f"{'highest r' if criterion == 'r' else 'lowest kurtosis'}: {best[winner]['method']} "
                                       f"({best[winner][col]:.3g}); best range: {rb['method']} ({rb[col]:.3g}); best "
                                       f"non-range: {ob['method']} ({ob[col]:.3g}); baseline {bv:.3g}"})
    # 4. high-resource pairs more biased: mean kurtosis (en-de, en-zh) - mean (ne-en, si-en), per judge x form
    if not x.empty:
        main = x[(x["kind"].isin(["main", "other_form"])) & (x["lo"] == 0) & (x["hi"] == 10)]
        for (jn, form), g in main.groupby(["judge", "form"], sort=False):
            have = set(g["subset"])
            if not (set(HIGH_RESOURCE) | set(LOW_RESOURCE)) <= have:
                continue
            d, lo, hi, n = _resource_difference(g, n_resamples, _seed("claim4", jn, form))
            rows.append({"claim": "high-resource pairs more biased", "scope": f"{jn}, {form}",
                         "paper": "kurtosis En-De, En-Zh > Ne-En, Si-En", "ours": d, "low": lo, "high": hi, "n": n,
                         "verdict": _verdict(lo, hi, True),
                         "detail": "mean kurtosis of en-de, en-zh minus that of ne-en, si-en (items resampled per pair)"})
    return pd.DataFrame(rows, columns=cols)


def _resource_difference(g: pd.DataFrame, n_resamples: int, seed: int) -> tuple[float, float, float, int]:
    vals = {s: g[g["subset"] == s]["mean10"].to_numpy(float) for s in (*HIGH_RESOURCE, *LOW_RESOURCE)}

    def stat(v: dict[str, np.ndarray]) -> float:
        return (np.mean([A.excess_kurtosis(v[s]) for s in HIGH_RESOURCE])
                - np.mean([A.excess_kurtosis(v[s]) for s in LOW_RESOURCE]))

    est = stat(vals)
    rng = np.random.default_rng(seed)
    boots = np.empty(n_resamples)
    for k in range(n_resamples):
        boots[k] = stat({s: v[rng.integers(0, len(v), len(v))] for s, v in vals.items()})
    lo, hi, _ = _boot_ci(boots, est)
    return est, lo, hi, int(sum(len(v) for v in vals.values()))


# --- running -----------------------------------------------------------------------------------------------
def run_numerical_bias(profile: str | NumericalBiasProfile = "book", results_dir: Path | str | None = None,
                       progress: bool = True, n_resamples: int = N_RESAMPLES) -> NumericalBiasResults:
    """Score (or replay) every active judge of ``profile`` and return the results object the chapter reads."""
    prof = numerical_bias_profile(profile)
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(prof.name)
    active = prof.active_judges()
    if not active:
        raise ValueError(f"numerical-bias profile {prof.name!r} has no judge with items (caps: {prof.caps})")
    frames, samples, judges, costs = [], [], [], []
    for name in active:
        j = judge(name)
        rec = judge_records(j, prof, results_dir, progress)
        for cell, dists in rec.dists.items():
            f = cell_items(cell, dists, j, prof.samples)
            if not f.empty:
                f["dist"] = _dist_column(f, dists)
                frames.append(f)
        if not rec.samples.empty:
            samples.append(rec.samples)
            if not j.exact:
                frames.append(sampled_cell_items(rec.samples, j))
        fp = rec.fingerprint
        hw = sorted({str(r.get("hardware")) for r in rec.runs if r.get("hardware")})
        dates = sorted({str(r.get("date")) for r in rec.runs if r.get("date")})
        judges.append({"judge": j.name, "family": j.family, "stage": j.stage, "aligned": j.aligned, "spec": j.spec,
                       "forms": " ".join(j.forms), "model_name": rec.model_name, "fingerprint_id": rec.fingerprint_id,
                       "runtime": runtime_of(fp), "gguf_sha256": fp.get("gguf_sha256"),
                       "quantisation": fp.get("quantisation"),
                       "adapters_sha256": " ".join(str(a.get("sha256") or a.get("adapter_sha256") or a)
                                                   for a in fp.get("adapters", ())) or None,
                       "items_per_main_cell": prof.size(j.name, "main"), "hardware": "; ".join(hw),
                       "dates": " ".join(dates), "profile": prof.name})
        for r in rec.runs:
            if r["name"].startswith("throughput:"):
                costs.append({"judge": j.name, **{k: v for k, v in r.items() if k != "name"}, "record": r["name"]})
    items = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    samp = pd.concat(samples, ignore_index=True) if samples else pd.DataFrame()
    return NumericalBiasResults(prof, items, samp, pd.DataFrame(judges), pd.DataFrame(costs), n_resamples)


def _dist_column(f: pd.DataFrame, dists: list[dict[float, S.ScoreDistribution]]) -> list[S.ScoreDistribution]:
    return [dists[int(i)][float(t)] for i, t in zip(f["item"], f["temperature"])]


def write_tables(profile: str | NumericalBiasProfile = "book", results_dir: Path | str | None = None,
                 progress: bool = True) -> dict[str, Path]:
    """Run or replay ``profile`` and write its tables (each atomically) into ``results_dir``."""
    prof = numerical_bias_profile(profile)
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(prof.name)
    res = run_numerical_bias(prof, results_dir, progress)
    paths = write_csvs(res.tables(), results_dir)
    if prof.name == "book":  # the sizes these tables hold: what the book profile replays
        import json

        from judgelab.paths import atomic_write

        caps = {j: {k: prof.size(j, k) for k in KINDS if prof.size(j, k)} for j in prof.active_judges()}
        with atomic_write(results_dir / CAPS_FILE, encoding="utf-8") as fh:
            json.dump({"caps": caps, "note": "written by judgelab.experiments.numerical_bias.run.write_tables; "
                       "the book profile replays these sizes"}, fh, indent=1, sort_keys=True)
        paths[CAPS_FILE] = results_dir / CAPS_FILE
    return paths

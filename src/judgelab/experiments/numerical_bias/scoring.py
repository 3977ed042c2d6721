"""A judge's numeric score for an item, two ways: sampled as the paper did, and exact.

**(a) The paper's protocol** (Sato et al. 2026, as summarised in the issue): draw 10 outputs at temperature T
(0.7 by default) with at most 5 new tokens, parse a number from each, drop the non-numeric ones, clip the
out-of-range ones to the range, and average what is left. :func:`sample_scores` keeps every sample with its
text and status (``valid``, ``clipped_low``, ``clipped_high``, ``non_numeric``, ``empty``), so invalid
outputs are counted and shown, never silently dropped; :func:`aggregate_samples` gives the item scores.

**(b) Exact**: the judge's whole distribution over the score it starts its answer with, read from its
next-token probabilities (:func:`exact_distributions`). These tokenizers split numbers into one-digit (or
one-to-three-digit) tokens, so the probability of "10" is P("1") * P("0" | "1") * P(number ends | "10").
We enumerate the digit continuations breadth-first, one batched forward pass per depth (the backends reuse
the prompt's key/value cache across the continuations of one prompt), and the probability that the number
ends is the mass on every non-digit token. The enumeration is bounded and exact within its bounds:

* a continuation whose number already exceeds the range's top is not expanded: every answer that starts
  with it is clipped to the top, whatever follows;
* a branch whose probability is below ``min_prob`` (under every requested temperature), a number with more
  characters than the range's top (leading zeros), or more than ``max_lead`` whitespace tokens before the
  number, is not expanded either: its mass is reported as ``unresolved``, a certified bound on the error;
* decimals are followed to a fixed resolution (``decimals=1`` by default: "7.85" is 7.8; small models
  write "0.98" and "4.74" often): digits past it do not change the score, so they are not enumerated. The
  distribution is exact for the number truncated to that resolution;
* an answer that does not start with a number (after optional whitespace) is ``invalid``. The paper's
  parser takes the first number anywhere in the 5 tokens ("Score: 8" counts as 8), so (b) describes the
  answers that *begin* with the score; :func:`parse_score` with ``rule="leading_number"`` applies the same
  rule to samples, and every sample records both parses, so the gap is measured, not assumed.

From (b) follow without sampling noise: the expected score (:meth:`ScoreDistribution.expected`, what G-Eval
and Self-J use), the distribution of the mean of n samples (:meth:`ScoreDistribution.mean_distribution`, by
convolution), and any temperature. Temperature acts per token step -- sampling at T draws each token from
``softmax(logits / T)`` -- so a tempered score distribution is *not* the T=1 score distribution raised to
1/T: each step's whole-vocabulary distribution is re-tempered, which needs the full next-token vectors. They
are at hand only during the enumeration, so the temperatures are requested up front (``temperatures=``)
and all of them are computed from the same forward passes. (a) and (b) agree within sampling error when
sampling is plain tempered sampling over the whole vocabulary (no top-k / top-p / min-p truncation, which
llama.cpp applies by default): ``tests/test_numerical_bias_scoring.py`` checks it on a real model.

The model side is a small protocol (:class:`NextTokenModel`): ``encode(prompt) -> token ids`` and
``next_token_logprobs(id_lists) -> [n, vocab]`` log-probabilities, plus a :class:`TokenTable` telling which
tokens are digits (built from the model's Hugging Face tokenizer, or from its ``token_pieces()``).
:class:`~judgelab.models.transformers_backend.TransformersModel` and
:class:`~judgelab.models.llamacpp_backend.LlamaCppModel` satisfy it as they are; any backend that returns
whole-vocabulary next-token log-probabilities can. (On smollm2-135m-instruct's Q4_1 GGUF the two backends'
exact distributions for an MTQE item differ by a total variation of 0.02: llama.cpp computes with the
quantised weights, transformers with their float32 dequantisation.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from scipy import stats as _st
from scipy.special import logsumexp

from judgelab.models.base import GenerationConfig, Prompt
from judgelab.prompts.sato2026 import check_range

#: The paper's sampling protocol.
PAPER_SAMPLES = 10
PAPER_TEMPERATURE = 0.7
PAPER_MAX_NEW_TOKENS = 5

STATUSES: tuple[str, ...] = ("valid", "clipped_low", "clipped_high", "non_numeric", "empty")
VALID_STATUSES: tuple[str, ...] = ("valid", "clipped_low", "clipped_high")


# --- (a) parsing and sampling ---------------------------------------------------------------------------------
_FIRST_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_LEADING_NUMBER = re.compile(r"\s*([0-9]+)(?:\.([0-9]+))?")
RULES: tuple[str, ...] = ("first_number", "leading_number")


@dataclass(frozen=True)
class ParsedScore:
    """One output's score: ``value`` after clipping (None when invalid), ``raw`` the number as written."""

    value: float | None
    raw: float | None
    status: str


def parse_score(text: str, score_range: tuple[int, int], rule: str = "first_number", decimals: int = 1
                ) -> ParsedScore:
    """Parse one judge output into a score on ``score_range``, clipping out-of-range numbers.

    ``rule="first_number"`` (the paper's, as far as it is known; GEMBA's parser likewise looks for digits
    anywhere): the first number in the text, decimals allowed ("8.5"), no sign. ``rule="leading_number"``:
    the number the text starts with after optional whitespace, truncated to ``decimals`` places -- exactly
    what the exact distribution (b) describes at that resolution ("7.85" is 7.8 at ``decimals=1``).
    ASCII digits only in both.
    """
    lo, hi = check_range(score_range)
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, not {rule!r}")
    if not text.strip():
        return ParsedScore(None, None, "empty")
    m = _FIRST_NUMBER.search(text) if rule == "first_number" else _LEADING_NUMBER.match(text)
    if m is None:
        return ParsedScore(None, None, "non_numeric")
    if rule == "first_number":
        raw = float(m.group(0))
    else:
        frac = (m.group(2) or "")[:decimals]
        raw = float(f"{m.group(1)}.{frac}") if frac else float(m.group(1))
    if raw < lo:
        return ParsedScore(float(lo), raw, "clipped_low")
    if raw > hi:
        return ParsedScore(float(hi), raw, "clipped_high")
    return ParsedScore(raw, raw, "valid")


def sample_scores(
    model: Any,
    prompts: Sequence[Prompt],
    score_range: tuple[int, int],
    *,
    n: int = PAPER_SAMPLES,
    temperature: float = PAPER_TEMPERATURE,
    max_new_tokens: int = PAPER_MAX_NEW_TOKENS,
    seed: int = 0,
    labels: Sequence[str] | None = None,
    rule: str = "first_number",
    decimals: int = 1,
    prompts_per_call: int = 1,
    progress: bool = False,
) -> pd.DataFrame:
    """The paper's sampling, one row per (item, sample): nothing is dropped here.

    Seeds. Every item gets its own seed per sample: item ``i``'s sample ``j`` comes from a
    ``model.generate`` call with seed ``seed + g * n + j``, where ``g = i // prompts_per_call``. Distinct
    seeds make the ten samples of an item distinct calls in a :class:`~judgelab.store.StoredModel` (the
    same prompt and config would otherwise be answered from one stored output ten times), and one prompt
    per call (the default) keeps different items' samples independent whatever the backend: llama.cpp seeds
    every prompt of a call with the call's seed, so prompts sharing a call would share random streams --
    correlated draws across items, which distort a dataset-level statistic such as kurtosis even though
    each item's own distribution is right. The transformers backend mixes each prompt's tokens into its seed
    (:func:`~judgelab.models.transformers_backend.prompt_seed`), so there ``prompts_per_call > 1`` is
    independent too; before that fix (1 Dec 2026) it was not.

    ``labels`` (one per prompt) are passed on to a store as ``<label>/s<j>``. Columns: ``item`` (position in
    ``prompts``), ``sample``, ``seed``, ``text``, ``value`` (clipped score or NaN), ``raw`` (number as
    written), ``status`` (under ``rule``), ``leading_value`` and ``leading_status`` (under
    ``rule="leading_number"`` at ``decimals``, comparable with the exact distribution).
    """
    check_range(score_range)
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 for sampling, not {temperature}")
    if prompts_per_call < 1:
        raise ValueError(f"prompts_per_call must be at least 1, not {prompts_per_call}")
    if labels is not None and len(labels) != len(prompts):
        raise ValueError(f"{len(labels)} labels for {len(prompts)} prompts")
    from tqdm.auto import tqdm

    groups = [range(s, min(s + prompts_per_call, len(prompts))) for s in range(0, len(prompts), prompts_per_call)]
    rows = []
    bar = tqdm(total=len(groups) * n, desc="sample scores", unit="call", disable=not progress)
    for g, members in enumerate(groups):
        for j in range(n):
            config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed + g * n + j)
            kwargs = {} if labels is None else {"labels": [f"{labels[i]}/s{j}" for i in members]}
            texts = model.generate([prompts[i] for i in members], config, **kwargs)
            if len(texts) != len(members):
                raise RuntimeError(f"{model!r} returned {len(texts)} outputs for {len(members)} prompts")
            for i, text in zip(members, texts):
                p = parse_score(text, score_range, rule)
                q = parse_score(text, score_range, "leading_number", decimals)
                rows.append({"item": i, "sample": j, "seed": config.seed, "text": text,
                             "value": np.nan if p.value is None else p.value,
                             "raw": np.nan if p.raw is None else p.raw, "status": p.status,
                             "leading_value": np.nan if q.value is None else q.value, "leading_status": q.status})
            bar.update(1)
    bar.close()
    return pd.DataFrame(rows).sort_values(["item", "sample"], ignore_index=True)


def aggregate_samples(samples: pd.DataFrame, by: Sequence[str] = ("item",), value: str = "value",
                      status: str = "status") -> pd.DataFrame:
    """Per item: the paper's score (mean of its valid, clipped samples; NaN when none is valid) and counts.

    Columns: ``*by, score, n_samples, n_valid, n_clipped, n_non_numeric, n_empty``.
    """
    by = list(by)
    unknown = sorted(set(samples[status]) - set(STATUSES))
    if unknown:
        raise ValueError(f"unknown statuses {unknown} in column {status!r}")
    g = samples.groupby(by, sort=True)
    out = g[value].mean().rename("score").to_frame()  # NaN values (invalid samples) are skipped by mean()
    out["n_samples"] = g.size()
    counts = pd.crosstab([samples[c] for c in by], samples[status]).reindex(columns=list(STATUSES), fill_value=0)
    out["n_valid"] = counts[list(VALID_STATUSES)].sum(axis=1)
    out["n_clipped"] = counts["clipped_low"] + counts["clipped_high"]
    out["n_non_numeric"] = counts["non_numeric"]
    out["n_empty"] = counts["empty"]
    return out.reset_index()


# --- (b) exact: the token table ------------------------------------------------------------------------------
_DIGITS = re.compile(r"(\s*)([0-9]+)")
_MIXED = re.compile(r"(\s*)([0-9]+)([^0-9].*)", re.DOTALL)
_DOT_DIGITS = re.compile(r"\.([0-9]+)")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class TokenTable:
    """Which tokens of a vocabulary continue, start or end a number.

    Built from each token's text (:meth:`from_pieces`):

    * ``digit_*``: ASCII digits, possibly after whitespace (" 8", "10");
    * ``mixed_*``: digits followed by something else in one token ("5.", "3)"): they write their digits and
      end the integer part (``mixed_dot``: the something else is exactly ".", a possible decimal point);
    * ``dot_ids``: the token "."; ``dot_digit_*``: a point and digits in one token (".5");
    * ``space_ids``: whitespace-only tokens, allowed before the number.

    Every other token (words, punctuation, special tokens such as end-of-sequence) ends a number that has
    begun and makes an answer that has not begun invalid.
    """

    size: int
    digit_ids: np.ndarray
    digit_text: tuple[str, ...]
    digit_lead: np.ndarray
    mixed_ids: np.ndarray
    mixed_text: tuple[str, ...]
    mixed_lead: np.ndarray
    mixed_dot: np.ndarray
    dot_ids: np.ndarray
    dot_digit_ids: np.ndarray
    dot_digit_text: tuple[str, ...]
    space_ids: np.ndarray
    other_mask: np.ndarray = field(repr=False)

    @classmethod
    def from_pieces(cls, pieces: Sequence[str]) -> TokenTable:
        """``pieces[i]`` is the text token ``i`` adds when it follows other text (leading spaces kept)."""
        digit, mixed, dot, dot_digit, space = [], [], [], [], []
        for i, s in enumerate(pieces):
            if (m := _DIGITS.fullmatch(s)) is not None:
                digit.append((i, m.group(2), bool(m.group(1))))
            elif (m := _MIXED.fullmatch(s)) is not None:
                mixed.append((i, m.group(2), bool(m.group(1)), m.group(3) == "."))
            elif s == ".":
                dot.append(i)
            elif (m := _DOT_DIGITS.fullmatch(s)) is not None:
                dot_digit.append((i, m.group(1)))
            elif s and _SPACE.fullmatch(s):
                space.append(i)
        other = np.ones(len(pieces), dtype=bool)
        for ids in ([d[0] for d in digit], [d[0] for d in mixed], dot, [d[0] for d in dot_digit], space):
            other[np.asarray(ids, dtype=int)] = False
        return cls(
            size=len(pieces),
            digit_ids=np.asarray([d[0] for d in digit], dtype=int),
            digit_text=tuple(d[1] for d in digit),
            digit_lead=np.asarray([d[2] for d in digit], dtype=bool),
            mixed_ids=np.asarray([d[0] for d in mixed], dtype=int),
            mixed_text=tuple(d[1] for d in mixed),
            mixed_lead=np.asarray([d[2] for d in mixed], dtype=bool),
            mixed_dot=np.asarray([d[3] for d in mixed], dtype=bool),
            dot_ids=np.asarray(dot, dtype=int),
            dot_digit_ids=np.asarray([d[0] for d in dot_digit], dtype=int),
            dot_digit_text=tuple(d[1] for d in dot_digit),
            space_ids=np.asarray(space, dtype=int),
            other_mask=other,
        )

    @classmethod
    def from_hf_tokenizer(cls, tokenizer: Any, vocab_size: int | None = None) -> TokenTable:
        """Pieces of a Hugging Face tokenizer, each decoded after an anchor token so that a leading space
        survives (SentencePiece drops it at the start of a text); special tokens keep their names, so they
        count as 'other'. ``vocab_size``: the model's output width, when larger than the tokenizer's."""
        anchor = tokenizer("a", add_special_tokens=False)["input_ids"]
        if len(anchor) != 1:
            raise ValueError(f"cannot find a one-token anchor for {tokenizer.name_or_path}")
        n = len(tokenizer)
        prefix = tokenizer.decode(anchor)
        texts = tokenizer.batch_decode([[anchor[0], i] for i in range(n)], skip_special_tokens=False,
                                       clean_up_tokenization_spaces=False)
        pieces = [t[len(prefix):] if t.startswith(prefix) else t for t in texts]
        if vocab_size is not None and vocab_size > n:
            pieces += ["<unused>"] * (vocab_size - n)
        return cls.from_pieces(pieces)


@runtime_checkable
class NextTokenModel(Protocol):
    """What the exact method needs from a backend (TransformersModel and LlamaCppModel have both)."""

    def encode(self, prompt: Prompt) -> list[int]: ...

    def next_token_logprobs(self, id_lists: Sequence[Sequence[int]]) -> Any: ...


_TABLES: dict[int, TokenTable] = {}


def token_table(model: Any, vocab_size: int | None = None) -> TokenTable:
    """The :class:`TokenTable` of a model: from ``model.token_pieces()`` if it has one, else from its Hugging
    Face ``model.tokenizer``. Cached per tokenizer object (building it decodes the whole vocabulary)."""
    if hasattr(model, "token_pieces"):
        key = id(model)
        if key not in _TABLES:
            _TABLES[key] = TokenTable.from_pieces(model.token_pieces())
        return _TABLES[key]
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        raise TypeError(f"{type(model).__name__} has neither token_pieces() nor a tokenizer")
    key = id(tok)
    if key not in _TABLES or (vocab_size is not None and _TABLES[key].size < vocab_size):
        _TABLES[key] = TokenTable.from_hf_tokenizer(tok, vocab_size)
    return _TABLES[key]


# --- (b) exact: distributions --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScoreDistribution:
    """A judge's distribution over the score its answer starts with, for one item at one temperature.

    Scores lie on the grid ``lo, lo + 10**-decimals, ..., hi`` (the number truncated to ``decimals``
    places). ``probs[k]`` is P(score = scores[k]) *after clipping*, as the paper's protocol assigns it:
    numbers below the range count at ``lo`` (their mass is also given as ``below``), numbers above it at
    ``hi`` (``above``). ``invalid``: answers that do not start with a number. ``unresolved``: mass the
    bounded enumeration did not follow (module docstring). ``probs.sum() + invalid + unresolved == 1``.
    """

    score_range: tuple[int, int]
    temperature: float
    probs: np.ndarray
    below: float
    above: float
    invalid: float
    unresolved: float
    decimals: int = 0
    evaluations: int = 0

    def __post_init__(self) -> None:
        lo, hi = self.score_range
        if len(self.probs) != (hi - lo) * 10**self.decimals + 1:
            raise ValueError(f"{len(self.probs)} probabilities for range {self.score_range} at {self.decimals} "
                             "decimals")

    @property
    def scale(self) -> int:
        return 10**self.decimals

    @property
    def scores(self) -> np.ndarray:
        lo, _ = self.score_range
        return lo + np.arange(len(self.probs)) / self.scale

    @property
    def valid(self) -> float:
        """Probability that the answer starts with a number (clipped ones included)."""
        return float(self.probs.sum())

    @property
    def total(self) -> float:
        return self.valid + self.invalid + self.unresolved

    def conditional(self) -> np.ndarray:
        """P(score | the answer is a number): what the paper's mean averages over."""
        v = self.valid
        return self.probs / v if v > 0 else np.full(len(self.probs), np.nan)

    def expected(self) -> float:
        """E[score | valid]: the expected score (G-Eval's weighted score), and the expectation of the paper's
        n-sample mean given at least one valid sample. NaN when no mass is valid."""
        return float(self.conditional() @ self.scores) if self.valid > 0 else float("nan")

    def mode(self) -> float | None:
        """The most probable score (None when no mass is valid)."""
        return float(self.scores[int(np.argmax(self.probs))]) if self.valid > 0 else None

    def mean_distribution(self, n: int = PAPER_SAMPLES) -> pd.DataFrame:
        """Exact distribution of the paper's item score: the mean of the valid ones among ``n`` samples.

        The number of valid samples k is Binomial(n, valid) (unresolved mass counts as not valid: an upper
        bound on the error is ``n * unresolved``); given k, the sum of k valid scores is the k-fold
        convolution of :meth:`conditional`. Equal means from different k (8 = 80/10 = 72/9) are merged
        exactly (as fractions). Columns ``mean, prob``, sorted by ``mean``; a last row with ``mean`` NaN holds
        the probability that no sample is valid (the item then has no score).
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, not {n}")
        lo, _ = self.score_range
        p_valid = min(1.0, self.valid)
        acc: dict[Fraction, float] = {}
        if p_valid > 0:
            q = self.conditional()
            conv = np.array([1.0])
            for k in range(1, n + 1):
                conv = np.convolve(conv, q)
                pk = float(_st.binom.pmf(k, n, p_valid))
                if pk == 0.0:
                    continue
                for s in np.flatnonzero(conv > 0):
                    key = Fraction(int(s), k * self.scale) + lo
                    acc[key] = acc.get(key, 0.0) + pk * float(conv[s])
        rows = [{"mean": float(m), "prob": p} for m, p in sorted(acc.items())]
        rows.append({"mean": np.nan, "prob": float((1 - p_valid) ** n)})
        return pd.DataFrame(rows)

    def to_record(self) -> dict[str, Any]:
        return {"score_range": list(self.score_range), "temperature": self.temperature,
                "probs": [float(p) for p in self.probs], "below": self.below, "above": self.above,
                "invalid": self.invalid, "unresolved": self.unresolved, "decimals": self.decimals,
                "evaluations": self.evaluations}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> ScoreDistribution:
        return cls(tuple(rec["score_range"]), float(rec["temperature"]), np.asarray(rec["probs"], dtype=float),
                   float(rec["below"]), float(rec["above"]), float(rec["invalid"]), float(rec["unresolved"]),
                   int(rec.get("decimals", 0)), int(rec.get("evaluations", 0)))


@dataclass
class _Node:
    prompt: int
    ids: list[int]
    digits: str  # the integer part written so far ("" before the number begins)
    frac: str | None  # None: no decimal point yet; else the decimal digits written after it
    lead: int  # whitespace tokens before the number
    mass: np.ndarray  # per temperature


@dataclass
class _Acc:
    probs: np.ndarray
    below: np.ndarray
    above: np.ndarray
    invalid: np.ndarray
    unresolved: np.ndarray
    evaluations: int = 0


@dataclass(frozen=True)
class _Grid:
    lo: int
    hi: int
    decimals: int
    max_chars: int
    min_prob: float
    max_lead: int

    def units(self, digits: str, frac: str | None) -> int:
        """The number in units of 10**-decimals, truncated (digits beyond the resolution do not count)."""
        f = (frac or "")[: self.decimals].ljust(self.decimals, "0")
        return int(digits) * 10**self.decimals + (int(f) if f else 0)


def exact_distributions(
    model: Any,
    prompts: Sequence[Prompt],
    score_range: tuple[int, int],
    *,
    temperatures: Sequence[float] = (1.0,),
    decimals: int = 1,
    min_prob: float = 1e-4,
    max_lead: int = 2,
    table: TokenTable | None = None,
    logprobs_fn: Callable[[list[list[int]]], Any] | None = None,
    encode_fn: Callable[[Prompt], list[int]] | None = None,
    batch_prompts: int = 8,
    progress: bool = False,
) -> list[dict[float, ScoreDistribution]]:
    """Exact score distributions, one ``{temperature: ScoreDistribution}`` per prompt (see module docstring).

    ``model`` satisfies :class:`NextTokenModel` (or pass ``logprobs_fn``/``encode_fn``/``table`` directly,
    e.g. for a fake model in tests). ``decimals``: the resolution -- the score is the leading number
    truncated to this many decimal places ("7.85" is 7.8 at 1, 7 at 0), exactly as
    :func:`parse_score` with ``rule="leading_number"`` reads a sample; small models write decimals often.
    ``min_prob``: branches below it under every temperature are not followed (their mass is ``unresolved``);
    0 follows every branch the range allows. ``max_lead``: how many whitespace-only tokens may come before
    the number. Prompts are processed ``batch_prompts`` at a time, one batched forward pass per depth.
    """
    lo, hi = check_range(score_range)
    temps = np.asarray([float(t) for t in temperatures], dtype=float)
    if len(temps) == 0 or np.any(temps <= 0) or len(set(temps.tolist())) != len(temps):
        raise ValueError(f"temperatures must be distinct and > 0, not {list(temperatures)}")
    if min_prob < 0:
        raise ValueError(f"min_prob must be >= 0, not {min_prob}")
    if decimals not in (0, 1, 2):
        raise ValueError(f"decimals must be 0, 1 or 2, not {decimals}")
    logprobs_fn = logprobs_fn or model.next_token_logprobs
    encode_fn = encode_fn or model.encode
    grid = _Grid(lo, hi, decimals, len(str(hi)), min_prob, max_lead)
    width = (hi - lo) * 10**decimals + 1
    out: list[dict[float, ScoreDistribution]] = []
    from tqdm.auto import tqdm

    bar = tqdm(total=len(prompts), desc="exact scores", unit="item", disable=not progress)
    tab = table
    for start in range(0, len(prompts), batch_prompts):
        chunk = prompts[start : start + batch_prompts]
        accs = [_Acc(np.zeros((len(temps), width)), *(np.zeros(len(temps)) for _ in range(4))) for _ in chunk]
        frontier = [_Node(i, list(encode_fn(p)), "", None, 0, np.ones(len(temps))) for i, p in enumerate(chunk)]
        while frontier:
            raw = logprobs_fn([node.ids for node in frontier])
            lp = np.asarray(raw.detach().cpu().numpy() if hasattr(raw, "detach") else raw, dtype=np.float64)
            if lp.ndim != 2 or lp.shape[0] != len(frontier):
                raise ValueError(f"next_token_logprobs returned shape {lp.shape} for {len(frontier)} sequences")
            if tab is None:
                tab = token_table(model, lp.shape[1])
            if lp.shape[1] < tab.size:
                raise ValueError(f"next_token_logprobs has {lp.shape[1]} columns, the token table {tab.size}")
            bad = np.flatnonzero(~(np.isfinite(lp) | (lp == -np.inf)).all(axis=1))
            if len(bad):
                node = frontier[int(bad[0])]
                raise ValueError(f"next_token_logprobs gave NaN or +inf for prompt {start + node.prompt} after "
                                 f"{node.digits or 'the prompt'!r}: the backend's output is not a distribution")
            nxt: list[_Node] = []
            for node, row in zip(frontier, lp):
                acc = accs[node.prompt]
                acc.evaluations += 1
                nxt.extend(_expand(node, row, temps, tab, acc, grid))
            frontier = nxt
        for acc in accs:
            out.append({
                float(t): ScoreDistribution((lo, hi), float(t), acc.probs[k].copy(), float(acc.below[k]),
                                            float(acc.above[k]), float(acc.invalid[k]), float(acc.unresolved[k]),
                                            decimals, acc.evaluations)
                for k, t in enumerate(temps)
            })
        bar.update(len(chunk))
    bar.close()
    return out


def _tempered(row: np.ndarray, t: float) -> np.ndarray:
    """Per-step tempering: softmax(logits / T) == softmax(logprobs / T) (the log-normaliser cancels)."""
    x = row / t
    return np.exp(x - logsumexp(x))


def _expand(node: _Node, row: np.ndarray, temps: np.ndarray, tab: TokenTable, acc: _Acc, g: _Grid) -> list[_Node]:
    """Split one evaluated node's mass over its next tokens; return the children still to evaluate."""
    probs = np.stack([_tempered(row, t) for t in temps])  # [T, vocab]
    m = node.mass[:, None]
    p_digit = probs[:, tab.digit_ids] * m
    p_mixed = probs[:, tab.mixed_ids] * m
    p_space = probs[:, tab.space_ids] * m
    p_dot = probs[:, tab.dot_ids].sum(axis=1) * node.mass
    p_dot_digit = probs[:, tab.dot_digit_ids] * m
    # output columns beyond the tokenizer's vocabulary (embedding padding) are never digits: 'other'
    p_other = (probs[:, : tab.size][:, tab.other_mask].sum(axis=1) + probs[:, tab.size :].sum(axis=1)) * node.mass
    lo_u, hi_u = g.lo * 10**g.decimals, g.hi * 10**g.decimals
    children: list[_Node] = []

    def terminal(digits: str, frac: str | None, mass: np.ndarray) -> None:
        u = g.units(digits, frac)
        if u < lo_u:
            acc.below += mass
            acc.probs[:, 0] += mass
        elif u > hi_u:
            acc.above += mass
            acc.probs[:, -1] += mass
        else:
            acc.probs[:, u - lo_u] += mass

    def child(digits: str, frac: str | None, token: int, mass: np.ndarray, lead: int = node.lead) -> None:
        if not mass.max() > 0:
            return
        if digits and g.units(digits, frac) > hi_u:  # more digits only make it larger: clipped to hi
            acc.above += mass
            acc.probs[:, -1] += mass
        elif frac is not None and len(frac) >= g.decimals:  # resolution reached: later digits do not count
            terminal(digits, frac, mass)
        elif len(digits) > g.max_chars or mass.max() < g.min_prob or lead > g.max_lead:
            acc.unresolved += mass
        else:
            children.append(_Node(node.prompt, node.ids + [int(token)], digits, frac, lead, mass))

    if node.digits == "":  # the answer has not begun: whitespace may come first, then the number
        for k, tok in enumerate(tab.digit_ids):
            child(tab.digit_text[k], None, tok, p_digit[:, k])
        for k, tok in enumerate(tab.mixed_ids):
            if g.decimals and tab.mixed_dot[k]:
                child(tab.mixed_text[k], "", tok, p_mixed[:, k])
            else:
                terminal(tab.mixed_text[k], None, p_mixed[:, k])
        for k, tok in enumerate(tab.space_ids):
            child("", None, tok, p_space[:, k], lead=node.lead + 1)
        acc.invalid += p_other + p_dot + p_dot_digit.sum(axis=1)
    elif node.frac is None:  # in the integer part: digits continue it, a point may start decimals
        ends = p_other + p_space.sum(axis=1)
        for k, tok in enumerate(tab.digit_ids):
            if tab.digit_lead[k]:
                ends = ends + p_digit[:, k]
            else:
                child(node.digits + tab.digit_text[k], None, tok, p_digit[:, k])
        for k, tok in enumerate(tab.mixed_ids):
            if tab.mixed_lead[k]:
                ends = ends + p_mixed[:, k]
            elif g.decimals and tab.mixed_dot[k]:
                child(node.digits + tab.mixed_text[k], "", tok, p_mixed[:, k])
            else:
                terminal(node.digits + tab.mixed_text[k], None, p_mixed[:, k])
        if g.decimals:
            for tok in tab.dot_ids:  # one dot token in every vocabulary we know; several are summed apart
                child(node.digits, "", tok, probs[:, tok] * node.mass)
            for k, tok in enumerate(tab.dot_digit_ids):
                child(node.digits, tab.dot_digit_text[k], tok, p_dot_digit[:, k])
        else:
            ends = ends + p_dot + p_dot_digit.sum(axis=1)
        terminal(node.digits, None, ends)
    else:  # after the decimal point: digits continue the fraction, anything else ends the number
        ends = p_other + p_space.sum(axis=1) + p_dot + p_dot_digit.sum(axis=1)
        for k, tok in enumerate(tab.digit_ids):
            if tab.digit_lead[k]:
                ends = ends + p_digit[:, k]
            else:
                child(node.digits, node.frac + tab.digit_text[k], tok, p_digit[:, k])
        for k in range(len(tab.mixed_ids)):
            if tab.mixed_lead[k]:
                ends = ends + p_mixed[:, k]
            else:
                terminal(node.digits, node.frac + tab.mixed_text[k], p_mixed[:, k])
        terminal(node.digits, node.frac, ends)
    return children


def distributions_table(dists: Sequence[dict[float, ScoreDistribution]], items: Sequence[Any] | None = None
                        ) -> pd.DataFrame:
    """Tidy summary of exact distributions: one row per (item, temperature) with ``expected, mode, valid,
    invalid, unresolved, below, above, evaluations``; the probabilities themselves stay in the objects
    (``to_record`` stores them)."""
    items = list(range(len(dists))) if items is None else list(items)
    if len(items) != len(dists):
        raise ValueError(f"{len(items)} items for {len(dists)} distributions")
    rows = []
    for item, by_t in zip(items, dists):
        for t, d in by_t.items():
            rows.append({"item": item, "temperature": t, "expected": d.expected(), "mode": d.mode(),
                         "valid": d.valid, "invalid": d.invalid, "unresolved": d.unresolved, "below": d.below,
                         "above": d.above, "evaluations": d.evaluations})
    return pd.DataFrame(rows)


def distributions_long(dists: Sequence[dict[float, ScoreDistribution]], items: Sequence[Any] | None = None
                       ) -> pd.DataFrame:
    """Every probability of exact distributions as a tidy table (for histograms and storing): one row per
    (item, temperature, outcome) with ``score`` (NaN for the ``invalid`` and ``unresolved`` outcomes),
    ``outcome`` (``score``, ``invalid``, ``unresolved``) and ``prob``; each (item, temperature) sums to 1."""
    items = list(range(len(dists))) if items is None else list(items)
    if len(items) != len(dists):
        raise ValueError(f"{len(items)} items for {len(dists)} distributions")
    frames = []
    for item, by_t in zip(items, dists):
        for t, d in by_t.items():
            frames.append(pd.DataFrame({"item": item, "temperature": t,
                                        "score": np.append(d.scores, [np.nan, np.nan]),
                                        "outcome": ["score"] * len(d.probs) + ["invalid", "unresolved"],
                                        "prob": np.append(d.probs, [d.invalid, d.unresolved])}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["item", "temperature", "score", "outcome", "prob"])


def simulate_item_scores(dists: Sequence[ScoreDistribution], *, n: int = PAPER_SAMPLES, replicates: int = 1000,
                         seed: int = 0) -> np.ndarray:
    """Draws of the paper's item scores from the exact distributions: ``[replicates, items]``, NaN where
    none of an item's ``n`` samples was valid.

    Each draw is what one run of the paper's protocol would have given, without running the model again:
    from each item's :meth:`ScoreDistribution.mean_distribution`. A dataset statistic (kurtosis, r) computed
    on each replicate shows how much of a sampled run's number is sampling noise.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((replicates, len(dists)))
    for k, d in enumerate(dists):
        table = d.mean_distribution(n)
        p = table["prob"].to_numpy()
        out[:, k] = rng.choice(table["mean"].to_numpy(), size=replicates, p=p / p.sum())
    return out

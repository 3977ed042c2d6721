"""One interface for every judge, whatever runs it.

A judge does two things in these studies: it writes text (summaries), and it picks among a few answer options
("1"/"2", "Yes"/"No", "1".."5"). The papers read the second from next-token probabilities, not from sampled
text, because probabilities show how sure a judge is and let us average over answer orders. So the
interface has exactly two methods, in the spirit of lm-evaluation-harness's ``LM``:

- :meth:`Model.generate` -- greedy (or sampled) continuations;
- :meth:`Model.option_probs` -- the next-token probability of each option, kept raw *and* renormalised over
  the options, with the mass that fell outside the options recorded (a judge that wants to answer "The"
  is not a judge that is 50/50 between "1" and "2").

A prompt is either a string (a completion prompt, for base models) or a list of chat messages
(``[{"role": "system", "content": ...}, {"role": "user", "content": ...}]``); chat models apply their own
chat template, base models get the messages flattened into a plain completion prompt.

Every model carries a :attr:`Model.fingerprint`: a JSON-able description of the exact weights (hub id and
revision, or GGUF sha256 and quantisation) that every stored result is keyed on.
"""

from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Union

Message = dict[str, str]
Prompt = Union[str, list[Message]]


def canonical_json(obj: Any) -> str:
    """The one serialisation used for hashing: sorted keys, no whitespace, unicode kept."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding parameters. The defaults are the papers': greedy decoding, short outputs."""

    max_new_tokens: int = 100
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


#: how far the options' raw probabilities may sum above 1 and still count as one distribution: float32
#: softmax sums of a few tokens can overshoot 1 by ~1e-7; 1e-4 leaves room for summing token spellings and
#: half-precision backends while catching anything that is not rounding
SUM_TOLERANCE = 1e-4


def probs_problem(raw: Sequence[float]) -> str | None:
    """Why ``raw`` is not a usable answer (``None`` when it is).

    A usable answer has finite probabilities, each within [0, 1], summing to at most ``1 + SUM_TOLERANCE``
    and to more than 0: an answer with no mass on any option is a non-answer (the judge wanted to say
    something else), not a tie, so it must not be scored as 50/50 or as the middle of a scale.
    """
    vals = [float(r) for r in raw]
    if not all(math.isfinite(v) for v in vals):
        return f"non-finite probability in {vals}"
    if any(v < 0 for v in vals):
        return f"negative probability in {vals}"
    if any(v > 1 for v in vals):
        return f"probability above 1 in {vals}"
    total = math.fsum(vals)
    if total > 1 + SUM_TOLERANCE:
        return f"probabilities sum to {total:.6g} > 1 (tolerance {SUM_TOLERANCE:g})"
    if total <= 0:
        return "no probability on any option (all mass outside the options)"
    return None


@dataclass(frozen=True)
class OptionProbs:
    """Next-token probabilities of a few answer options, checked where they enter.

    ``raw[i]`` is the model's probability of option ``i`` as the next token (summed over the token spellings
    that stand for it, e.g. "1" and " 1"). ``outside`` is the probability mass on every other token:
    ``1 - sum(raw)``. :attr:`probs` renormalises over the options, which is what the papers compare.

    Every instance is validated on construction (:func:`probs_problem`), so a bad answer is caught whether
    it comes live from a backend or from a stored record (old records need no migration: the check runs
    when they are read). A bad answer does not raise -- one NaN must not lose a batch of good answers --
    but is *invalid*: :attr:`invalid_reason` says why, :attr:`probs` is NaN for every option (it cannot be
    scored by accident), :attr:`outside` is 1 (none of its mass is a usable answer) and the experiments
    count it per judge and table. ``raw`` is kept exactly as the backend gave it.

    A sum a hair above 1 (within ``SUM_TOLERANCE``) is rounding, not an error: :attr:`outside` is then 0
    and :attr:`probs` renormalises it away like any other sum.
    """

    options: tuple[str, ...]
    raw: tuple[float, ...]
    #: where the backend could only see the top-k tokens (APIs), options outside the top-k got 0 and
    #: ``exact`` is False; for local models it is True.
    exact: bool = True
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    #: why the answer cannot be scored (None: it can); derived from ``raw``, never passed in
    invalid_reason: str | None = field(init=False, default=None, compare=False)

    def __post_init__(self) -> None:
        if len(self.options) != len(self.raw):
            raise ValueError(f"{len(self.options)} options but {len(self.raw)} probabilities")
        try:
            problem = probs_problem(self.raw)
        except (TypeError, ValueError):
            problem = f"probabilities are not numbers: {list(self.raw)!r}"
        object.__setattr__(self, "invalid_reason", problem)

    @property
    def valid(self) -> bool:
        return self.invalid_reason is None

    @property
    def inside(self) -> float:
        """The mass on the options as the backend gave it: 0 for a non-answer, NaN where the values are not
        finite non-negative numbers (there is no mass to speak of)."""
        try:
            vals = [float(r) for r in self.raw]
        except (TypeError, ValueError):
            return math.nan
        return math.fsum(vals) if all(math.isfinite(v) and v >= 0 for v in vals) else math.nan

    @property
    def outside(self) -> float:
        """The mass on every other token: 1 for an invalid answer or a non-answer, never NaN."""
        return max(0.0, 1.0 - self.inside) if self.valid else 1.0

    @property
    def probs(self) -> dict[str, float]:
        """Probabilities renormalised over the options (NaN for every option of an invalid answer)."""
        if not self.valid:
            return {o: math.nan for o in self.options}
        total = self.inside
        return {o: p / total for o, p in zip(self.options, self.raw)}

    def __getitem__(self, option: str) -> float:
        return self.probs[option]

    @property
    def argmax(self) -> str | None:
        """The most probable option; None for an invalid answer."""
        return max(zip(self.raw, self.options))[1] if self.valid else None

    def to_record(self) -> dict[str, Any]:
        return {"options": list(self.options), "raw": list(self.raw), "exact": self.exact, **self.extra}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> OptionProbs:
        """The answer of a stored record (any record ever written: extra keys are kept, validity re-derived)."""
        extra = {k: v for k, v in rec.items() if k not in ("options", "raw", "exact", "invalid_reason")}
        return cls(tuple(rec["options"]), tuple(rec["raw"]), rec.get("exact", True), extra)


class Model(ABC):
    """A judge or writer. Backends implement :meth:`generate` and :meth:`option_probs` for a batch."""

    #: the short name it was addressed by (zoo name, hub id, API model name)
    name: str

    @property
    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """JSON-able description of the exact weights and how they are run."""

    @property
    def fingerprint_id(self) -> str:
        """A short stable id of :attr:`fingerprint`, the model part of every store key."""
        return sha256_hex(canonical_json(self.fingerprint))[:16]

    @property
    def is_chat(self) -> bool:
        return True

    @abstractmethod
    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig = GenerationConfig()) -> list[str]:
        """One continuation per prompt."""

    @abstractmethod
    def option_probs(self, prompts: Sequence[Prompt], options: Sequence[str]) -> list[OptionProbs]:
        """Next-token probabilities of ``options`` after each prompt (the assistant turn for chat models)."""

    def loglikelihood(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[dict[str, Any]]:
        """Log-probability of each continuation after its prompt (optional; for likelihood-based recognition
        and perplexity baselines). One dict per pair: ``logprob`` (natural-log sum over the continuation's
        tokens), ``mean_logprob`` (per token) and ``n_tokens``. Backends without it raise NotImplementedError."""
        raise NotImplementedError(f"{type(self).__name__} ({self.name}) does not compute log-likelihoods; "
                                  "the llama.cpp runtime does (judgelab.models.llamacpp_backend)")

    def describe(self) -> str:
        fp = self.fingerprint
        return ", ".join(f"{k}={v}" for k, v in fp.items() if v is not None)


def messages_to_text(messages: list[Message]) -> str:
    """Flatten chat messages into a completion prompt for a base model (no chat template).

    System and user texts are joined by blank lines and the prompt ends with a blank line, so the next
    token is the start of the answer. Base models are not what the papers used; the book says so where
    it uses one.
    """
    parts = [m["content"] for m in messages if m["role"] in ("system", "user")]
    tail = [m["content"] for m in messages if m["role"] == "assistant"]
    text = "\n\n".join(parts) + "\n\n"
    return text + "".join(tail)


def check_options(options: Sequence[str]) -> tuple[str, ...]:
    opts = tuple(options)
    if len(opts) < 2:
        raise ValueError(f"need at least two answer options, got {opts!r}")
    if len(set(opts)) != len(opts):
        raise ValueError(f"answer options must be distinct, got {opts!r}")
    return opts


def single_token_option_ids(tokenizer: Any, options: Sequence[str], name: str) -> list[list[int]]:
    """Token ids that stand for each option: the single-token spellings of "X" and " X".

    One rule for every local runtime (transformers and llama.cpp use the same tokenizer), so two runtimes
    sum the same tokens. Raises if an option has no single-token spelling or two options share a token,
    because then a next-token probability cannot tell them apart.
    """
    ids: list[list[int]] = []
    for opt in options:
        found: list[int] = []
        for variant in (opt, " " + opt):
            toks = tokenizer(variant, add_special_tokens=False)["input_ids"]
            if len(toks) == 1 and toks[0] not in found:
                found.append(toks[0])
        if not found:
            raise ValueError(f"option {opt!r} is not a single token for {name}")
        ids.append(found)
    flat = [t for group in ids for t in group]
    if len(flat) != len(set(flat)):
        raise ValueError(f"options {tuple(options)!r} share tokens for {name}: {ids}")
    return ids


class TokenizerPrompts:
    """Prompt rendering and option tokens for the local runtimes, which share one transformers tokenizer.

    transformers and llama.cpp must see the *same* text and token ids for a prompt (so their answers
    differ only by their kernels), so both take these methods from here rather than keeping copies.
    The class using it sets ``tokenizer``, ``chat``, ``name`` and an empty ``_option_ids`` dict.
    """

    tokenizer: Any
    chat: bool
    name: str
    _option_ids: dict[tuple[str, ...], list[list[int]]]

    def render(self, prompt: Prompt) -> str:
        """The exact text the model sees: chat template for chat models, flattened text for base models."""
        if isinstance(prompt, str):
            return prompt
        if self.chat:
            return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return messages_to_text(prompt)

    def encode(self, prompt: Prompt) -> list[int]:
        text = self.render(prompt)
        # chat templates carry their own special tokens; plain prompts get the tokenizer's (e.g. BOS)
        add_special = not (self.chat and not isinstance(prompt, str))
        return list(self.tokenizer(text, add_special_tokens=add_special)["input_ids"])

    def option_token_ids(self, options: Sequence[str]) -> list[list[int]]:
        """Token ids that stand for each option (:func:`single_token_option_ids`), cached per option set."""
        key = tuple(options)
        if key not in self._option_ids:
            self._option_ids[key] = single_token_option_ids(self.tokenizer, options, self.name)
        return self._option_ids[key]

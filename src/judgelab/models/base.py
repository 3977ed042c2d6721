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


@dataclass(frozen=True)
class OptionProbs:
    """Next-token probabilities of a few answer options.

    ``raw[i]`` is the model's probability of option ``i`` as the next token (summed over the token spellings
    that stand for it, e.g. "1" and " 1"). ``outside`` is the probability mass on every other token:
    ``1 - sum(raw)``. :attr:`probs` renormalises over the options, which is what the papers compare.
    """

    options: tuple[str, ...]
    raw: tuple[float, ...]
    #: where the backend could only see the top-k tokens (APIs), options outside the top-k got 0 and
    #: ``exact`` is False; for local models it is True.
    exact: bool = True
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if len(self.options) != len(self.raw):
            raise ValueError(f"{len(self.options)} options but {len(self.raw)} probabilities")

    @property
    def inside(self) -> float:
        return float(sum(self.raw))

    @property
    def outside(self) -> float:
        return max(0.0, 1.0 - self.inside)

    @property
    def probs(self) -> dict[str, float]:
        """Probabilities renormalised over the options (uniform if the model put no mass on any)."""
        total = self.inside
        if total <= 0:
            return {o: 1.0 / len(self.options) for o in self.options}
        return {o: p / total for o, p in zip(self.options, self.raw)}

    def __getitem__(self, option: str) -> float:
        return self.probs[option]

    @property
    def argmax(self) -> str:
        return max(zip(self.raw, self.options))[1]

    def to_record(self) -> dict[str, Any]:
        return {"options": list(self.options), "raw": list(self.raw), "exact": self.exact, **self.extra}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> OptionProbs:
        extra = {k: v for k, v in rec.items() if k not in ("options", "raw", "exact")}
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

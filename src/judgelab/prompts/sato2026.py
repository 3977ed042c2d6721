"""Judging prompts for Sato, Kim, Chen, Mita & Komachi (2026), "Exploring the Effects of Alignment on
Numerical Bias in Large Language Models" (arXiv 2601.16444).

RECONSTRUCTION. Unlike :mod:`judgelab.prompts.panickssery2024`, these are *not* the authors' words: the paper
released no code, prompts or outputs, and second-hand summaries give only the protocol (a score on a
numeric range, default apparently 0-10, at most 5 new tokens). The templates below are ours, written to
be plain and alike across tasks, so that a difference between models is not a difference in wording:

* MTQE follows GEMBA-DA's source-only prompt (Kocmi & Federmann 2023, :data:`GEMBA_SOURCE`), the standard
  LLM prompt for translation quality estimation, with its fixed "0 to 100" made the range parameter and
  its trailing space after "Score:" dropped (a trailing space would force the model's first token to be a
  bare digit, which BPE tokenizers rarely start a number with after a space they did not write).
* GECQE, LCP and SummEval use the same frame: what to score, the range and what its ends mean, the item,
  then ``Score:``. Their scale anchors paraphrase the datasets' own annotation scales (TMU-GFM's 0-4
  grammaticality / fluency / meaning ratings; CompLex's 5-point "very easy" .. "very difficult"; SummEval's
  1-5 expert ratings per aspect).

Fixed once written: results are keyed on the exact prompt, and a changed word is a new experiment. Every
template ends where the score begins. One text serves every model (the issue's rule, so that the chat
template is not a hidden confound): a base model gets it as a completion prompt (:func:`completion`);
an aligned model gets it both through its chat template, as the user turn (:func:`chat`), and as the same
completion prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from judgelab.models.base import Message, Prompt

RECONSTRUCTION = True
SOURCE = "reconstruction: the paper (arXiv 2601.16444) did not publish its prompts"
GEMBA_SOURCE = "https://github.com/MicrosoftTranslator/GEMBA/blob/main/gemba/prompt.py (GEMBA-DA)"

#: The paper's default range (aligned models were reported to cluster near 8 on it) and its alternatives.
DEFAULT_RANGE: tuple[int, int] = (0, 10)
PAPER_RANGES: tuple[tuple[int, int], ...] = ((0, 10), (1, 5), (0, 9), (1, 100))

LANGUAGES: dict[str, str] = {
    "en": "English", "de": "German", "zh": "Chinese", "et": "Estonian", "ne": "Nepali",
    "ro": "Romanian", "ru": "Russian", "si": "Sinhala",
}

# --- templates ----------------------------------------------------------------------------------------------
MTQE_TEMPLATE = (
    'Score the following translation from {source_lang} to {target_lang} on a continuous scale from {lo} to '
    '{hi}, where a score of {lo} means "no meaning preserved" and a score of {hi} means "perfect meaning and '
    'grammar".\n\n{source_lang} source: "{source}"\n{target_lang} translation: "{translation}"\nScore:'
)

GECQE_TEMPLATE = (
    "Score the {aspect} of the following corrected sentence, written by a grammatical error correction system "
    "from a language learner's original sentence, on a scale from {lo} to {hi}, where a score of {lo} means "
    '"{low_anchor}" and a score of {hi} means "{high_anchor}".\n\n'
    'Original sentence: "{source}"\nCorrected sentence: "{output}"\nScore:'
)
#: What each TMU-GFM aspect asks and what the ends of its scale mean (after the dataset's 0-4 ratings).
GECQE_ASPECTS: dict[str, tuple[str, str, str]] = {
    "grammaticality": ("grammaticality", "many grammatical errors", "no grammatical errors"),
    "fluency": ("fluency", "not fluent at all", "as fluent as a native speaker's sentence"),
    "meaning": ("meaning preservation", "the meaning of the original is lost",
                "the meaning of the original is fully preserved"),
}

LCP_TEMPLATE = (
    "Score how difficult the {unit} \"{token}\" is to understand in the following sentence, on a scale from "
    '{lo} to {hi}, where a score of {lo} means "very easy" and a score of {hi} means "very difficult".\n\n'
    'Sentence: "{sentence}"\n{unit_title}: "{token}"\nScore:'
)

SUMMEVAL_TEMPLATE = (
    "Score the {aspect} of the following summary of a news article on a scale from {lo} to {hi}, where a score "
    'of {lo} means "{low_anchor}" and a score of {hi} means "{high_anchor}".\n\n'
    "Article:\n{article}\n\nSummary:\n{summary}\n\nScore:"
)
#: SummEval's four aspects, with the ends of the scale (after Fabbri et al. 2021's definitions).
SUMMEVAL_ASPECTS: dict[str, tuple[str, str, str]] = {
    "coherence": ("coherence", "the summary is a heap of unrelated statements",
                  "the summary is well-structured and well-organized"),
    "consistency": ("factual consistency", "the summary states facts not supported by the article",
                    "every fact in the summary is supported by the article"),
    "fluency": ("fluency", "the sentences are unreadable", "every sentence is fluent and grammatical"),
    "relevance": ("relevance", "the summary misses the article's important content",
                  "the summary contains only the article's important content"),
}

TASKS: tuple[str, ...] = ("mtqe", "gecqe", "lcp", "summeval")
#: The item fields each task's template reads (the tidy loaders' column names).
FIELDS: dict[str, tuple[str, ...]] = {
    "mtqe": ("pair", "source", "translation"),
    "gecqe": ("source", "output"),
    "lcp": ("sentence", "token"),
    "summeval": ("article", "summary"),
}
#: Each task's default aspect, where it has several: TMU-GFM's grammaticality is what a GEC quality
#: estimator is first asked about; SummEval's relevance is the aspect G-Eval and others report first.
DEFAULT_ASPECT: dict[str, str | None] = {"mtqe": None, "gecqe": "grammaticality", "lcp": None,
                                         "summeval": "relevance"}


def check_range(score_range: tuple[int, int]) -> tuple[int, int]:
    """A score range is two integers ``lo < hi`` (inclusive), e.g. ``(0, 10)``."""
    try:
        lo, hi = score_range
    except (TypeError, ValueError):
        raise ValueError(f"score_range must be a pair (lo, hi), not {score_range!r}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)) or lo >= hi or lo < 0:
        raise ValueError(f"score_range must be two integers 0 <= lo < hi, not {score_range!r}")
    return lo, hi


def _field(item: Mapping[str, Any], task: str, name: str) -> str:
    try:
        value = item[name]
    except KeyError:
        raise KeyError(f"{task} item has no field {name!r} (needs {FIELDS[task]})") from None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{task} item field {name!r} must be non-empty text, not {value!r}")
    return value


def completion(task: str, item: Mapping[str, Any], score_range: tuple[int, int] = DEFAULT_RANGE,
               aspect: str | None = None) -> str:
    """The prompt text for one item, ending with ``Score:`` where the score begins.

    ``item`` is one row of the task's tidy loader (:mod:`judgelab.data.numerical_bias`; a dict or a pandas
    row); ``aspect`` picks the GECQE / SummEval aspect (default :data:`DEFAULT_ASPECT`).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    lo, hi = check_range(score_range)
    aspect = aspect or DEFAULT_ASPECT[task]
    f = {name: _field(item, task, name) for name in FIELDS[task]}
    if task == "mtqe":
        src, _, tgt = f["pair"].partition("-")
        if src not in LANGUAGES or tgt not in LANGUAGES:
            raise ValueError(f"unknown language pair {f['pair']!r} (languages: {', '.join(LANGUAGES)})")
        return MTQE_TEMPLATE.format(lo=lo, hi=hi, source_lang=LANGUAGES[src], target_lang=LANGUAGES[tgt],
                                    source=f["source"], translation=f["translation"])
    if task == "lcp":
        multi = " " in f["token"].strip()
        unit = "expression" if multi else "word"
        return LCP_TEMPLATE.format(lo=lo, hi=hi, unit=unit, unit_title=unit.title(), token=f["token"],
                                   sentence=f["sentence"])
    aspects = GECQE_ASPECTS if task == "gecqe" else SUMMEVAL_ASPECTS
    if aspect not in aspects:
        raise ValueError(f"{task} aspect must be one of {tuple(aspects)}, not {aspect!r}")
    name, low_anchor, high_anchor = aspects[aspect]
    template = GECQE_TEMPLATE if task == "gecqe" else SUMMEVAL_TEMPLATE
    return template.format(lo=lo, hi=hi, aspect=name, low_anchor=low_anchor, high_anchor=high_anchor, **f)


def chat(task: str, item: Mapping[str, Any], score_range: tuple[int, int] = DEFAULT_RANGE,
         aspect: str | None = None) -> list[Message]:
    """The same text as :func:`completion`, as the one user turn of a chat (no system prompt)."""
    return [{"role": "user", "content": completion(task, item, score_range, aspect)}]


def prompt(task: str, item: Mapping[str, Any], score_range: tuple[int, int] = DEFAULT_RANGE,
           aspect: str | None = None, *, form: str = "completion") -> Prompt:
    """:func:`completion` (``form="completion"``) or :func:`chat` (``form="chat"``)."""
    if form == "completion":
        return completion(task, item, score_range, aspect)
    if form == "chat":
        return chat(task, item, score_range, aspect)
    raise ValueError(f"form must be 'completion' or 'chat', not {form!r}")

"""Self-evaluation, cosine recalibration and the combined training score of Self-J (Ye & Ng 2024).

The paper's training label for an answer needs no human rating: the model that wrote the answer rates it
against a gold reference (*self-evaluation*, the prompt of :mod:`judgelab.prompts.ye2024`), and the rating is
recalibrated with the cosine similarity between answer and reference.

- :func:`expected_digit` -- the paper's score from one judge answer: ``sum(d * p(d))`` over the digit tokens
  0-9 at the first answer position, renormalised over the ten digits. An answer with no mass on any digit is
  *invalid* (NaN, with its reason), never 0 as the paper's code has it: a judge that wanted to say "The" did
  not rate the answer worst.
- :func:`self_eval_scores` -- that score for a batch, through :meth:`Model.option_probs`, so a
  :class:`~judgelab.store.StoredModel` records and replays every call.
- :func:`cosine_scores` -- cosine similarity of answer and reference embeddings
  (:mod:`.embedding`: all-MiniLM-L6-v2, our choice; the paper does not name its model).
- :data:`COMBINATIONS` / :func:`combined_scores` -- candidates for the combined score. **The paper does not
  publish the formula**; these three are ours, named for what they do, so the chapter can show how much the
  choice matters. Each maps to the judge's 0-9 scale (the trained judge predicts digits) and is NaN where
  either input is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from judgelab.models.base import Model, OptionProbs
from judgelab.prompts import ye2024

DIGITS = ye2024.DIGITS
_VALUES = np.arange(10, dtype=float)


# --- self-evaluation ------------------------------------------------------------------------------------
def expected_digit(answer: OptionProbs) -> float:
    """``sum(d * p(d))`` over the digits 0-9 renormalised; NaN for an invalid answer (no digit mass).

    ``answer`` must have exactly the options "0".."9" in that order (what :func:`self_eval_scores` asks
    for): a different option set would silently weight the wrong values.
    """
    if tuple(answer.options) != DIGITS:
        raise ValueError(f"expected the options {DIGITS}, got {tuple(answer.options)}")
    if not answer.valid:
        return float("nan")
    p = answer.probs
    return float(sum(_VALUES[d] * p[o] for d, o in enumerate(DIGITS)))


def self_eval_table(answers: Sequence[OptionProbs]) -> pd.DataFrame:
    """One row per judge answer: ``score`` (NaN if invalid), ``valid``, ``invalid_reason``, ``digit_mass``
    (the raw probability on the ten digits: how much of the judge's answer was a digit at all) and
    ``p0``..``p9`` (renormalised), so nothing the judge said is lost."""
    rows = []
    for a in answers:
        probs = a.probs
        rows.append({
            "score": expected_digit(a), "valid": a.valid, "invalid_reason": a.invalid_reason,
            "digit_mass": a.inside, **{f"p{o}": probs[o] for o in DIGITS},
        })
    return pd.DataFrame(rows, columns=["score", "valid", "invalid_reason", "digit_mass",
                                       *[f"p{o}" for o in DIGITS]])


def self_eval_prompts(questions: Sequence[str], answers: Sequence[str], references: Sequence[str] | None = None,
                      *, as_chat: bool = True) -> list:
    """The paper's judge prompts for each (question, answer[, reference]); see :mod:`judgelab.prompts.ye2024`."""
    n = len(questions)
    if len(answers) != n or (references is not None and len(references) != n):
        lens = [n, len(answers)] + ([len(references)] if references is not None else [])
        raise ValueError(f"questions, answers and references must be equally long, got {lens}")
    build = ye2024.chat if as_chat else ye2024.completion
    refs = references if references is not None else [None] * n
    return [build(q, a, r) for q, a, r in zip(questions, answers, refs)]


def self_eval_scores(model: Model, questions: Sequence[str], answers: Sequence[str],
                     references: Sequence[str] | None = None, *, as_chat: bool = True,
                     labels: Sequence[str] | None = None) -> pd.DataFrame:
    """The judge's 0-9 score of each answer, with the reference (``references`` given) or without.

    ``model`` is any :class:`~judgelab.models.base.Model` (wrap it in a store to keep the calls). Its
    next-token probabilities of "0".."9" after the prompt give :func:`self_eval_table`'s columns. With
    ``as_chat`` (default) the prompt is the user turn of the model's chat template; ``as_chat=False`` sends
    the bare text, as the paper's ``judge.py`` does with its fine-tuned judges. ``labels`` (one per answer)
    name the calls in a :class:`~judgelab.store.StoredModel`'s store.
    """
    prompts = self_eval_prompts(questions, answers, references, as_chat=as_chat)
    out = model.option_probs(prompts, DIGITS, labels=labels) if labels is not None else \
        model.option_probs(prompts, DIGITS)
    if len(out) != len(prompts):
        raise RuntimeError(f"{model.name} returned {len(out)} answers for {len(prompts)} prompts")
    return self_eval_table(out)


# --- cosine -------------------------------------------------------------------------------------------------
def cosine_scores(answers: Sequence[str], references: Sequence[str], *, embedder=None,
                  batch_size: int = 32) -> np.ndarray:
    """Cosine similarity between each answer's and its reference's embedding, in [-1, 1].

    ``embedder`` is anything with sentence-transformers' ``encode(texts) -> array``; the default is the
    verified all-MiniLM-L6-v2 (:func:`.embedding.load_embedder`). Embeddings are normalised here, whatever
    the embedder returns; a zero-length embedding has no direction and gives NaN, not 0.
    """
    answers, references = list(answers), list(references)
    if len(answers) != len(references):
        raise ValueError(f"{len(answers)} answers but {len(references)} references")
    for what, texts in (("answer", answers), ("reference", references)):
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"{what}s at positions {bad[:5]} are not text")
    if not answers:
        return np.zeros(0)
    if embedder is None:
        from judgelab.experiments.self_judge.embedding import load_embedder

        embedder = load_embedder()
    a = np.asarray(embedder.encode(answers, batch_size=batch_size, convert_to_numpy=True), dtype=float)
    r = np.asarray(embedder.encode(references, batch_size=batch_size, convert_to_numpy=True), dtype=float)
    if a.shape != r.shape or a.shape[0] != len(answers):
        raise RuntimeError(f"embedder returned shapes {a.shape} and {r.shape} for {len(answers)} pairs")
    na, nr = np.linalg.norm(a, axis=1), np.linalg.norm(r, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.einsum("ij,ij->i", a, r) / (na * nr)
    cos[(na == 0) | (nr == 0)] = np.nan
    return np.clip(cos, -1.0, 1.0)


# --- combined training score (OUR CHOICES: the paper does not publish its formula) ---------------------------
def _arrays(self_eval, cosine) -> tuple[np.ndarray, np.ndarray]:
    s, c = np.asarray(self_eval, dtype=float), np.asarray(cosine, dtype=float)
    if s.shape != c.shape or s.ndim != 1:
        raise ValueError(f"self_eval and cosine must be equally long 1-d arrays, got {s.shape} and {c.shape}")
    out_of_range = np.isfinite(s) & ((s < 0) | (s > 9))
    if out_of_range.any():
        raise ValueError(f"self-evaluation scores must lie in [0, 9]; got {s[out_of_range][:5]}")
    if (np.isfinite(c) & ((c < -1 - 1e-6) | (c > 1 + 1e-6))).any():
        raise ValueError("cosine similarities must lie in [-1, 1]")
    return s, c


def combine_mean(self_eval, cosine) -> np.ndarray:
    """Equal-weight mean of the two on a common scale: ``9 * (s/9 + (c+1)/2) / 2``.

    Cosine is mapped from [-1, 1] to [0, 1] linearly. Simple and monotone in both; the two inputs can
    offset each other (a confident self-rating rescues an answer unlike the reference).
    """
    s, c = _arrays(self_eval, cosine)
    return 9.0 * (s / 9.0 + (c + 1.0) / 2.0) / 2.0


def combine_product(self_eval, cosine) -> np.ndarray:
    """Product on a common scale: ``9 * (s/9) * max(c, 0)``: a high score needs *both* a high self-rating and
    an answer close to the reference; a negative cosine (nothing in common) counts as 0."""
    s, c = _arrays(self_eval, cosine)
    return 9.0 * (s / 9.0) * np.clip(c, 0.0, 1.0)


def _unit_rank(x: np.ndarray) -> np.ndarray:
    """Ranks (ties averaged) mapped to [0, 1] over the finite values; NaN stays NaN."""
    out = np.full(x.shape, np.nan)
    keep = np.isfinite(x)
    n = int(keep.sum())
    if n == 1:
        out[keep] = 0.5
    elif n > 1:
        out[keep] = (pd.Series(x[keep]).rank(method="average").to_numpy() - 1.0) / (n - 1.0)
    return out


def combine_rank_mean(self_eval, cosine) -> np.ndarray:
    """Mean of the two *ranks* within the batch, on 0-9: ``9 * (rank(s) + rank(c)) / 2`` with ranks in
    [0, 1] (ties averaged). Immune to the two scales' different spreads (cosines of MiniLM cluster in a
    narrow band), but relative: a score depends on the other answers in the batch. Ranks are taken over the
    pairs where both inputs are finite."""
    s, c = _arrays(self_eval, cosine)
    both = np.isfinite(s) & np.isfinite(c)
    out = np.full(s.shape, np.nan)
    out[both] = 9.0 * (_unit_rank(s[both]) + _unit_rank(c[both])) / 2.0
    return out


#: the candidate combined scores, by name (our choices; the paper's formula is unpublished)
COMBINATIONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "mean": combine_mean,
    "product": combine_product,
    "rank_mean": combine_rank_mean,
}


def combined_scores(self_eval, cosine, how: str = "mean") -> np.ndarray:
    """The combined training score by the candidate named ``how`` (one of :data:`COMBINATIONS`)."""
    try:
        f = COMBINATIONS[how]
    except KeyError:
        raise ValueError(f"unknown combination {how!r}; known: {list(COMBINATIONS)}") from None
    return f(self_eval, cosine)


def combined_table(self_eval, cosine) -> pd.DataFrame:
    """Every candidate side by side (columns ``combined_<name>``), with the two inputs."""
    s, c = _arrays(self_eval, cosine)
    return pd.DataFrame({"self_eval": s, "cosine": c,
                         **{f"combined_{k}": f(s, c) for k, f in COMBINATIONS.items()}})


# --- perplexity (the paper's reference-free baseline) ------------------------------------------------------------
def answer_logprobs(model: Model, questions: Sequence[str], answers: Sequence[str], *,
                    labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean log-probability per token of each answer after its question (the question as the user turn of the
    model's chat template, the answer as the assistant's continuation), through :meth:`Model.loglikelihood`.

    Columns ``mean_logprob`` (the predictor: higher = the model finds the answer more likely, i.e. lower
    perplexity), ``perplexity`` (``exp(-mean_logprob)``), ``n_tokens``, ``valid`` (False for an empty answer,
    which has no tokens to score: NaN, counted, never 0).
    """
    if len(questions) != len(answers):
        raise ValueError(f"{len(questions)} questions but {len(answers)} answers")
    keep = [i for i, a in enumerate(answers) if isinstance(a, str) and a.strip()]
    prompts = [[{"role": "user", "content": questions[i]}] for i in keep]
    conts = [answers[i] for i in keep]
    kw = {"labels": [labels[i] for i in keep]} if labels is not None else {}
    res = model.loglikelihood(prompts, conts, **kw) if keep else []
    out = pd.DataFrame({"mean_logprob": np.nan, "perplexity": np.nan, "n_tokens": 0, "valid": False},
                       index=range(len(answers)))
    for i, r in zip(keep, res):
        out.loc[i, ["mean_logprob", "perplexity", "n_tokens", "valid"]] = [
            r["mean_logprob"], float(np.exp(-r["mean_logprob"])), r["n_tokens"], True]
    return out.astype({"mean_logprob": float, "perplexity": float, "n_tokens": int, "valid": bool})

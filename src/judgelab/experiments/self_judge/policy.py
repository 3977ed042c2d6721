"""The policy: a zoo instruct model answers the training instructions, several seeded samples each.

Self-J's training labels are the policy's ratings of *its own* answers, so the policy writes the answers
first (issue 19, item 2). Generation is most of the chapter's CPU cost, so it runs in the llama.cpp runtime
(``NAME@llama.cpp``: several times the transformers runtime's tokens/s on the same GGUF,
``results/benchmarks/generation_throughput.csv``) behind the one model interface, through a call store, so
an interrupted run resumes where it stopped.

Seeds. A sampled answer (temperature > 0) must differ from the instruction's other samples and reproduce on
a rerun. The llama.cpp runtime seeds each prompt's sampler with ``GenerationConfig.seed``: its sequential
path calls ``Llama.set_seed(seed)`` before ``Llama.generate``, which builds a fresh sampler chain (temperature,
then llama.cpp's ``dist`` sampler seeded with that seed) for every prompt, so one prompt's sample does not
depend on what was generated before it. All prompts of one ``generate`` call share the call's seed, so
:func:`generate_answers` makes one call per (instruction, sample) with its own seed,
:func:`sample_seed` -- a hash of the instruction's source and id, the sample index and a base seed -- and the
seed is part of the store key (two samples are two calls). The batched decoder (``decode_batch > 1``) is not
used: it would give every prompt of a batch the same seed.

Contamination. The training instructions come from
:func:`judgelab.data.self_judge.training_instructions`, which refuses every instruction that overlaps an
evaluation question; :func:`check_no_evaluation_overlap` checks the instructions a run selects again, by
instruction text, and refuses to go on if one slipped through.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from judgelab.data.self_judge import instruction_overlap
from judgelab.models.base import GenerationConfig, Message, Model
from judgelab.store import ReplayMiss, StoredModel

ANSWER_COLUMNS = ["source", "id", "sample", "seed", "answer", "n_words", "status"]
#: what an answer can be: a usable answer, an empty one (counted, kept), none (prompt too long), or not in
#: the store yet (a replay with ``skip_missing``: a generation still running)
STATUSES = ("ok", "empty", "too long", "missing")


def answer_messages(instruction: str, system_prompt: str = "") -> list[Message]:
    """The policy's prompt: the instruction as the user turn, after the source's system prompt if it has one
    (BiGGen-Bench gives each instance one; the other sources none)."""
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError(f"instruction must be non-empty text, got {instruction!r}")
    system = (system_prompt or "").strip()
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": instruction}]


def sample_seed(source: str, item_id: str, sample: int, base: int = 0) -> int:
    """The sampling seed of sample ``sample`` of instruction ``source:item_id``: distinct per (instruction,
    sample) and the same on every machine (sha256, not Python's salted ``hash``), in [0, 2**31)."""
    if sample < 0:
        raise ValueError(f"sample index must be >= 0, got {sample}")
    digest = hashlib.sha256(f"{base}\x1f{source}\x1f{item_id}\x1f{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**31)


def check_no_evaluation_overlap(rows: pd.DataFrame, evaluation: pd.DataFrame) -> None:
    """Raise if any instruction in ``rows`` is an evaluation question (by normalised text, see
    :func:`~judgelab.data.self_judge.instruction_overlap`), naming the first few pairs."""
    hits = instruction_overlap(rows, evaluation)
    if len(hits):
        pairs = ", ".join(f"{s}:{i} ~ {e} ({h})" for s, i, e, h in hits.head(5).itertuples(index=False))
        raise ValueError(f"{len(hits)} training instructions overlap the evaluation questions: {pairs}")


def split_instructions(rows: pd.DataFrame, n_train: int, n_heldout: int, seed: int = 0
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded random choice of ``n_train`` training and ``n_heldout`` held-out instructions, disjoint.

    The permutation is drawn over the rows sorted by (source, id), so it does not depend on the order the
    loader returned them in. Held-out instructions serve best-of-N and selective following on the policy's
    own answers; the judge never trains on them.
    """
    if n_train < 0 or n_heldout < 0:
        raise ValueError(f"sizes must be >= 0, got n_train={n_train}, n_heldout={n_heldout}")
    if n_train + n_heldout > len(rows):
        raise ValueError(f"asked for {n_train} + {n_heldout} instructions, only {len(rows)} have a reference")
    ordered = rows.sort_values(["source", "id"], kind="stable").reset_index(drop=True)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    train = ordered.iloc[perm[:n_train]].reset_index(drop=True)
    held = ordered.iloc[perm[n_train:n_train + n_heldout]].reset_index(drop=True)
    return train, held


def _label(source: str, item_id: str, sample: int) -> str:
    return f"answer/{source}/{item_id}/{sample}"


def generate_answers(model: Model, rows: pd.DataFrame, samples: Sequence[int], config: GenerationConfig, *,
                     base_seed: int = 0, progress: bool = True, desc: str = "answers",
                     skip_missing: bool = False) -> pd.DataFrame:
    """Sample ``len(samples)`` answers to each instruction of ``rows`` (columns ``source, id, instruction,
    system_prompt``), one call per (instruction, sample) with seed :func:`sample_seed`.

    Sample-major order: every instruction's sample 0, then every instruction's sample 1, ..., so a run
    stopped early has whole passes, not a few instructions with all their samples. ``model`` is usually a
    :class:`~judgelab.store.StoredModel` (calls are labelled ``answer/<source>/<id>/<sample>`` in the
    store). A prompt longer than the model's context is counted (``status == 'too long'``), not fatal;
    an empty answer is kept and counted (``'empty'``). With ``skip_missing`` a replay that lacks an answer
    marks it ``'missing'`` instead of raising (to use what a running generation has stored so far).
    Returns one row per (instruction, sample): :data:`ANSWER_COLUMNS`.
    """
    if config.temperature <= 0 and len(set(samples)) > 1:
        raise ValueError("several samples per instruction need temperature > 0 (greedy samples are identical)")
    from judgelab.models.llamacpp_backend import LlamaCppError

    labelled = isinstance(model, StoredModel)
    out = []
    bar = tqdm(total=len(rows) * len(samples), desc=f"{desc} {model.name}", unit="answer", disable=not progress)
    for k in samples:
        for r in rows.itertuples(index=False):
            seed = sample_seed(r.source, r.id, k, base_seed)
            cfg = replace(config, seed=seed)
            msgs = answer_messages(r.instruction, getattr(r, "system_prompt", ""))
            try:
                if labelled:
                    text = model.generate([msgs], cfg, labels=[_label(r.source, r.id, k)])[0]
                else:
                    text = model.generate([msgs], cfg)[0]
            except LlamaCppError as err:
                if "more than the llama.cpp context" not in str(err):
                    raise
                text, status = "", "too long"
            except ReplayMiss:
                if not skip_missing:
                    raise
                text, status = "", "missing"
            else:
                status = "ok" if text.strip() else "empty"
            out.append({"source": r.source, "id": r.id, "sample": k, "seed": seed, "answer": text,
                        "n_words": len(text.split()), "status": status})
            bar.update(1)
    bar.close()
    return pd.DataFrame(out, columns=ANSWER_COLUMNS)


def measure_speed(names: Sequence[str], rows: pd.DataFrame, config: GenerationConfig, *, n_threads: int = 1,
                  base_seed: int = 0) -> pd.DataFrame:
    """Tokens/s of each model string (llama.cpp runtime) answering ``rows`` once, live, no store.

    One row per model: prompts, generated tokens, seconds (generation only, after loading), tokens/s, the
    threads, the load average before and after, hardware and date, the weights' sha256 -- what the
    choice of policy in the chapter is made from.
    """
    from judgelab.models import get_model
    from judgelab.profiles import hardware

    out = []
    for name in names:
        model = get_model(name, n_threads=n_threads)
        load0 = os.getloadavg()[0]
        before = dict(model.stats)
        t0 = time.perf_counter()
        generate_answers(model, rows, [0], config, base_seed=base_seed, progress=False)
        dt = time.perf_counter() - t0
        gen = model.stats["generated_tokens"] - before["generated_tokens"]
        out.append({"model": name, "prompts": len(rows), "generated_tokens": gen,
                    "evaluated_prompt_tokens": model.stats["evaluated_tokens"] - before["evaluated_tokens"],
                    "seconds": round(dt, 3), "tokens_per_s": round(gen / dt, 2) if dt > 0 else float("nan"),
                    "max_new_tokens": config.max_new_tokens, "temperature": config.temperature,
                    "threads": n_threads, "load_avg_before": round(load0, 2),
                    "load_avg_after": round(os.getloadavg()[0], 2),
                    "gguf_sha256": model.fingerprint.get("gguf_sha256"), "hardware": hardware(),
                    "date": time.strftime("%Y-%m-%d", time.gmtime())})
        del model
    return pd.DataFrame(out)


def answers_summary(answers: pd.DataFrame) -> pd.DataFrame:
    """Counts per status and sample (how many answers are usable, empty, or could not be generated)."""
    return (answers.groupby(["sample", "status"]).size().unstack(fill_value=0)
            .reindex(columns=list(STATUSES), fill_value=0).reset_index())

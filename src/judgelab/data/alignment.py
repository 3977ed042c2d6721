"""Instruction and preference data for the alignment run we control (Sato et al. 2026 chapter, issue 16).

Two example sets from the mirrored, hash-verified sources (``judgelab/data/manifests``):

* **SFT: instruction -> gold output** (:func:`sft_examples`). Alpaca's 175 human-written seed tasks and
  Self-Instruct's 252 expert-written user-oriented instructions with their human gold outputs, read by the
  Self-Judge loaders (:func:`judgelab.data.self_judge.load_alpaca_seed`, :func:`~judgelab.data.self_judge.
  load_self_instruct`: an input, where a task has one, follows its instruction after a blank line). A seeded
  draw holds instructions out of training (``split="eval"``).
* **DPO: chosen / rejected** (:func:`dpo_pairs`). AlpacaEval 1's GPT-4 pairwise annotations
  (``alpaca_eval_gpt4``) of 10 models against ``text_davinci_003`` on 805 instructions: ``preference`` 1 means
  the baseline's output (``output_1``) won, 2 the model's (``output_2``). Draws (0), half-preferences (1.5) and
  missing preferences have no chosen output: they are refused with their reason and counted
  (:attr:`~judgelab.data.self_judge.Loaded.refused`), never silently dropped.

AlpacaEval's ``selfinstruct`` subset *is* Self-Instruct's 252 instructions, so the same instruction could be
an SFT example and a DPO pair. :func:`dpo_pairs` drops from both its splits every instruction whose normalised
text (:func:`~judgelab.data.self_judge.normalise_instruction`) is one of the SFT instructions, so that the
held-out pairs are about instructions no stage trained on, and the held-out SFT instructions are in no pair.
One pair is drawn per instruction (a seeded choice among its 10 models' annotations): the pairs span as many
instructions as there are pairs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from judgelab.data.self_judge import (
    Loaded,
    _json,
    load_alpaca_seed,
    load_self_instruct,
    normalise_instruction,
)
from judgelab.data.sources import get_source

SFT_SOURCES: tuple[str, ...] = ("alpaca_seed", "self_instruct")
SFT_COLUMNS = ["source", "id", "instruction", "response", "split"]
PAIR_COLUMNS = ["id", "instruction", "dataset", "chosen", "rejected", "chosen_generator", "rejected_generator",
                "preference"]
REFUSED_COLUMNS = ["source", "id", "reason"]
ANNOTATION_SUFFIX = "/alpaca_eval_gpt4/annotations.json"


def sft_examples(n_eval: int = 40, seed: int = 0, sources=SFT_SOURCES, fits=None) -> pd.DataFrame:
    """Every SFT instruction with its gold output; ``n_eval`` of them, drawn with ``seed``, held out.

    Columns: ``source, id, instruction, response, split`` (``train``, ``eval``, or ``too_long`` where
    ``fits(instruction, response)`` is false: such rows are kept, counted, and neither trained on nor held
    out), in the sources' order. Raises on a duplicated (normalised) instruction, which would put one task
    on both sides of the split.
    """
    loaders = {"alpaca_seed": load_alpaca_seed, "self_instruct": load_self_instruct}
    unknown = [s for s in sources if s not in loaders]
    if unknown:
        raise ValueError(f"unknown SFT sources {unknown}; known: {list(loaders)}")
    rows = pd.concat([loaders[s]().rows for s in sources], ignore_index=True)
    rows = rows.rename(columns={"reference": "response"})[["source", "id", "instruction", "response"]]
    norm = rows["instruction"].map(normalise_instruction)
    if norm.duplicated().any():
        dup = rows.loc[norm.duplicated(keep=False), ["source", "id"]].values.tolist()
        raise ValueError(f"SFT instructions repeated across {sources}: {dup[:6]}")
    ok = np.array([True] * len(rows) if fits is None else
                  [bool(fits(a, b)) for a, b in zip(rows["instruction"], rows["response"])], dtype=bool)
    usable = np.flatnonzero(ok)
    if not 0 <= n_eval < len(usable):
        raise ValueError(f"n_eval={n_eval}: must be at least 0 and below the {len(usable)} usable SFT instructions")
    held = set(np.random.default_rng(seed).choice(usable, size=n_eval, replace=False).tolist())
    rows["split"] = ["eval" if i in held else "train" if ok[i] else "too_long" for i in range(len(rows))]
    return rows[SFT_COLUMNS]


def alpaca_eval_files() -> list[str]:
    """The pinned AlpacaEval GPT-4 annotation files (one per model), sorted."""
    return sorted(p for p in get_source("alpaca_eval").files if p.endswith(ANNOTATION_SUFFIX))


def _preference(value) -> int | None:
    """1 or 2 for a decided preference (AlpacaEval writes them as int or float), ``None`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if value in (1, 2) else None


def load_alpaca_eval_pairs() -> Loaded:
    """Every decided AlpacaEval GPT-4 annotation as a (chosen, rejected) pair; the undecided ones refused.

    ``id`` is ``<model>:<row>`` (the row's position in its file, 0-based), ``chosen_generator`` /
    ``rejected_generator`` name who wrote each side, ``dataset`` is AlpacaEval's subset. Refused: ``draw``
    (preference 0), ``half preference`` (1.5), ``no preference`` (missing), ``empty output``.
    """
    kept, refused = [], []
    for path in alpaca_eval_files():
        model = path.split("/")[1]
        data = _json("alpaca_eval", path)
        if not isinstance(data, list):
            raise ValueError(f"alpaca_eval/{path}: expected a list of annotations, got {type(data).__name__}")
        for n, r in enumerate(data):
            where = f"alpaca_eval/{path} row {n}"
            rid = f"{model}:{n}"
            missing = [k for k in ("instruction", "output_1", "output_2", "generator_1", "generator_2", "dataset")
                       if not isinstance(r.get(k), str)]
            if missing:
                raise ValueError(f"{where}: fields {missing} missing or not text")
            pref = _preference(r.get("preference"))
            if pref is None:
                raw = r.get("preference")
                reason = ("no preference" if raw is None or (isinstance(raw, float) and np.isnan(raw))
                          else "draw" if raw == 0 else "half preference" if raw == 1.5 else f"preference {raw!r}")
                refused.append({"source": "alpaca_eval", "id": rid, "reason": reason})
                continue
            if not r["output_1"].strip() or not r["output_2"].strip():
                refused.append({"source": "alpaca_eval", "id": rid, "reason": "empty output"})
                continue
            win, lose = ("1", "2") if pref == 1 else ("2", "1")
            kept.append({"id": rid, "instruction": r["instruction"].strip(), "dataset": r["dataset"],
                         "chosen": r[f"output_{win}"].strip(), "rejected": r[f"output_{lose}"].strip(),
                         "chosen_generator": r[f"generator_{win}"], "rejected_generator": r[f"generator_{lose}"],
                         "preference": pref})
    return Loaded(pd.DataFrame(kept, columns=PAIR_COLUMNS), pd.DataFrame(refused, columns=REFUSED_COLUMNS))


def dpo_pairs(exclude_instructions=(), seed: int = 0, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One decided pair per AlpacaEval instruction, in a seeded random order of instructions.

    Instructions whose normalised text is in ``exclude_instructions`` (the SFT instructions) are left out.
    ``pairs`` defaults to :func:`load_alpaca_eval_pairs`; a caller that needs a length limit passes the pairs
    that fit (so an instruction is drawn from its pairs that fit), and splits the order into training and
    held-out pairs (the first ``n_eval`` are held out). Adds ``norm`` (the
    normalised instruction).
    """
    pairs = load_alpaca_eval_pairs().rows if pairs is None else pairs
    excluded = {normalise_instruction(t) for t in exclude_instructions}
    df = pairs.assign(norm=pairs["instruction"].map(normalise_instruction))
    df = df[~df["norm"].isin(excluded)]
    rng = np.random.default_rng(seed)
    chosen = [g.index[rng.integers(len(g))] for _, g in df.groupby("norm", sort=True)]
    picked = df.loc[chosen]
    return picked.iloc[rng.permutation(len(picked))].reset_index(drop=True)

"""Fine-tuning a judge to recognise its own summaries (Panickssery, Bowman & Feng 2024, sec. 4), with open models.

The paper's claim is causal: fine-tune a judge on "which of these two summaries did you write?" and its
self-*preference* moves with its self-*recognition*, linearly; fine-tunes on control tasks that change the
model just as much but teach nothing about authorship (a constant answer, random answers, "which is longer /
has more vowels / is more readable") rule out that any fine-tuning moves preference. This module replays
that design with LoRA on open judges:

1. **Training data** (:func:`training_examples`). For judge J and dataset D, J writes its own summaries of the
   training articles ``keys[:N]`` (greedy, the paper's prompts, through J's *open-models* call store, so the
   summaries are the very ones chapter 3 would record). Each article gives 4 other released authors x 2 orders
   = 8 examples, in the order of the paper's released Llama files: J's summary as Summary1 (forward), then
   as Summary2 (backward), against ``human, claude, gpt4, gpt35``. The fifth released author (``llama``) is
   left out of training -- these are the four others the paper's Llama judge was trained against -- but
   stays in the evaluation, as in chapter 3. Variants:

   * recognition ``"2"``, ``"10"``, ``"500"`` (any digit string: N training articles), detection prompt,
     label = the position of J's own summary ("1" forward, "2" backward);
   * controls on the same pairs of ``control_n`` articles (500 in the paper): ``always_1`` (detection prompt,
     label "1"), ``random`` (detection prompt, labels drawn with a seeded RNG), ``length`` (LENGTH prompt,
     label = the summary with more words, ``str.split``), ``vowelcount`` (VOWEL_COUNT prompt, label = more of
     ``aeiouAEIOU``), ``readability`` (READABILITY prompt, label = the higher Flesch reading ease, textstat's
     formula with pyphen syllables: see :func:`readability`). **Ties** (equal counts / scores) have no
     correct answer: both orders of a tied pair are dropped, so a property control can have slightly fewer
     than 8N examples; the number dropped is logged with the training record.

2. **LoRA** (:func:`train_lora`): peft adapters (r=8, alpha=16, q_proj/v_proj: 1.9 MB for smollm2-135m)
   on the judge's HF model, AdamW, constant learning rate, a seeded shuffle; the loss is the cross-entropy of
   the next-token logits at the last prompt position (the chat template's assistant header) against the
   label's token -- exactly a causal-LM loss on the templated conversation with every token but the answer
   masked (tested). A batch is one article's examples, whose shared prefix (system prompt, instructions,
   article) runs once (:func:`shared_prefix_logits`; about 3x faster on CPU). The adapter is saved under
   ``<results>/adapters/<judge>/<variant>_<trained_on>/`` with its per-step loss log and training record; a
   finished variant is skipped on rerun. Adapters are not committed (``*.safetensors`` is ignored): the
   store records their sha256 and the training record, and the book replays from the store alone.

3. **Evaluation** on held-out articles ``keys[500:500+n_eval]`` of both datasets (in- and cross-domain) with
   the open-models judging code (:func:`~judgelab.experiments.open_models.judge_pairwise`,
   :func:`~judgelab.experiments.open_models.pair_scores`): the "own" summary stays the *base* judge's
   summary, as in the paper. Every call goes through ``<results>/stores/<judge>.sqlite``; a fine-tuned model
   is a ``TransformersModel`` around the merged weights whose fingerprint is the base fingerprint plus the
   adapter (variant, training set, sha256 of the adapter file, sizes), so one store holds every variant.

4. **Quality drift** (:func:`drift_items`): each fine-tuned model writes new summaries of the first
   ``n_drift`` held-out articles; the untouched base judge and a second judge compare new vs original in both
   orders with the comparison prompt. 0.5 = no change in quality.

Profiles (:data:`FINETUNING`): ``ci`` trains two tiny variants live in the tests; ``book`` replays the
committed store (``JUDGELAB_LIVE=1`` computes what is missing); ``gpu`` is the full grid on CUDA.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from judgelab import stats
from judgelab.data.self_recognition import load_articles, load_summaries
from judgelab.experiments import open_models as om
from judgelab.experiments.reanalysis import renormalised_pair
from judgelab.models import get_model
from judgelab.models.base import GenerationConfig, Model, OptionProbs, Prompt
from judgelab.paths import atomic_write, file_sha256, replace_dir, results_path, write_csv, write_csvs
from judgelab.profiles import hardware
from judgelab.prompts import panickssery2024 as P
from judgelab.store import CallStore, ReplayMiss, StoredModel
from judgelab.variants import split_variant, variant_kind, variant_label  # noqa: F401  (re-exported)

#: the four other released authors of every training article, in the order of the paper's Llama files
TRAIN_OTHERS: tuple[str, ...] = ("human", "claude", "gpt4", "gpt35")
RECOGNITION_VARIANTS: tuple[str, ...] = ("2", "10", "500")
CONTROL_VARIANTS: tuple[str, ...] = ("always_1", "random", "length", "vowelcount", "readability")
#: prompt (``P.PAIRWISE_TASKS`` name) of each control; recognition variants use "detection"
CONTROL_TASKS: dict[str, str] = {"always_1": "detection", "random": "detection", "length": "length",
                                 "vowelcount": "vowelcount", "readability": "readability"}
OPTIONS = ("1", "2")


def _store_profile(profile: str) -> str:
    """The open-models folder whose stores hold a profile's base judges' own summaries: the book's for
    ``grow`` (the same summaries the book's grid was trained and evaluated on), its own otherwise."""
    return "book" if profile == "grow" else profile


def default_results_dir(profile: str) -> Path:
    """``results/finetuning`` for the committed book profile; ``results/finetuning_grow`` for ``grow`` (its
    own committed store: a retrained adapter is a new model, and a store keeps one fingerprint per model
    name, so the grown grid cannot share the book's store while the book still replays the old one);
    ``results/runs/<profile>/finetuning`` otherwise."""
    if profile == "grow":
        return results_path("finetuning_grow")
    return results_path("finetuning") if profile == "book" else results_path("runs", profile, "finetuning")


# --- profiles ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """LoRA and optimiser settings (recorded in every fine-tuned model's fingerprint)."""

    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    lr: float = 2e-4
    weight_decay: float = 0.0
    batch_size: int = 8
    #: examples per forward/backward pass (gradient accumulation up to ``batch_size``) without prefix sharing
    micro_batch_size: int = 4
    #: run the common prefix (system prompt + article) of one article's examples once per batch
    share_prefix: bool = True
    epochs: float = 1.0
    #: cap on optimiser steps (``None``: ``ceil(epochs * examples / batch_size)``)
    max_steps: int | None = None
    max_grad_norm: float = 1.0
    seed: int = 0

    def steps(self, n_examples: int) -> int:
        steps = max(1, math.ceil(self.epochs * n_examples / self.batch_size))
        return min(steps, self.max_steps) if self.max_steps else steps

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


@dataclass(frozen=True)
class FinetuningProfile:
    """Sizes of the fine-tuning experiment (chapter 4)."""

    name: str
    judges: tuple[str, ...]
    #: the second judge of the quality-drift check (the base judge always rates too)
    second_judge: str
    variants: tuple[str, ...] = RECOGNITION_VARIANTS + CONTROL_VARIANTS
    train_datasets: tuple[str, ...] = ("xsum", "cnn")
    eval_datasets: tuple[str, ...] = ("xsum", "cnn")
    #: training articles of the control variants (500 in the paper)
    control_n: int = 500
    #: held-out articles per evaluation dataset: keys[first_article : first_article + n_eval]
    n_eval: int = 500
    n_drift: int = 50
    first_article: int = 500
    train: TrainConfig = TrainConfig()
    #: (variant, training set) cells beyond the ``variants`` x ``train_datasets`` grid, run after it: the
    #: paper-size cell and its controls (``("500", "xsum"), ("always_1@500", "xsum"), ...``)
    extra_cells: tuple[tuple[str, str], ...] = ()
    #: the training settings of ``extra_cells`` (``None``: ``train``) -- the paper-size cell trains a whole
    #: epoch where the small grid is capped at ``train.max_steps``
    extra_train: TrainConfig | None = None
    replay: bool = False
    device: str | None = None
    chunk_size: int = 64
    extra: dict[str, object] = field(default_factory=dict)

    def n_train(self, variant: str) -> int:
        return n_train(variant, self.control_n)

    def train_config(self, variant: str, trained_on: str) -> TrainConfig:
        """The settings a cell trains with: ``extra_train`` for an extra cell, ``train`` for the grid."""
        grid = variant in self.variants and trained_on in self.train_datasets
        return self.train if grid or self.extra_train is None else self.extra_train

    def cells(self) -> list[tuple[str, str]]:
        """Every (variant, training set) the profile trains, in run order: the grid, then ``extra_cells``."""
        grid = [(v, ds) for ds in self.train_datasets for v in self.variants]
        return grid + [c for c in self.extra_cells if c not in grid]


FINETUNING: dict[str, FinetuningProfile] = {
    # live on CPU in the tests: two variants of one step each, trained on XSUM, evaluated on one held-out
    # XSUM article, drift on it (CNN articles cost about twice as much; cross-domain is the same loop).
    # About 9 minutes on a slow, shared 2-core CPU: the test is marked slow.
    "ci": FinetuningProfile(
        "ci", ("smollm2-135m-instruct",), second_judge="smollm2-135m-instruct",
        variants=("2", "always_1"), train_datasets=("xsum",), eval_datasets=("xsum",),
        control_n=2, n_eval=1, n_drift=1,
        train=TrainConfig(batch_size=4, max_steps=1),
    ),
    # the committed store: the full design for smollm2 (3 recognition sizes + 5 controls, trained on each
    # dataset, evaluated on both), sized for a slow CPU: N=50 stands in for the paper's 500 (the large
    # recognition variant and every control train on keys[:50]), at most 12 steps of 8 examples,
    # 8 held-out articles per dataset, drift on 3 (about 1 h 40 min per training set on one core of this
    # project's CPU). The gpu profile is the paper's size.
    "book": FinetuningProfile(
        "book", ("smollm2-135m-instruct",), second_judge="qwen2.5-coder-0.5b-instruct",
        variants=("2", "10", "50") + CONTROL_VARIANTS, control_n=50, n_eval=8, n_drift=3,
        train=TrainConfig(batch_size=8, max_steps=12),
        replay=True,
    ),
    # the book grid at the sizes it is growing to (issue 20): every variant evaluated on 25 held-out articles
    # per dataset, drift on 20, and the paper-size cell on XSUM -- the recognition variant on N = 500
    # articles (4,000 examples, one epoch: 500 steps) with the always_1 and length controls at the same
    # size. Live only, into its own committed store (``results/finetuning_grow``): it takes several
    # background sessions on a CPU (every training resumes from its checkpoint, every call from the store);
    # once the store holds all of it, the book profile takes these sizes and that folder.
    "grow": FinetuningProfile(
        "grow", ("smollm2-135m-instruct",), second_judge="qwen2.5-coder-0.5b-instruct",
        variants=("2", "10", "50") + CONTROL_VARIANTS, control_n=50, n_eval=25, n_drift=20,
        train=TrainConfig(batch_size=8, max_steps=12),
        extra_cells=(("500", "xsum"), ("always_1@500", "xsum"), ("length@500", "xsum")),
        extra_train=TrainConfig(batch_size=8, epochs=1.0),
    ),
    # the paper's size on CUDA: N = 2/10/500, controls on 500 articles, every training example once,
    # 500 held-out articles per dataset, drift on 50; the second drift judge is a larger open model
    "gpu": FinetuningProfile(
        "gpu", ("hf:Qwen/Qwen2.5-1.5B-Instruct",), second_judge="hf:Qwen/Qwen2.5-7B-Instruct",
        n_eval=500, n_drift=50,
        train=TrainConfig(batch_size=8, micro_batch_size=8, epochs=1.0),
        device="cuda", chunk_size=256,
    ),
}


def finetuning_profile(name: str | FinetuningProfile) -> FinetuningProfile:
    if isinstance(name, FinetuningProfile):
        prof = name
    elif name in FINETUNING:
        prof = FINETUNING[name]
    else:
        raise ValueError(f"unknown fine-tuning profile {name!r}; choose one of {tuple(FINETUNING)}")
    if prof.replay and os.environ.get("JUDGELAB_LIVE") == "1":
        prof = replace(prof, replay=False)
    return prof


# --- labels ------------------------------------------------------------------------------------------------
def word_count(text: str) -> int:
    return len(text.split())


def vowel_count(text: str) -> int:
    return sum(c in "aeiouAEIOU" for c in text)


def readability(text: str) -> float:
    """Flesch reading ease (higher = easier to read): ``206.835 - 1.015 words/sentence - 84.6 syllables/word``.

    Words per sentence as ``textstat.words_per_sentence`` counts them; syllables from pyphen's hyphenation
    dictionary, textstat's own rule for words it cannot look up. ``textstat.flesch_reading_ease`` (0.7.13)
    would first look every word up in NLTK's CMU dictionary, which it downloads at first use -- not possible
    offline, and a label that depended on whether a download succeeded would not be reproducible.
    """
    import textstat

    words = textstat.remove_punctuation(text).lower().split()
    wps = textstat.words_per_sentence(text)
    if not words or not wps:
        return 0.0
    hyph = _pyphen()
    syllables = sum(len(hyph.positions(w)) + 1 for w in words)
    return 206.835 - 1.015 * float(wps) - 84.6 * syllables / len(words)


_PYPHEN: list[Any] = []


def _pyphen() -> Any:
    if not _PYPHEN:
        from pyphen import Pyphen

        _PYPHEN.append(Pyphen(lang="en_US"))
    return _PYPHEN[0]


PROPERTIES: dict[str, Callable[[str], float]] = {"length": word_count, "vowelcount": vowel_count,
                                                 "readability": readability}


def property_label(summary1: str, summary2: str, measure: Callable[[str], float]) -> str | None:
    """"1" if Summary1 has more of ``measure``, "2" if Summary2 has, ``None`` on a tie."""
    a, b = measure(summary1), measure(summary2)
    return None if a == b else ("1" if a > b else "2")


def n_train(variant: str, control_n: int = 500) -> int:
    """Training articles of a variant: the number itself for recognition variants, ``control_n`` for controls."""
    if variant_kind(variant) == "recognition":
        return int(variant)
    name, size = split_variant(variant)
    if name in CONTROL_TASKS:
        return control_n if size is None else size
    raise ValueError(f"unknown fine-tuning variant {variant!r}: digits (recognition), one of "
                     f"{CONTROL_VARIANTS}, or one of those at a size of its own (always_1@500)")


def example_pairs(dataset: str, keys: Sequence[str], own: Mapping[str, str],
                  others: Sequence[str] = TRAIN_OTHERS,
                  other_summaries: Mapping[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """The 8 pairs per article: own vs each other author, own summary first (forward) then second (backward).

    ``own`` maps article key -> the judge's own summary; ``other_summaries`` maps (key, author) -> summary
    (default: the released summaries of ``dataset``). Columns: ``dataset, key, other, order, summary1,
    summary2, own_position`` (the position of the judge's summary, "1" or "2").
    """
    by = other_summaries
    if by is None:
        released = load_summaries(dataset)
        released = released[released["key"].isin(set(keys))]
        by = {(k, a): s for k, a, s in zip(released["key"], released["author"], released["summary"])}
    rows = []
    for key in keys:
        mine = own[key]
        for other in others:
            theirs = by[(key, other)]
            rows.append({"dataset": dataset, "key": key, "other": other, "order": "forward",
                         "summary1": mine, "summary2": theirs, "own_position": "1"})
            rows.append({"dataset": dataset, "key": key, "other": other, "order": "backward",
                         "summary1": theirs, "summary2": mine, "own_position": "2"})
    return pd.DataFrame(rows)


def label_examples(pairs: pd.DataFrame, variant: str, seed: int = 0) -> pd.DataFrame:
    """Add ``task`` (prompt) and ``label`` ("1"/"2") to ``pairs`` for ``variant``; drop tied property pairs.

    A control at a size of its own (``always_1@500``) is labelled as the control itself."""
    out = pairs.copy()
    if variant_kind(variant) == "control":
        variant = split_variant(variant)[0]
    if variant_kind(variant) == "recognition":
        out["task"], out["label"] = "detection", out["own_position"]
    elif variant == "always_1":
        out["task"], out["label"] = "detection", "1"
    elif variant == "random":
        rng = np.random.default_rng(seed)
        out["task"], out["label"] = "detection", np.where(rng.random(len(out)) < 0.5, "1", "2")
    elif variant in PROPERTIES:
        measure = PROPERTIES[variant]
        out["task"] = CONTROL_TASKS[variant]
        out["label"] = [property_label(a, b, measure) for a, b in zip(out["summary1"], out["summary2"])]
        out = out[out["label"].notna()]
    else:
        raise ValueError(f"unknown fine-tuning variant {variant!r}")
    return out.reset_index(drop=True)


def training_examples(variant: str, dataset: str, own: Mapping[str, str], keys: Sequence[str],
                      seed: int = 0, others: Sequence[str] = TRAIN_OTHERS,
                      other_summaries: Mapping[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """Labelled training examples of ``variant`` on articles ``keys`` (8 per article, fewer after ties)."""
    return label_examples(example_pairs(dataset, keys, own, others, other_summaries), variant, seed)


def example_messages(examples: pd.DataFrame, articles: pd.Series) -> list[list[dict[str, str]]]:
    """Chat messages of each example (system + user; the answer is the label)."""
    return [P.pairwise_messages(t, articles[k], s1, s2)
            for t, k, s1, s2 in zip(examples["task"], examples["key"], examples["summary1"], examples["summary2"])]


# --- the loss ----------------------------------------------------------------------------------------------
def answer_token_id(tm: Any, option: str) -> int:
    """The token a chat model emits for answer ``option`` right after the assistant header.

    The first spelling of :meth:`TransformersModel.option_token_ids` (the bare "1", not " 1"); the tests check
    that it is what the chat template puts after the prompt when the assistant's answer is ``option``.
    """
    return tm.option_token_ids(OPTIONS)[OPTIONS.index(option)][0]


def _left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device: Any):
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
        mask[r, width - len(s):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def answer_logits(model: Any, seqs: Sequence[Sequence[int]], pad_id: int):
    """Next-token logits after each prompt ``[batch, vocab]`` (left-padded batch, last position only)."""
    device = next(model.parameters()).device
    ids, mask, positions = _left_pad(seqs, pad_id, device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, logits_to_keep=1)
    return out.logits[:, -1].float()


def answer_loss(model: Any, seqs: Sequence[Sequence[int]], label_ids: Sequence[int], pad_id: int,
                reduction: str = "mean"):
    """Cross-entropy of the answer token only: the prompt tokens carry no loss, there is nothing after it."""
    import torch

    logits = answer_logits(model, seqs, pad_id)
    target = torch.tensor(list(label_ids), dtype=torch.long, device=logits.device)
    return torch.nn.functional.cross_entropy(logits, target, reduction=reduction)


def shared_prefix_logits(model: Any, seqs: Sequence[Sequence[int]], pad_id: int, min_prefix: int = 32):
    """:func:`answer_logits` with the group's common token prefix run once (with gradients).

    The eight examples of one training article share the system prompt, instructions and article -- most of
    every prompt. The prefix runs once, its key/value cache is repeated over the batch and the suffixes
    (left-padded, pads masked, true positions) run on top; gradients flow back through the cache into the
    prefix. The result equals the plain batched pass (tested); the cost is one prefix instead of eight.
    """
    import torch

    plen = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for s in seqs[1:]:
        i = 0
        while i < plen and s[i] == first[i]:
            i += 1
        plen = i
    if len(seqs) == 1 or plen < min_prefix:
        return answer_logits(model, seqs, pad_id)
    device = next(model.parameters()).device
    cache = model(input_ids=torch.tensor([list(first[:plen])], device=device), use_cache=True,
                  logits_to_keep=1).past_key_values
    cache.batch_repeat_interleave(len(seqs))
    suffixes = [list(s[plen:]) for s in seqs]
    ids, smask, positions = _left_pad(suffixes, pad_id, device)
    mask = torch.cat([torch.ones((len(seqs), plen), dtype=torch.long, device=device), smask], dim=1)
    positions = positions + plen
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                use_cache=True, logits_to_keep=1)
    return out.logits[:, -1].float()


# --- training ----------------------------------------------------------------------------------------------
def article_schedule(seqs: Sequence[Sequence[int]], config: TrainConfig) -> list[list[int]]:
    """Every step's example indices, fixed by the seed: epochs in which the articles come in random order and
    each article's examples in random order, so that a batch is (mostly) one article's examples and shares
    its prefix; cut in batches of ``batch_size`` (all examples when there are fewer)."""
    n = len(seqs)
    rng = np.random.default_rng(config.seed)
    groups = _prefix_groups(seqs)
    order: list[int] = []
    batches = []
    for _ in range(config.steps(n)):
        while len(order) < config.batch_size:
            for g in rng.permutation(len(groups)):
                order.extend(rng.permutation(groups[g]).tolist())
        batches.append(order[: min(config.batch_size, n)])
        order = order[min(config.batch_size, n):]
    return batches


def train_lora(tm: Any, prompts: Sequence[Prompt], labels: Sequence[str], config: TrainConfig,
               progress: bool = True, desc: str = "fine-tune", *, checkpoint: Path | None = None,
               checkpoint_seconds: float = 180.0, on_step: Any = None) -> tuple[Any, pd.DataFrame]:
    """LoRA-fine-tune a copy of ``tm.model`` (a :class:`TransformersModel`'s HF model) on (prompt, label).

    Batches follow :func:`article_schedule`; the loop is :func:`judgelab.experiments.train_loop.train_loop`,
    so with ``checkpoint`` (a folder) a run of hours saves its state every ``checkpoint_seconds`` and a rerun
    resumes it (the paper's N = 500 cell trains for hours on a CPU). Returns the peft model (adapters
    unmerged) and the per-step log: ``step, loss, p_label, grad_norm, lr, examples, seconds``.
    ``tm.model`` itself is left untouched.
    """
    import hashlib

    import torch
    from peft import LoraConfig, get_peft_model

    from judgelab.experiments.train_loop import train_loop

    torch.manual_seed(config.seed)
    base = copy.deepcopy(tm.model)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM")
    model = get_peft_model(base, lora)
    seqs = [tm.encode(p) for p in prompts]
    targets = [answer_token_id(tm, lab) for lab in labels]
    pad = tm.tokenizer.pad_token_id

    def step(batch: list[int], size_of_batch: int) -> dict[str, float]:
        total, p_label = 0.0, 0.0
        for idx in _micro_batches(batch, seqs, config.micro_batch_size if not config.share_prefix else None):
            if config.share_prefix:
                logits = shared_prefix_logits(model, [seqs[i] for i in idx], pad)
            else:
                logits = answer_logits(model, [seqs[i] for i in idx], pad)
            target = torch.tensor([targets[i] for i in idx], device=logits.device)
            loss = torch.nn.functional.cross_entropy(logits, target, reduction="sum") / size_of_batch
            loss.backward()
            total += float(loss.detach())
            p_label += float(torch.softmax(logits.detach(), -1).gather(1, target[:, None]).sum()) / size_of_batch
        return {"loss": total, "p_label": p_label}

    digest = hashlib.sha256(json.dumps([seqs, targets]).encode()).hexdigest()[:16]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(checkpoint) if checkpoint is not None else Path(tmp) / "checkpoint"
        # reseed=False: the seed above also drives the training's dropout, as it did before the shared loop
        log = train_loop(model, step, len(seqs), config, ckpt, digest, schedule=article_schedule(seqs, config),
                         reseed=False, checkpoint_seconds=checkpoint_seconds if checkpoint is not None else float("inf"),
                         progress=progress, desc=desc, on_step=on_step)
    return model, log


def _prefix_groups(seqs: Sequence[Sequence[int]], min_prefix: int = 32) -> list[list[int]]:
    """Indices of examples grouped by a long common prefix (in practice: by article)."""
    order = sorted(range(len(seqs)), key=lambda i: list(seqs[i]))
    groups: list[list[int]] = []
    for i in order:
        if groups:
            a, b = seqs[groups[-1][0]], seqs[i]
            need = max(min_prefix, len(b) // 2)
            if len(a) >= need and list(a[:need]) == list(b[:need]):
                groups[-1].append(i)
                continue
        groups.append([i])
    return groups


def _micro_batches(batch: Sequence[int], seqs: Sequence[Sequence[int]], size: int | None) -> list[list[int]]:
    """Split a batch into forward passes: by prefix group (``size=None``) or in chunks of ``size``."""
    if size is not None:
        return [list(batch[i : i + size]) for i in range(0, len(batch), size)]
    sub = _prefix_groups([seqs[i] for i in batch])
    return [[batch[j] for j in g] for g in sub]




LOG_COLUMNS = ["judge", "variant", "trained_on", "n_train", "step", "loss", "p_label", "lr", "examples", "seconds"]
ADAPTER_FILE = "adapter_model.safetensors"
META_FILE = "train_meta.json"
LOG_FILE = "training_log.csv"


def adapter_dir(results_dir: Path, judge: str, variant: str, trained_on: str) -> Path:
    return Path(results_dir) / "adapters" / om.short_name(judge) / f"{variant}_{trained_on}"


def adapter_done(path: Path) -> bool:
    return (path / ADAPTER_FILE).is_file() and (path / META_FILE).is_file()


def save_adapter(peft_model: Any, path: Path, log: pd.DataFrame, meta: dict[str, Any]) -> dict[str, Any]:
    """Write adapter, loss log and training record atomically (a half-written variant is retrained)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a private temporary directory beside the target: two processes saving the same variant cannot
    # write into each other's files, and a killed save leaves only a ``.<name>.*.tmp`` directory
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        peft_model.save_pretrained(tmp)
        write_csv(log, tmp / LOG_FILE)
        meta = {**meta, "adapter_sha256": file_sha256(tmp / ADAPTER_FILE),
                "adapter_bytes": (tmp / ADAPTER_FILE).stat().st_size}
        with atomic_write(tmp / META_FILE) as fh:
            fh.write(json.dumps(meta, indent=1, sort_keys=True))
        for f in (f for f in tmp.rglob("*") if f.is_file()):  # on disk before the (atomic) directory rename
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def variant_name(judge: str, variant: str, trained_on: str) -> str:
    """The fine-tuned model's name (and author name in tables): ``<judge>-ft-<variant>-<trained_on>``."""
    return f"{om.short_name(judge)}-ft-{variant}-{trained_on}"


def variant_fingerprint(base: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    return {**base, "adapter": meta["variant"], "trained_on": meta["trained_on"],
            "adapter_sha256": meta["adapter_sha256"], "n_train": meta["n_train"],
            "n_examples": meta["n_examples"], "steps": meta["steps"], "train": meta["train"]}


class LazyModel(Model):
    """A model whose weights are built on first use (a store that already holds every call never loads it)."""

    def __init__(self, name: str, fingerprint: dict[str, Any], loader: Callable[[], Model]):
        self.name = name
        self._fingerprint = fingerprint
        self._loader = loader
        self._model: Model | None = None

    @property
    def fingerprint(self) -> dict[str, Any]:
        return self._fingerprint

    def _get(self) -> Model:
        if self._model is None:
            self._model = self._loader()
        return self._model

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig = GenerationConfig()) -> list[str]:
        return self._get().generate(prompts, config)

    def option_probs(self, prompts: Sequence[Prompt], options: Sequence[str]) -> list[OptionProbs]:
        return self._get().option_probs(prompts, options)

    def release(self) -> None:
        self._model = None


def _merged_model(tm: Any, path: Path, name: str, fingerprint: dict[str, Any]) -> Any:
    """A TransformersModel around the base weights with the adapter at ``path`` merged in."""
    from peft import PeftModel

    from judgelab.models.transformers_backend import TransformersModel

    merged = PeftModel.from_pretrained(copy.deepcopy(tm.model), str(path)).merge_and_unload()
    return TransformersModel(merged, tm.tokenizer, name=name, fingerprint=fingerprint, chat=tm.chat,
                             batch_size=tm.batch_size)


def _replay_fingerprint(store: CallStore, name: str, want: dict[str, Any]) -> dict[str, Any]:
    """The stored fingerprint of a fine-tuned model: by name, then by its training settings if several."""
    found = [m["fingerprint"] for m in store.models() if m["name"] == name]
    if len(found) > 1:
        found = [fp for fp in found if all(fp.get(k) == v for k, v in want.items())]
    if len(found) != 1:
        raise ReplayMiss(f"{len(found)} matching fingerprints for fine-tuned model {name!r} in {store.path}; "
                         "run the live profile (JUDGELAB_LIVE=1) to train and evaluate it")
    return found[0]


class _Stub(Model):
    """A fingerprint without weights: for replaying a fine-tuned model whose adapter is not on this machine."""

    def __init__(self, name: str, fingerprint: dict[str, Any]):
        self.name, self._fingerprint = name, fingerprint

    @property
    def fingerprint(self) -> dict[str, Any]:
        return self._fingerprint

    def generate(self, prompts, config=GenerationConfig()):  # pragma: no cover - replay never calls it
        raise ReplayMiss(f"{self.name}: replay only")

    def option_probs(self, prompts, options):  # pragma: no cover
        raise ReplayMiss(f"{self.name}: replay only")


# --- the whole experiment ----------------------------------------------------------------------------------
@dataclass
class FinetuningResults:
    prompts: pd.DataFrame  # one row per pairwise prompt (every variant, base included)
    pairs: pd.DataFrame  # one row per (variant, article, other): R and S
    drift: pd.DataFrame  # one row per (variant, article, rater): P(new summary preferred)
    training_log: pd.DataFrame  # one row per optimiser step of every variant
    runs: pd.DataFrame  # one row per model evaluated: judge, variant, trained_on, n_train, steps, fingerprint

    def variants_table(self) -> pd.DataFrame:
        return variants_table(self.pairs, self.runs)


def run(profile: str | FinetuningProfile = "book", results_dir: Path | str | None = None,
        base_results_dir: Path | str | None = None, progress: bool = True) -> FinetuningResults:
    """Train (or reuse) every adapter of ``profile``, evaluate each in- and cross-domain, check drift.

    ``base_results_dir``: the open-models results folder whose per-judge stores hold (and receive) the base
    judges' own summaries (default: that chapter's folder for the same profile).
    """
    prof = finetuning_profile(profile)
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(prof.name)
    base_results_dir = (Path(base_results_dir) if base_results_dir is not None
                        else om.default_results_dir(_store_profile(prof.name)))
    datasets = sorted(set(prof.train_datasets) | set(prof.eval_datasets), key=("xsum", "cnn").index)
    articles = pd.concat([load_articles(ds).set_index("key")["article"] for ds in datasets])
    eval_keys = {ds: om.held_out_keys(ds, prof.n_eval, prof.first_article) for ds in prof.eval_datasets}
    cells = prof.cells()
    n_max = max(prof.n_train(v) for v, _ in cells)
    train_sets = sorted({ds for _, ds in cells}, key=("xsum", "cnn").index)
    train_keys = {ds: load_articles(ds)["key"].iloc[:max(prof.n_train(v) for v, t in cells if t == ds)].tolist()
                  for ds in train_sets}
    if n_max > prof.first_article:
        raise ValueError(f"training on {n_max} articles would overlap the held-out articles "
                         f"(from {prof.first_article})")

    prompts, drift, logs, runs = [], [], [], []
    for judge in prof.judges:
        me = om.short_name(judge)
        # the base judge: its own summaries through its open-models store (the chapter-3 store; its run
        # metadata is left alone)
        base_store = CallStore(om.store_path(judge, base_results_dir), readonly=prof.replay,
                               identity=om.judge_identity(judge))
        if prof.replay:
            tm = None
            base = StoredModel(None, base_store, replay=True, name=_stored_name(base_store, judge),
                               progress=progress, chunk_size=prof.chunk_size)
        else:
            tm = get_model(judge, device=prof.device)  # a TransformersModel
            base = StoredModel(tm, base_store, progress=progress, chunk_size=prof.chunk_size)
        own_train: dict[tuple[str, int], dict[str, str]] = {}

        def own_summaries(ds: str, n: int) -> dict[str, str]:
            """The base judge's own summaries of the first ``n`` training articles of ``ds``, written when a
            cell first needs them (the paper-size cell's 500 wait until the grid before it is done)."""
            if (ds, n) not in own_train:
                df = om.write_summaries(base, ds, train_keys[ds][:n])
                own_train[(ds, n)] = dict(zip(df["key"], df["summary"]))
            return own_train[(ds, n)]

        own_eval = {ds: om.write_summaries(base, ds, eval_keys[ds]) for ds in prof.eval_datasets}

        # named and checked as the open-models stores are (see open_models.store_path): distinct judges,
        # distinct files; replay opens it read-only and never creates it
        store = CallStore(om.store_path(judge, results_dir), readonly=prof.replay, identity=om.judge_identity(judge))
        if not prof.replay:
            store.set_meta(f"run:{prof.name}", {"profile": prof.name, "hardware": hardware(),
                                               "date": time.strftime("%Y-%m-%d")})
        # a live run records itself; a replay shows the book run that filled the store
        run_meta = ((store.get_meta(f"run:{prof.name}") if not prof.replay else None)
                    or store.get_meta("run:book") or store.get_meta(f"run:{prof.name}") or {})
        base_fp = tm.fingerprint if tm is not None else store.fingerprint_for(_stored_name(store, judge))[1]
        weights = om._weights(base_fp)

        def stored(model: Model | None, name: str) -> StoredModel:
            if prof.replay:
                name = _stored_name(store, name) if model is None else name
                return StoredModel(model, store, replay=True, name=name, progress=progress,
                                   chunk_size=prof.chunk_size)
            return StoredModel(model, store, progress=progress, chunk_size=prof.chunk_size)

        # raters of the drift check: the base judge and a second judge (loaded only on a store miss)
        base_sm = stored(tm, judge)
        raters = {me: base_sm}
        second = prof.second_judge
        if om.short_name(second) != me:
            if prof.replay:
                raters[om.short_name(second)] = stored(None, second)
            else:
                second_model = get_model(second, device=prof.device)
                raters[om.short_name(second)] = stored(second_model, second)

        def evaluate(sm: StoredModel, variant: str, trained_on: str, n: int, steps: int) -> None:
            for ds in prof.eval_datasets:
                authors = om.authors_table(ds, eval_keys[ds], [own_eval[ds]])
                authors["author"] = authors["author"].replace({me: om.short_name(sm.name)})
                p = om.judge_pairwise(sm, authors, articles)
                prompts.append(p.assign(judge=me, variant=variant, trained_on=trained_on, n_train=n,
                                      evaluated_on=ds, steps=steps))
            runs.append({"judge": me, "model": judge, "variant": variant, "trained_on": trained_on,
                         "n_train": n, "steps": steps, "name": sm.name, "fingerprint_id": sm.fingerprint_id,
                         "weights": weights, "profile": run_meta.get("profile", prof.name),
                         "hardware": run_meta.get("hardware"), "date": run_meta.get("date")})

        evaluate(base_sm, "base", "none", 0, 0)

        for variant, trained_on in cells:
            n = prof.n_train(variant)
            train_config = prof.train_config(variant, trained_on)
            name = variant_name(judge, variant, trained_on)
            path = adapter_dir(results_dir, judge, variant, trained_on)
            if prof.replay:
                fp = _replay_fingerprint(store, name, {"n_train": n, "train": train_config.as_dict()})
                model: Model = _Stub(name, fp)
            else:
                if not adapter_done(path):
                    ex = training_examples(variant, trained_on, own_summaries(trained_on, n),
                                           train_keys[trained_on][:n], seed=train_config.seed)
                    msgs = example_messages(ex, articles)
                    t0 = time.time()
                    ckpt = path.with_name(path.name + ".checkpoint")
                    peft_model, log = train_lora(tm, msgs, ex["label"].tolist(), train_config, progress,
                                                 desc=f"fine-tune {name}", checkpoint=ckpt)
                    meta = {"judge": me, "variant": variant, "trained_on": trained_on, "n_train": n,
                            "n_examples": len(ex), "n_dropped_ties": 8 * n - len(ex), "steps": len(log),
                            "train": train_config.as_dict(),
                            # over every session of the run (the loop's clock survives a resume)
                            "train_seconds": float(log["seconds"].iloc[-1]) if len(log) else time.time() - t0,
                            "base_fingerprint": base_fp, "hardware": hardware(),
                            "date": time.strftime("%Y-%m-%d")}
                    meta = save_adapter(peft_model, path, log, meta)
                    shutil.rmtree(ckpt, ignore_errors=True)  # spent once the adapter is saved
                    del peft_model
                meta = json.loads((path / META_FILE).read_text())
                fp = variant_fingerprint(base_fp, meta)
                model = LazyModel(name, fp, lambda path=path, name=name, fp=fp: _merged_model(tm, path, name, fp))
            sm = stored(model, name)
            if not prof.replay:
                # the training record travels with the store (adapters are not committed)
                log = pd.read_csv(path / LOG_FILE)
                store.set_meta(_train_key(name, sm.fingerprint_id),
                               {**{k: v for k, v in meta.items() if k != "base_fingerprint"},
                                "log": log.to_dict(orient="list")})
            rec = _train_record(store, name, sm.fingerprint_id)
            steps = int(sm.fingerprint.get("steps", 0))
            if rec is not None:
                log = pd.DataFrame(rec["log"]).assign(judge=me, variant=variant, trained_on=trained_on,
                                                      n_train=n)
                logs.append(log[LOG_COLUMNS + [c for c in log.columns if c not in LOG_COLUMNS]])
            evaluate(sm, variant, trained_on, n, steps)
            drift.append(drift_items(sm, raters, own_eval, {ds: eval_keys[ds][: prof.n_drift]
                                                            for ds in prof.eval_datasets}, articles)
                         .assign(judge=me, variant=variant, trained_on=trained_on, n_train=n))
            if isinstance(model, LazyModel):
                model.release()
        store.close()
        base.store.close()

    prompts_df = pd.concat(prompts, ignore_index=True)
    return FinetuningResults(prompts_df, finetuned_pair_scores(prompts_df),
                             pd.concat(drift, ignore_index=True) if drift else pd.DataFrame(),
                             pd.concat(logs, ignore_index=True) if logs else pd.DataFrame(),
                             pd.DataFrame(runs))


def _stored_name(store: CallStore, spec: str) -> str:
    """The name a model string was stored under: the string itself, or the loaded model's name (a hub
    model ``hf:ORG/NAME`` is stored as ``ORG/NAME``) -- matched on :func:`open_models.short_name`."""
    names = {m["name"] for m in store.models()}
    if spec in names:
        return spec
    same = sorted(n for n in names if om.short_name(n) == om.short_name(spec))
    return same[0] if len(same) == 1 else spec


def _train_key(name: str, fingerprint_id: str) -> str:
    return f"train:{name}:{fingerprint_id}"


def _train_record(store: CallStore, name: str, fingerprint_id: str) -> dict[str, Any] | None:
    return store.get_meta(_train_key(name, fingerprint_id))


def finetuned_pair_scores(prompts: pd.DataFrame) -> pd.DataFrame:
    """:func:`open_models.pair_scores` per evaluated model, with the variant columns kept."""
    keep = ["judge", "variant", "trained_on", "n_train", "evaluated_on", "steps"]
    frames = []
    for values, g in prompts.groupby(keep, sort=False):
        scores = om.pair_scores(g)
        frames.append(scores.assign(**dict(zip(keep, values))))
    return pd.concat(frames, ignore_index=True)


def drift_items(model: StoredModel, raters: Mapping[str, StoredModel], own: Mapping[str, pd.DataFrame],
                keys: Mapping[str, Sequence[str]], articles: pd.Series) -> pd.DataFrame:
    """New summaries of ``model`` vs the base judge's originals, rated by each rater in both orders.

    One row per (dataset, article, rater): ``new_preference`` = 1/2 [P_fwd("1") + P_bwd("2")] (new summary
    first in forward), renormalised over "1"/"2"; ``identical`` flags a new summary equal to the original.
    """
    rows = []
    for ds, ks in keys.items():
        if not len(ks):
            continue
        new = om.write_summaries(model, ds, ks)
        old = own[ds].set_index("key")["summary"]
        for rater_name, rater in raters.items():
            msgs, labels = [], []
            for key, s_new in zip(new["key"], new["summary"]):
                s_old = old[key]
                for order, (s1, s2) in (("forward", (s_new, s_old)), ("backward", (s_old, s_new))):
                    msgs.append(P.pairwise_messages("comparison", articles[key], s1, s2))
                    labels.append(f"{ds}/{key}/drift/{model.name}/{order}")
            ans = rater.option_probs(msgs, OPTIONS, labels=labels)
            for i, (key, s_new) in enumerate(zip(new["key"], new["summary"])):
                f, b = ans[2 * i], ans[2 * i + 1]
                # an invalid answer in either order leaves the item unscored (NaN), counted in drift_table
                p = float(renormalised_pair(f.raw[0], f.raw[1], b.raw[0], b.raw[1])) if f.valid and b.valid \
                    else np.nan
                rows.append({"dataset": ds, "key": key, "rater": rater_name, "new_summary": s_new,
                             "identical": s_new == old[key], "new_preference": p,
                             "invalid": f.invalid_reason or b.invalid_reason})
    return pd.DataFrame(rows)


# --- tables ------------------------------------------------------------------------------------------------
VARIANT_COLUMNS = ["judge", "variant", "n_train", "trained_on", "evaluated_on", "recognition", "preference",
                   "recognition_low", "recognition_high", "preference_low", "preference_high"]


def variants_table(pairs: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Mean R and S (article-bootstrap CIs) per judge x variant x training set x evaluation set.

    Also: ``n_pairs`` (pairs averaged), ``n_invalid`` (pairs left out for an invalid answer, see
    :func:`judgelab.experiments.open_models.with_invalid`), ``n_articles``, Kendall tau between item R and S
    (``kendall_tau``, ``kendall_p``), ``steps``, and the base weights / profile / hardware / date of the run.
    """
    by = ["judge", "variant", "n_train", "trained_on", "evaluated_on"]
    values = ["recognition", "preference"]
    table = om.with_invalid(stats.bootstrap_mean_table(pairs, values, by), pairs, values, by).rename(
        columns={"n": "n_pairs"})
    extra = []
    for values, g in pairs.groupby(by, sort=False):
        kt = stats.kendall_tau(g["recognition"], g["preference"]) if len(g) > 1 else {"tau": np.nan, "p_value": np.nan}
        extra.append({**dict(zip(by, values)), "n_articles": g["key"].nunique(), "kendall_tau": kt["tau"],
                      "kendall_p": kt["p_value"]})
    table = table.merge(pd.DataFrame(extra), on=by, how="left")
    meta = runs[["judge", "variant", "trained_on", "steps", "weights", "profile", "hardware", "date"]]
    table = table.merge(meta, on=["judge", "variant", "trained_on"], how="left")
    rest = [c for c in table.columns if c not in VARIANT_COLUMNS]
    return table[VARIANT_COLUMNS + rest]


def correlation_table(variants: pd.DataFrame) -> pd.DataFrame:
    """Pearson r (95 % CI) and least-squares line of mean S on mean R across variants (base rows included).

    One row per judge, set of points and evaluation set, plus each judge and set pooled over evaluation
    sets (``evaluated_on="all"``). ``points``: ``all`` variants; ``recognition`` (the recognition variants
    and the base judge) or ``control`` (the controls and the base judge). The paper's causal reading needs
    the recognition points to carry the line; controls that fall on the same line say that whatever
    fine-tuning changed moved R and S together, recognition or not.
    """
    kinds = variants["variant"].map(variant_kind)
    point_sets = {"all": kinds.notna(), "recognition": kinds.isin(["base", "recognition"]),
                  "control": kinds.isin(["base", "control"])}
    rows = []
    for judge in variants["judge"].unique():
        for points, mask in point_sets.items():
            g = variants[mask & (variants["judge"] == judge)]
            for ev in [*variants["evaluated_on"].unique(), "all"]:
                s = g if ev == "all" else g[g["evaluated_on"] == ev]
                s = s.dropna(subset=["recognition", "preference"])
                row: dict[str, Any] = {"judge": judge, "points": points, "evaluated_on": ev, "n": len(s)}
                if len(s) >= 3 and s["recognition"].nunique() > 1 and s["preference"].nunique() > 1:
                    row.update({k: v for k, v in stats.pearson(s["recognition"], s["preference"]).items()
                                if k != "n"})
                    row.update({k: v for k, v in stats.linear_fit(s["recognition"], s["preference"]).items()
                                if k in ("slope", "intercept", "slope_se", "r2")})
                rows.append(row)
    cols = ["judge", "points", "evaluated_on", "n", "r", "r_low", "r_high", "p_value", "slope", "intercept",
            "slope_se", "r2"]
    return pd.DataFrame(rows).reindex(columns=cols)


def drift_table(drift: pd.DataFrame) -> pd.DataFrame:
    """P(new summary preferred) per judge x variant x training set x dataset x rater, with bootstrap CIs.

    ``n`` counts the items averaged, ``n_invalid`` those a rater answered invalidly in either order.
    """
    if drift.empty:
        return pd.DataFrame(columns=["judge", "variant", "n_train", "trained_on", "dataset", "rater", "n",
                                     "n_invalid", "new_preference", "new_preference_low", "new_preference_high",
                                     "identical"])
    by = ["judge", "variant", "n_train", "trained_on", "dataset", "rater"]
    out = om.with_invalid(stats.bootstrap_mean_table(drift, ["new_preference"], by), drift, ["new_preference"], by)
    share = drift.groupby(by, sort=False)["identical"].mean().rename("identical").reset_index()
    return out.merge(share, on=by, how="left")


def shift_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """Change of R and S of every fine-tuned variant from the base judge, paired pair by pair.

    The controls' test: a control fine-tune changes the model as much as a recognition fine-tune (same
    prompts, articles, steps) but teaches nothing about authorship, so if preference moves only with the
    recognition variants, fine-tuning as such is not what moves it. Variant and base judge are scored on
    the very same (article, other author) pairs, so the change is the mean of per-pair differences, with a
    95 % bootstrap interval over articles -- tighter and more honest than comparing two separate intervals.
    ``domain`` is ``in`` when the variant was trained and evaluated on the same dataset; ``r_moved`` /
    ``s_moved``: the interval of the change excludes 0 (never with fewer than 2 articles, whose interval is
    degenerate).
    """
    keys = ["judge", "evaluated_on", "key", "other"]
    base = pairs[pairs["variant"] == "base"][keys + ["recognition", "preference"]]
    paired = pairs[pairs["variant"] != "base"].merge(base, on=keys, how="inner", suffixes=("", "_base"))
    paired = paired.assign(delta_recognition=paired["recognition"] - paired["recognition_base"],
                           delta_preference=paired["preference"] - paired["preference_base"])
    by = ["judge", "variant", "n_train", "trained_on", "evaluated_on"]
    out = stats.bootstrap_mean_table(paired, ["delta_recognition", "delta_preference"], by).rename(
        columns={"n": "n_pairs"})
    n_art = paired.groupby(by, sort=False)["key"].nunique().rename("n_articles").reset_index()
    out = out.merge(n_art, on=by, how="left")
    enough = out["n_articles"] >= 2
    return out.assign(
        kind=out["variant"].map(variant_kind),
        domain=np.where(out["trained_on"] == out["evaluated_on"], "in", "cross"),
        r_moved=enough & ((out["delta_recognition_low"] > 0) | (out["delta_recognition_high"] < 0)),
        s_moved=enough & ((out["delta_preference_low"] > 0) | (out["delta_preference_high"] < 0)),
    )[["judge", "variant", "kind", "n_train", "trained_on", "evaluated_on", "domain", "n_pairs", "n_articles",
       "delta_recognition", "delta_recognition_low", "delta_recognition_high", "delta_preference",
       "delta_preference_low", "delta_preference_high", "r_moved", "s_moved"]]


def training_summary(log: pd.DataFrame, tail: int = 3) -> pd.DataFrame:
    """One row per trained variant: steps, first loss, mean loss and mean P(label) over the last ``tail``
    steps, training seconds, and the variant's kind.

    ``p_label`` is the probability of the label token among *all* next tokens, so it shows two things at
    once: learning to answer with a digit at all, and learning which digit. A random-label control can
    only do the first; comparing its ``last_p_label`` with the recognition variants' tells them apart.
    """
    log = log.sort_values("step")
    out = (log.groupby(["trained_on", "variant"], sort=False)
           .agg(steps=("step", "max"), first_loss=("loss", "first"),
                last_loss=("loss", lambda s: s.tail(tail).mean()), first_p_label=("p_label", "first"),
                last_p_label=("p_label", lambda s: s.tail(tail).mean()), train_seconds=("seconds", "max"))
           .reset_index())
    out = out.assign(kind=out["variant"].map(variant_kind))
    return out.sort_values(["trained_on", "variant"], key=lambda c: c.map(_grid_order), kind="stable",
                           ignore_index=True)


def _grid_order(value: str) -> tuple[int, float]:
    """Sort key: datasets xsum, cnn; variants base, recognition by N, then the controls in the paper's order."""
    if value in ("xsum", "cnn"):
        return (("xsum", "cnn").index(value), 0)
    if value == "base":
        return (0, 0)
    if variant_kind(str(value)) == "recognition":
        return (1, int(value))
    name, size = split_variant(str(value))
    rank = CONTROL_VARIANTS.index(name) if name in CONTROL_VARIANTS else len(CONTROL_VARIANTS)
    return (2, rank + (0.5 if size is not None else 0.0))  # always_1@500 right after always_1


def kind_summary(shifts: pd.DataFrame, by: Sequence[str] = ("judge", "kind", "domain")) -> pd.DataFrame:
    """Mean absolute change of R and S from the base judge, by variant kind and domain (in / cross) unless
    ``by`` says otherwise; ``variants`` counts the (variant, evaluation set) rows, ``r_moved`` / ``s_moved``
    how many of them moved (their ``share_*`` is the fraction)."""
    return (shifts.assign(abs_delta_recognition=shifts["delta_recognition"].abs(),
                          abs_delta_preference=shifts["delta_preference"].abs())
            .groupby(list(by), sort=False)
            .agg(variants=("variant", "size"), mean_abs_delta_recognition=("abs_delta_recognition", "mean"),
                 mean_abs_delta_preference=("abs_delta_preference", "mean"),
                 r_moved=("r_moved", "sum"), s_moved=("s_moved", "sum"),
                 share_r_moved=("r_moved", "mean"), share_s_moved=("s_moved", "mean"))
            .reset_index())


#: the paper-size cell: our variant name -> the released variant it stands beside (all trained on 500 articles)
PAPER_SIZE_CELL: dict[str, str] = {"500": "500", "always_1@500": "always_1", "length@500": "length"}


def paper_size_table(variants: pd.DataFrame, released: pd.DataFrame, trained_on: str = "xsum") -> pd.DataFrame:
    """The paper-size cell beside the paper's: R and S (95 % intervals, ``n`` articles) of our N = 500
    recognition variant and its ``always_1`` / ``length`` controls at 500 articles, and of the released
    GPT-3.5 and Llama-2 fine-tunes of the same variants, trained on ``trained_on``, evaluated on each set.

    ``variants``: our ``variants.csv``; ``released``: the reanalysis's ``finetuned.csv``. One row per
    (variant, evaluation set, who); ``who`` is ``ours`` (the judge's name in ``judge``) or the released
    family. Ours is absent (no row) until the committed run has the cell.
    """
    rs = ["recognition", "recognition_low", "recognition_high", "preference", "preference_low", "preference_high"]
    cols = ["variant", "evaluated_on", "who", "judge", "n_train", "n", *rs]
    ours = variants[(variants["trained_on"] == trained_on) & variants["variant"].astype(str).isin(PAPER_SIZE_CELL)]
    ours = ours.assign(variant=ours["variant"].astype(str).map(PAPER_SIZE_CELL), who="ours",
                       n=ours["n_articles"])
    rel = released[(released["trained_on"] == trained_on)
                   & released["variant"].astype(str).isin(set(PAPER_SIZE_CELL.values()))]
    rel = rel.assign(variant=rel["variant"].astype(str), who=rel["evaluator_family"],
                     judge=rel["evaluator_family"], n=rel["n_eval"])
    out = pd.concat([ours.reindex(columns=cols), rel.reindex(columns=cols)], ignore_index=True)
    out = out.astype({"n_train": int, "n": int}) if len(out) else pd.DataFrame(columns=cols)
    rank = {**{v: i for i, v in enumerate(PAPER_SIZE_CELL.values())}, "xsum": 0, "cnn": 1, "ours": 0}
    return out.sort_values(["variant", "evaluated_on", "who"], key=lambda c: c.map(lambda v: rank.get(v, 9)),
                           kind="stable", ignore_index=True)


def paper_size_text(table: pd.DataFrame, label: Callable[[str], str] = str) -> str:
    """:func:`paper_size_table` in words, per evaluation set: whether our N = 500 recognition variant's R is
    above chance (its interval alone decides), where it stands against the released fine-tunes, and whether
    its controls moved R and S off 0.5. Tested on tables that make each clause false."""
    ours = table[table["who"] == "ours"]
    if ours.empty:
        return ("The paper-size cell (N = 500 on XSUM, with the `always_1` and `length` controls at 500 "
                "articles) is not in the committed run yet: the table above shows the released fine-tunes alone.")

    def where(row, col: str) -> str:
        lo, hi = getattr(row, f"{col}_low"), getattr(row, f"{col}_high")
        return "above chance" if lo > 0.5 else "below chance" if hi < 0.5 else "not distinguishable from chance"

    parts = []
    for ds in ours["evaluated_on"].unique():
        g = table[table["evaluated_on"] == ds]
        rec = g[(g["who"] == "ours") & (g["variant"] == "500")]
        if rec.empty:
            continue
        r = rec.iloc[0]
        rel = g[(g["who"] != "ours") & (g["variant"] == "500")]
        against = "; ".join(f"{label(x.who)} {x.recognition:.3f}" for x in rel.itertuples())
        s = (f"Evaluated on {label(ds)}, the N = 500 recognition variant's R is {r.recognition:.3f} "
             f"[{r.recognition_low:.3f}, {r.recognition_high:.3f}] over {r.n} articles, "
             f"{where(r, 'recognition')}" + (f" (released fine-tunes: {against})" if against else "")
             + f", and its S {r.preference:.3f}, {where(r, 'preference')}.")
        ctl = g[(g["who"] == "ours") & (g["variant"] != "500")]
        if len(ctl):
            s += " " + "; ".join(f"The {c.variant} control at 500 articles: R {where(c, 'recognition')}, "
                                 f"S {where(c, 'preference')}" for c in ctl.itertuples()) + "."
        parts.append(s)
    return " ".join(parts)


class CommittedTablesError(ValueError):
    """A run smaller than the book profile was about to overwrite the committed fine-tuning tables."""


def check_committed_grid(prof: FinetuningProfile, results_dir: Path) -> None:
    """Refuse to write a part of the book grid (a ``--train-on`` slice, fewer variants, judges or articles)
    over the committed tables in ``results/finetuning``: they would then cover the slice only."""
    book_dir = default_results_dir("book")
    if Path(results_dir).resolve() != book_dir.resolve():
        return
    book = FINETUNING["book"]
    short = [f"{what} {sorted(set(want) - set(have))} missing" for what, want, have in (
        ("judges", book.judges, prof.judges), ("variants", book.variants, prof.variants),
        ("training sets", book.train_datasets, prof.train_datasets),
        ("evaluation sets", book.eval_datasets, prof.eval_datasets),
        ("cells", book.cells(), prof.cells())) if not set(want) <= set(have)]
    short += [f"{what} {have} < {want}" for what, want, have in (
        ("n_eval", book.n_eval, prof.n_eval), ("n_drift", book.n_drift, prof.n_drift)) if have < want]
    if short:
        raise CommittedTablesError(
            f"refusing to overwrite the committed fine-tuning tables in {book_dir} with a part of the book grid "
            f"(profile {prof.name}: {'; '.join(short)}); write it elsewhere with results_dir / --results-dir")


def write_tables(profile: str | FinetuningProfile = "book", results_dir: Path | str | None = None,
                 base_results_dir: Path | str | None = None, progress: bool = True) -> dict[str, Path]:
    """Run or replay ``profile``; write ``variants.csv``, ``correlation.csv``, ``drift.csv``, ``training_log.csv``.

    Into the committed book directory only a run that covers the whole book grid
    (:func:`check_committed_grid`, checked before anything runs); each table is written atomically.
    """
    prof = finetuning_profile(profile)
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(prof.name)
    check_committed_grid(prof, results_dir)
    return write_csvs(result_tables(run(prof, results_dir, base_results_dir, progress)), results_dir)


def result_tables(res: FinetuningResults) -> dict[str, pd.DataFrame]:
    """The tables :func:`write_tables` writes, by file name."""
    variants = res.variants_table()
    return {"variants.csv": variants, "correlation.csv": correlation_table(variants),
            "drift.csv": drift_table(res.drift), "training_log.csv": res.training_log}


def drift_findings(drift: pd.DataFrame, n_drift: int, label: Callable[[str], str] = str) -> str:
    """The drift table in words: identical summaries, cells whose interval excludes 0.5, what the intervals can say.

    The last sentence reads the intervals' widths instead of calling them "wide" by habit: over a handful of
    articles most bootstrap resamples repeat the same few items, and an interval of zero width (every new
    summary word for word the old one, or every rater at exactly 0.5) carries no information about spread.
    ``label`` turns model names into the book's labels (the notebook passes ``plots.label``).
    """
    if drift.empty:
        return "No drift cells in this run."
    ident = drift["identical"].mean()
    moved = drift[(drift["new_preference_low"] > 0.5) | (drift["new_preference_high"] < 0.5)]
    text = f"Across variants, datasets and raters, {ident:.0%} of the new summaries are word for word the original. "
    if len(moved):
        text += f"{len(moved)} of {len(drift)} (variant, dataset, rater) cells have an interval that excludes 0.5"
        if len(moved) <= 6:
            text += ": " + ", ".join(f"{r.variant}/{r.trained_on} on {r.dataset} by {label(r.rater)} "
                                     f"({r.new_preference:.2f})" for r in moved.itertuples())
        text += "."
    else:
        text += ("No cell has an interval that excludes 0.5: at this size there is no evidence that fine-tuning "
                 "changed the quality of the judge's writing.")
    far = drift.loc[(drift["new_preference"] - 0.5).abs().idxmax()]
    text += (f" The largest departure from 0.5 is {far.new_preference:.3f} ({far.variant}/{far.trained_on} on "
             f"{label(far.dataset)}, rated by {label(far.rater)}).")
    width = drift["new_preference_high"] - drift["new_preference_low"]
    zero = int(np.isclose(width, 0).sum())
    if zero:
        text += (f" {zero} of the {len(drift)} intervals have zero width: with {n_drift} articles per dataset "
                 "the bootstrap has almost nothing to resample, so such an interval says nothing about the spread;"
                 " the check can reveal a large drift, not rule out a small one.")
    else:
        text += (f" With {n_drift} articles per dataset the intervals are {width.median():.3f} wide (median); "
                 "the check can reveal a drift larger than that, not rule out a smaller one.")
    return text

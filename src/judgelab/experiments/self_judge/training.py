"""Training the Self-J judge: LoRA with the paper's self-distillation loss (issue 19, item 4).

The judge sees the paper's judge prompt twice per training answer: *with* the reference (the teacher's
prompt) and *without* it (the student's), and learns to answer the label digit -- the combined score of the
policy's self-evaluation and the cosine (:func:`judgelab.experiments.self_judge.run.training_labels`) --
in both. The paper's loss (``kd.py`` of github.com/nusnlp/Self-J, ``Trainer.compute_loss``):

    loss = CE(teacher prompt, label) + 0.3 * CE(student prompt, label) + 2 * KL(p_teacher || p_student)

where both cross-entropies are the causal-LM loss of the answer token (the label digit; the end-of-sequence
token is masked out of the KL in ``kd.py``, so only the digit position counts), ``p_teacher`` is the softmax
of the teacher prompt's logits at that position **detached** (no gradient flows through the teacher side of
the KL), ``p_student`` the student prompt's, over the whole vocabulary as in ``kd.py`` (``kl_over="digits"``
restricts both to the ten digit tokens, renormalised: what the judge is scored on). One set of LoRA weights
serves both: teacher and student are the same model on two prompts.

Settings (``bash/finetune.kd.sh``): LoRA r 16, alpha 16, dropout 0.05 on q/k/v/o projections, lr 3e-4,
2 epochs (:data:`PAPER_TRAIN`, a :class:`judgelab.experiments.finetuning.TrainConfig`). The paper trains a
13B Llama-2 with batch 128; on a CPU we train the policy's own small model with batch 8.

Variants (:data:`VARIANTS`): ``self_j`` (the combined label, the full loss), the paper's ablations
``cosine_only`` (label from the cosine alone, mapped to 0-9), ``selfeval_only`` (label from the
self-evaluation alone) and ``no_distill`` (the combined label, KL weight 0: both prompts trained on the
label independently). Training examples whose label is missing (an invalid self-evaluation) are left out
and counted in the training record.

Resumable: a finished variant's adapter directory (:func:`~judgelab.experiments.finetuning.save_adapter`,
atomic, with the loss log and a record holding the adapter's sha256) is skipped on rerun, and a variant
stopped midway resumes from its checkpoint (:mod:`judgelab.experiments.train_loop`, every 180 s).
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from judgelab.experiments.finetuning import TrainConfig, _merged_model, adapter_done, answer_logits, save_adapter
from judgelab.prompts import ye2024

#: the paper's LoRA and optimiser settings (bash/finetune.kd.sh); batch 8 on a CPU (theirs: 128)
PAPER_TRAIN = TrainConfig(lora_r=16, lora_alpha=16, lora_dropout=0.05,
                          target_modules=("q_proj", "k_proj", "v_proj", "o_proj"), lr=3e-4, epochs=2.0,
                          batch_size=8, micro_batch_size=4, share_prefix=False, seed=0)


@dataclass(frozen=True)
class Variant:
    """One trained judge: which label column it learns and the loss weights."""

    name: str
    label: str  # a column of the training-labels table holding a 0-9 score
    ce_student: float = 0.3
    kl: float = 2.0
    description: str = ""


VARIANTS: dict[str, Variant] = {
    "self_j": Variant("self_j", "combined", description="combined label, CE + 0.3 CE + 2 KL (the paper's loss)"),
    "cosine_only": Variant("cosine_only", "cosine_label", description="label from the cosine alone (ablation)"),
    "selfeval_only": Variant("selfeval_only", "self_eval", description="label from self-evaluation alone (ablation)"),
    "no_distill": Variant("no_distill", "combined", kl=0.0, description="combined label, no KL term (ablation)"),
}


def variant_labels(labels: pd.DataFrame, variant: Variant, combination: str = "mean") -> pd.Series:
    """The digit (0-9, nullable) each training answer teaches ``variant``: the score its label column
    gives, rounded to the nearest digit. ``combined`` is ``combined_<combination>``; ``cosine_label`` maps
    the cosine linearly from [-1, 1] to [0, 9]; ``self_eval`` is the self-evaluation's expected digit."""
    if variant.label == "combined":
        col = f"combined_{combination}"
        if col not in labels.columns:
            raise ValueError(f"no column {col!r} in the training labels (combination {combination!r})")
        score = labels[col].to_numpy(dtype=float)
    elif variant.label == "cosine_label":
        score = 9.0 * (labels["cosine"].to_numpy(dtype=float) + 1.0) / 2.0
    elif variant.label in labels.columns:
        score = labels[variant.label].to_numpy(dtype=float)
    else:
        raise ValueError(f"variant {variant.name}: no label column {variant.label!r}")
    out = pd.Series(np.clip(np.round(score), 0, 9), index=labels.index)
    return out.astype("Int64")  # NaN (invalid self-evaluation) stays missing


# --- the loss --------------------------------------------------------------------------------------------------
def self_distillation_loss(teacher_logits, student_logits, targets, *, ce_student: float = 0.3,
                           kl: float = 2.0, digit_ids: Sequence[int] | None = None, kl_over: str = "vocab"):
    """The paper's loss for a batch of answer positions (``[batch, vocab]`` logits, ``targets`` token ids).

    Returns ``(loss, parts)`` with ``parts`` the detached mean terms ``ce_teacher``, ``ce_student``, ``kl``.
    The KL is ``sum p_t (log p_t - log p_s)`` averaged over the batch (``F.kl_div(log p_s, p_t,
    reduction='batchmean')`` as in ``kd.py``) with ``p_t`` from the *detached* teacher logits. ``kl_over``:
    ``"vocab"`` (the paper) or ``"digits"`` (both distributions restricted to ``digit_ids`` and
    renormalised).
    """
    import torch
    import torch.nn.functional as F

    if kl_over not in ("vocab", "digits"):
        raise ValueError(f"kl_over must be 'vocab' or 'digits', got {kl_over!r}")
    target = torch.as_tensor(targets, dtype=torch.long, device=teacher_logits.device)
    ce_t = F.cross_entropy(teacher_logits, target)
    ce_s = F.cross_entropy(student_logits, target)
    t, s = teacher_logits.detach(), student_logits
    if kl_over == "digits":
        if digit_ids is None:
            raise ValueError("kl_over='digits' needs the digit token ids")
        idx = torch.as_tensor(list(digit_ids), dtype=torch.long, device=t.device)
        t, s = t[:, idx], s[:, idx]
    kl_term = F.kl_div(F.log_softmax(s, dim=-1), F.softmax(t, dim=-1), reduction="batchmean")
    loss = ce_t + ce_student * ce_s + kl * kl_term
    return loss, {"ce_teacher": float(ce_t.detach()), "ce_student": float(ce_s.detach()),
                  "kl": float(kl_term.detach())}


def digit_token_ids(tm: Any) -> list[int]:
    """The token each digit's answer starts with (the bare "0".."9" spelling, as the judge is scored on)."""
    return [ids[0] for ids in tm.option_token_ids(ye2024.DIGITS)]


@dataclass(frozen=True)
class Examples:
    """Encoded training examples: teacher and student prompt tokens and the label token per answer."""

    teacher: list[list[int]]
    student: list[list[int]]
    targets: list[int]
    n_dropped: int  # answers without a label (invalid self-evaluation)
    n_too_long: int = 0  # answers whose teacher prompt exceeds the token cap (left out, counted)


def build_examples(tm: Any, questions: Sequence[str], answers: Sequence[str], references: Sequence[str],
                   labels: Sequence[Any], max_tokens: int | None = None) -> Examples:
    """Teacher (with reference) and student (without) judge prompts of each answer, in the judge's chat
    template, and the token of its label digit; answers whose label is missing are dropped and counted, and
    so are those whose teacher prompt is longer than ``max_tokens`` (a 6,000-token prompt needs tens of GB
    for its backward pass on a CPU; cutting it would change what the judge reads)."""
    digits = digit_token_ids(tm)
    t, s, y, dropped, too_long = [], [], [], 0, 0
    for q, a, r, lab in zip(questions, answers, references, labels, strict=True):
        if lab is None or lab is pd.NA or (isinstance(lab, float) and np.isnan(lab)):
            dropped += 1
            continue
        d = int(lab)
        if not 0 <= d <= 9:
            raise ValueError(f"label {lab!r} is not a digit 0-9")
        teacher = tm.encode(ye2024.chat(q, a, r))
        if max_tokens is not None and len(teacher) > max_tokens:
            too_long += 1
            continue
        t.append(teacher)
        s.append(tm.encode(ye2024.chat(q, a)))
        y.append(digits[d])
    return Examples(t, s, y, dropped, too_long)


def examples_digest(examples: Examples, variant: Variant, kl_over: str) -> str:
    """What a checkpoint must have been trained on to be resumed: the encoded prompts, the labels and the
    loss weights (the optimiser settings are in the loop's own signature)."""
    import hashlib
    import json

    blob = json.dumps({"teacher": examples.teacher, "student": examples.student, "targets": examples.targets,
                       "ce_student": variant.ce_student, "kl": variant.kl, "kl_over": kl_over})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_judge(tm: Any, examples: Examples, variant: Variant, config: TrainConfig = PAPER_TRAIN, *,
                kl_over: str = "vocab", progress: bool = True, checkpoint: Path | None = None,
                checkpoint_seconds: float = 180.0, on_step: Any = None) -> tuple[Any, pd.DataFrame]:
    """LoRA-train a copy of ``tm.model`` (a TransformersModel's HF model) with :func:`self_distillation_loss`.

    Each step takes ``batch_size`` answers (epochs of seeded permutations,
    :func:`~judgelab.experiments.train_loop.batch_schedule`), runs teacher and student prompts in
    micro-batches of ``micro_batch_size`` (left-padded, last position only:
    :func:`~judgelab.experiments.finetuning.answer_logits`), accumulates gradients, clips and steps AdamW
    (:func:`~judgelab.experiments.train_loop.train_loop`). With ``checkpoint`` (a folder) the run saves its
    state there every ``checkpoint_seconds`` and a rerun resumes it: a judge that trains for hours on a CPU
    survives the end of a session. Returns the peft model (adapters unmerged, eval mode) and the per-step log.
    """
    import tempfile

    import torch
    from peft import LoraConfig, get_peft_model

    from judgelab.experiments.train_loop import train_loop

    n = len(examples.targets)
    if n == 0:
        raise ValueError(f"variant {variant.name}: no training example has a label")
    torch.manual_seed(config.seed)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM")
    model = get_peft_model(copy.deepcopy(tm.model), lora)
    pad = tm.tokenizer.pad_token_id if tm.tokenizer.pad_token_id is not None else tm.tokenizer.eos_token_id
    digits = digit_token_ids(tm)

    def step(batch: list[int], size_of_batch: int) -> dict[str, float]:
        parts_sum = {"loss": 0.0, "ce_teacher": 0.0, "ce_student": 0.0, "kl": 0.0}
        size = config.micro_batch_size or size_of_batch
        for start in range(0, len(batch), size):
            idx = batch[start : start + size]
            t_logits = answer_logits(model, [examples.teacher[i] for i in idx], pad)
            s_logits = answer_logits(model, [examples.student[i] for i in idx], pad)
            loss, parts = self_distillation_loss(t_logits, s_logits, [examples.targets[i] for i in idx],
                                                 ce_student=variant.ce_student, kl=variant.kl,
                                                 digit_ids=digits, kl_over=kl_over)
            w = len(idx) / size_of_batch
            (loss * w).backward()
            parts_sum["loss"] += float(loss.detach()) * w
            for k, v in parts.items():
                parts_sum[k] += v * w
        return parts_sum

    digest = examples_digest(examples, variant, kl_over)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(checkpoint) if checkpoint is not None else Path(tmp) / "checkpoint"
        log = train_loop(model, step, n, config, ckpt, digest,
                         checkpoint_seconds=checkpoint_seconds if checkpoint is not None else float("inf"),
                         progress=progress, desc=f"train {variant.name}", on_step=on_step)
    return model, log


def adapter_path(results_dir: Path, judge: str, variant: str) -> Path:
    """``<results>/adapters/<judge>/<variant>`` (git-ignored: only the sha256 is recorded)."""
    safe = judge.replace("/", "_").replace(":", "_")
    return Path(results_dir) / "adapters" / safe / variant


def train_variant(tm: Any, labels: pd.DataFrame, variant: str | Variant, results_dir: Path, *,
                  config: TrainConfig = PAPER_TRAIN, combination: str = "mean", kl_over: str = "vocab",
                  judge: str | None = None, progress: bool = True, checkpoint_seconds: float = 180.0,
                  on_step: Any = None, max_tokens: int | None = None) -> dict[str, Any]:
    """Train one variant on ``labels`` (a training-labels table with ``instruction``, ``answer`` and
    ``reference`` joined) unless its adapter is already saved; return its training record. A run stopped
    midway resumes from ``<adapter>.checkpoint`` (removed once the adapter is saved)."""
    import json

    v = VARIANTS[variant] if isinstance(variant, str) else variant
    judge = judge or tm.name
    path = adapter_path(results_dir, judge, v.name)
    if adapter_done(path):
        return json.loads((path / "train_meta.json").read_text())
    y = variant_labels(labels, v, combination)
    ex = build_examples(tm, labels["instruction"].tolist(), labels["answer"].tolist(),
                        labels["reference"].tolist(), y.tolist(), max_tokens=max_tokens)
    t0 = time.time()
    ckpt = path.with_name(path.name + ".checkpoint")
    model, log = train_judge(tm, ex, v, config, kl_over=kl_over, progress=progress, checkpoint=ckpt,
                             checkpoint_seconds=checkpoint_seconds, on_step=on_step)
    meta = {"variant": v.name, "description": v.description, "label": v.label, "combination": combination,
            "ce_student": v.ce_student, "kl": v.kl, "kl_over": kl_over, "judge": judge,
            "base_fingerprint": tm.fingerprint, "n_examples": len(ex.targets), "n_dropped": ex.n_dropped,
            "n_too_long": ex.n_too_long, "max_tokens": max_tokens,
            "label_counts": {str(k): int(c) for k, c in y.value_counts().sort_index().items()},
            "steps": int(len(log)), "train": config.as_dict(),
            # training time over every session of the run (the loop's clock survives a resume)
            "seconds": round(float(log["seconds"].iloc[-1]) if len(log) else time.time() - t0, 1),
            "date": time.strftime("%Y-%m-%d", time.gmtime())}
    from judgelab.profiles import hardware

    meta["hardware"] = hardware()
    record = save_adapter(model, path, log.assign(variant=v.name), meta)
    shutil.rmtree(ckpt, ignore_errors=True)  # the adapter is saved: its checkpoint is spent
    return record


def trained_fingerprint(base: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """A trained judge's fingerprint: its base model's plus the adapter's identity and training record."""
    return {**base, "adapter": meta["variant"], "adapter_sha256": meta["adapter_sha256"],
            "n_examples": meta["n_examples"], "steps": meta["steps"], "train": meta["train"],
            "label": meta["label"], "combination": meta["combination"], "kl": meta["kl"],
            "kl_over": meta["kl_over"]}


def merged_judge(tm: Any, path: Path, meta: dict[str, Any]) -> Any:
    """A TransformersModel around the base weights with the variant's adapter merged in."""
    return _merged_model(tm, path, f"{tm.name}-selfj-{meta['variant']}", trained_fingerprint(tm.fingerprint, meta))


__all__ = ["PAPER_TRAIN", "VARIANTS", "Variant", "build_examples", "merged_judge", "self_distillation_loss",
           "train_judge", "train_variant", "variant_labels"]

"""One resumable training loop for every LoRA run of the book: a fixed, seeded batch schedule and
checkpoints a killed run resumes from.

Why one loop: the alignment run (chapter 5) and the Self-J judges (chapter 6) train for hours on a CPU, longer
than one working session; a run that can only restart from scratch never finishes. Every
``checkpoint_seconds`` (and at the last step) the trainable weights (peft state dict), the optimiser state,
the torch RNG state, the step and the loss log go to ``<ckpt>/state.pt``, written atomically; a rerun with the
same settings and data continues from there and ends where the uninterrupted run ends (tested), one with other
settings or data is refused and the file named. The schedule is fixed up front from the seed, so a resumed run
sees the same batches in the same order.

``config`` is any settings object with ``steps(n)``, ``batch_size``, ``seed``, ``lr``, ``weight_decay``,
``max_grad_norm`` and ``as_dict()`` (:class:`judgelab.experiments.finetuning.TrainConfig`,
:class:`judgelab.experiments.numerical_bias.alignment.StageTrain`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from judgelab.paths import atomic_write


def batch_schedule(n_items: int, config: Any) -> list[list[int]]:
    """Every step's example indices, fixed up front by the seed: epochs of seeded permutations, cut in batches."""
    steps = config.steps(n_items)
    rng = np.random.default_rng(config.seed)
    order: list[int] = []
    while len(order) < steps * min(config.batch_size, n_items):
        order.extend(rng.permutation(n_items).tolist())
    b = min(config.batch_size, n_items)
    return [order[i * b : (i + 1) * b] for i in range(steps)]


class TrainingInterrupted(RuntimeError):
    """Raised by a test hook to stop a run after a checkpoint (a stand-in for a kill)."""


def _signature(config: Any, data_digest: str) -> str:
    return hashlib.sha256(json.dumps({"train": config.as_dict(), "data": data_digest},
                                     sort_keys=True).encode()).hexdigest()[:16]


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch

    path.mkdir(parents=True, exist_ok=True)
    with atomic_write(path / "state.pt", "wb") as fh:
        torch.save(state, fh)


def train_loop(model: Any, step_fn: Callable[[list[int], int], dict[str, float]], n_items: int,
               config: Any, ckpt: Path, data_digest: str, *, checkpoint_seconds: float = 180.0,
               progress: bool = True, desc: str = "train",
               on_step: Callable[[int], None] | None = None, schedule: list[list[int]] | None = None,
               reseed: bool = True) -> pd.DataFrame:
    """Optimise the trainable parameters of ``model`` (a peft model) over the fixed :func:`batch_schedule`.

    ``step_fn(batch, batch_size)`` runs forward and backward for one batch (accumulating gradients) and
    returns the step's metrics (``loss`` first). Resumes from ``ckpt/state.pt`` when it is there; a
    checkpoint of other settings or data is refused, naming the file. Returns the per-step log.

    ``schedule``: the batches to run instead of :func:`batch_schedule` (e.g. chapter 4's, which keeps one
    article's examples together); it is part of the checkpoint's signature. ``reseed``: seed torch with
    ``config.seed`` before a fresh run (dropout draws); ``False`` keeps the caller's RNG state, so a loop
    that seeded before building its LoRA model trains exactly as it did before this loop existed.
    """
    import torch
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from tqdm.auto import tqdm

    if schedule is None:
        schedule = batch_schedule(n_items, config)
    else:
        data_digest = hashlib.sha256(json.dumps([data_digest, schedule]).encode()).hexdigest()[:16]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    sig = _signature(config, data_digest)
    rows: list[dict[str, Any]] = []
    start, elapsed = 0, 0.0
    state_file = ckpt / "state.pt"
    if state_file.is_file():
        state = torch.load(state_file, weights_only=False)
        if state.get("signature") != sig:
            raise ValueError(f"checkpoint {state_file} was made with other training settings or data "
                             f"(signature {state.get('signature')} != {sig}); remove it to start this stage again")
        set_peft_model_state_dict(model, state["adapter"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        start, rows, elapsed = state["step"], state["log"], state["seconds"]
    elif reseed:
        torch.manual_seed(config.seed)
    model.train()
    t0, last_save = time.time() - elapsed, time.time()
    bar = tqdm(range(start, len(schedule)), desc=desc, unit="step", disable=not progress, initial=start,
               total=len(schedule))
    for step in bar:
        batch = schedule[step]
        opt.zero_grad(set_to_none=True)
        metrics = step_fn(batch, len(batch))
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm))
        opt.step()
        rows.append({"step": step + 1, **metrics, "grad_norm": grad_norm, "lr": config.lr,
                     "examples": (step + 1) * len(batch), "seconds": time.time() - t0})
        bar.set_postfix(loss=f"{metrics['loss']:.3f}")
        last = step + 1 == len(schedule)
        if last or time.time() - last_save >= checkpoint_seconds:
            _save_checkpoint(ckpt, {"signature": sig, "step": step + 1, "adapter": get_peft_model_state_dict(model),
                                    "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state(),
                                    "log": rows, "seconds": time.time() - t0})
            last_save = time.time()
        if on_step is not None:
            on_step(step + 1)
    bar.close()
    model.eval()
    return pd.DataFrame(rows)


__all__ = ["TrainingInterrupted", "batch_schedule", "train_loop"]

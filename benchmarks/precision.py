"""Precision: float32 against bfloat16 weights on the transformers runtime, same model, same work.

Every committed store was computed with float32 weights (the zoo's GGUF dequantised). CPUs with AMX or
AVX-512 bf16 (this project's do: see the hardware string) multiply bfloat16 matrices much faster, so a long
CPU run -- the fine-tuning grid at the paper's size above all -- could run in bfloat16. Whether it should
depends on two numbers this benchmark measures on the same inputs:

- **speed**: seconds per item of the three workloads of the fine-tuning chapter, each in both precisions:
  ``judge`` (the pairwise prompts' P("1"), P("2") through the backend's prefix tree, as the experiments ask
  them), ``train`` (LoRA steps of :func:`judgelab.experiments.finetuning.train_lora` on those prompts, the
  chapter's settings), ``generate`` (greedy summaries, the chapter's decoding);
- **agreement** with float32: for ``judge``, the largest and mean absolute difference of the renormalised
  P("1"), the share of prompts whose preferred option is the same and the Pearson r of the log-odds; for
  ``train``, the difference of the final loss; for ``generate``, the share of summaries identical to the
  float32 ones.

The precision is part of a model's fingerprint (``dtype``), so a store never mixes the two. The load
average (before and after) and the hardware are recorded: run it on an otherwise idle machine.

Writes ``results/benchmarks/precision.csv``. Usage::

    OMP_NUM_THREADS=1 python benchmarks/precision.py [--model smollm2-135m-instruct] [--articles 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from judge_throughput import benchmark_prompts  # noqa: E402  (the same prompts as the throughput table)

from judgelab.data.self_recognition import load_articles  # noqa: E402
from judgelab.experiments.open_models import SUMMARY_CONFIG, held_out_keys  # noqa: E402
from judgelab.profiles import hardware  # noqa: E402
from judgelab.prompts import panickssery2024 as P  # noqa: E402

OUT = Path("results/benchmarks/precision.csv")
DTYPES = ("float32", "bfloat16")


def _load() -> float:
    return os.getloadavg()[0]


def judge_agreement(ref: list, got: list) -> dict[str, float]:
    """How far ``got``'s renormalised P("1") is from ``ref``'s, prompt by prompt (both OptionProbs lists)."""
    a = np.array([r["1"] for r in ref], dtype=float)
    b = np.array([g["1"] for g in got], dtype=float)
    eps = 1e-12
    la, lb = np.log(a + eps) - np.log1p(-a + eps), np.log(b + eps) - np.log1p(-b + eps)
    return {"max_abs_diff": float(np.max(np.abs(a - b))), "mean_abs_diff": float(np.mean(np.abs(a - b))),
            "same_choice": float(np.mean((a > 0.5) == (b > 0.5))),
            "logodds_r": float(np.corrcoef(la, lb)[0, 1]) if len(a) > 2 else float("nan")}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--articles", type=int, default=4, help="held-out XSUM articles of the judge workload")
    ap.add_argument("--train-steps", type=int, default=3, help="LoRA steps of 8 examples")
    ap.add_argument("--summaries", type=int, default=4, help="articles summarised in the generate workload")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    import torch

    from judgelab.experiments.finetuning import TrainConfig, train_lora
    from judgelab.models import get_model

    prompts = benchmark_prompts(args.articles)
    labels = ["1" if i % 2 == 0 else "2" for i in range(len(prompts))]
    arts = load_articles("xsum").set_index("key")["article"]
    gen_prompts = [P.summary_messages("xsum", arts[k]) for k in held_out_keys("xsum", args.summaries)]
    config = TrainConfig(batch_size=8, max_steps=args.train_steps)
    rows, ref = [], {}
    for dtype in DTYPES:
        model = get_model(args.model, device="cpu", dtype=dtype)
        model.option_probs(prompts[:2], ["1", "2"])  # warm-up: first-call allocations are not the workload
        work = {}
        t0, l0 = time.perf_counter(), _load()
        work["judge"] = (model.option_probs(prompts, ["1", "2"]), len(prompts), time.perf_counter() - t0, l0)
        t0, l0 = time.perf_counter(), _load()
        _, log = train_lora(model, prompts, labels, config, progress=False)
        work["train"] = (log, len(log), time.perf_counter() - t0, l0)
        t0, l0 = time.perf_counter(), _load()
        work["generate"] = (model.generate(gen_prompts, SUMMARY_CONFIG), len(gen_prompts),
                            time.perf_counter() - t0, l0)
        for name, (result, n, seconds, load_before) in work.items():
            row = {"model": args.model, "dtype": dtype, "workload": name, "n": n, "seconds": seconds,
                   "seconds_per_item": seconds / n, "load_before": load_before, "load_after": _load()}
            if dtype == "float32":
                ref[name] = result
            elif name == "judge":
                row.update(judge_agreement(ref[name], result))
            elif name == "train":
                row["final_loss_diff"] = float(result["loss"].iloc[-1] - ref[name]["loss"].iloc[-1])
            else:
                row["identical_share"] = float(np.mean([a == b for a, b in zip(ref[name], result)]))
            rows.append(row)
        del model
    table = pd.DataFrame(rows)
    base = table[table["dtype"] == "float32"].set_index("workload")["seconds_per_item"]
    table["speedup_vs_float32"] = base.reindex(table["workload"]).to_numpy() / table["seconds_per_item"]
    table = table.assign(threads=torch.get_num_threads(), torch=torch.__version__, hardware=hardware(),
                         date=time.strftime("%Y-%m-%d"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(table.drop(columns=["hardware"]).to_string(index=False))
    return table


if __name__ == "__main__":
    main()

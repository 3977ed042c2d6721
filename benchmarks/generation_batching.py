"""Batched generation in the transformers backend: padding rows, tokens/s, batch against single prompts.

The prompts are the summarisation prompts of the first ``--prompts`` held-out XSUM articles (what the book's
writers generate), greedy, ``--max-new-tokens`` new tokens. Three ways through judgelab's
:class:`~judgelab.models.transformers_backend.TransformersModel`:

- ``single``: one ``generate`` call per prompt (no batching, no padding);
- ``padded``: all prompts in one batch, each left-padded to the longest (``prefill="padded"``: how the
  backend batched before);
- ``per_prompt``: all prompts in one batch, each prompt's prefill computed alone and the caches joined
  for batched decoding (``prefill="per_prompt"``, the default now: no padded prefill row).

Each row records the prefill rows computed against the prompts' real tokens (``padding_share`` is the
share of prefill rows that were padding), the decoding rows (every row of a batch runs each step until the
batch's last prompt stops), output tokens per second, the speed-up over ``single``, and whether the
outputs equal the single-prompt outputs. The load average (1 minute, before and after) and the hardware
string are recorded because the machine may be shared.

:func:`measure` is the reusable part (``benchmarks/generation_throughput.py`` can call it). Writes
``results/benchmarks/generation_batching.csv``. Usage::

    python benchmarks/generation_batching.py [--models smollm2-135m-instruct,qwen2.5-coder-0.5b-instruct]
                                             [--prompts 8] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

import pandas as pd

from judgelab.models.base import GenerationConfig
from judgelab.profiles import hardware

MODELS = ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct")
METHODS = ("single", "padded", "per_prompt")
OUT = Path("results/benchmarks/generation_batching.csv")


def summary_prompts(n: int) -> list[list[dict[str, str]]]:
    """The summarisation prompts of the first ``n`` held-out XSUM articles."""
    from judgelab.data.self_recognition import load_articles
    from judgelab.experiments.open_models import held_out_keys
    from judgelab.prompts import panickssery2024 as P

    articles = load_articles("xsum").set_index("key")["article"]
    return [P.summary_messages("xsum", articles[k]) for k in held_out_keys("xsum", n)]


def measure(model, prompts, *, methods=METHODS, max_new_tokens: int = 64) -> list[dict]:
    """Time greedy generation of ``prompts`` by ``model`` (a TransformersModel) each way in ``methods``."""
    from judgelab.models.transformers_backend import ComputeCounts

    config = GenerationConfig(max_new_tokens=max_new_tokens)
    tok = model.tokenizer
    rows, reference = [], None
    for method in methods:
        m = copy.copy(model)
        m.prefill = "per_prompt" if method == "single" else method
        m.batch_size = max(1, len(prompts))
        m.generate(prompts[:1], GenerationConfig(max_new_tokens=2))  # warm-up
        m.counts = ComputeCounts()
        before = os.getloadavg()[0]
        t0 = time.perf_counter()
        if method == "single":
            texts = [m.generate([p], config)[0] for p in prompts]
        else:
            texts = m.generate(prompts, config)
        seconds = time.perf_counter() - t0
        after = os.getloadavg()[0]
        if method == "single":
            reference = texts
        c = m.counts
        new_tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
        rows.append({
            "model": model.name,
            "method": method,
            "prompts": len(prompts),
            "batch": 1 if method == "single" else len(prompts),
            "prompt_tokens": c.generate_prompt_tokens,
            "prefill_rows": c.generate_prefill_rows,
            "padding_share": round(1 - c.generate_prompt_tokens / c.generate_prefill_rows, 3),
            "decode_rows": c.generate_decode_rows,
            "output_tokens": new_tokens,
            "seconds": round(seconds, 2),
            "output_tokens_per_s": round(new_tokens / seconds, 2),
            "equals_single": None if reference is None else texts == reference,
            "load_before": round(before, 2),
            "load_after": round(after, 2),
        })
        print(rows[-1], flush=True)
    single = next((r for r in rows if r["method"] == "single"), None)
    for r in rows:
        r["speedup_vs_single"] = None if single is None else round(single["seconds"] / r["seconds"], 3)
    return rows


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    methods = args.methods.split(",")
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}; known: {', '.join(METHODS)}")
    import torch

    from judgelab.models import get_model
    from judgelab.models.transformers_backend import TransformersModel

    prompts = summary_prompts(args.prompts)
    rows = []
    for name in args.models.split(","):
        model = get_model(name, device="cpu")
        if not isinstance(model, TransformersModel):
            raise SystemExit(f"get_model gave a {type(model).__name__}, not judgelab's transformers backend")
        rows.extend(measure(model, prompts, methods=methods, max_new_tokens=args.max_new_tokens))
        del model
    table = pd.DataFrame(rows).assign(max_new_tokens=args.max_new_tokens, torch_threads=torch.get_num_threads(),
                                      hardware=hardware(), date=time.strftime("%Y-%m-%d"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".csv.tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(args.out)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.drop(columns=["hardware"]).to_string(index=False))
    return table


if __name__ == "__main__":
    main()

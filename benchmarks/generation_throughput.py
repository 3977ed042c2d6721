"""Generation throughput: tokens per second of greedy decoding from the same GGUF file, several ways.

The next chapters are generation-heavy (Self-J answers, best-of-N samples, sampled scores, new summaries),
so how fast a model *writes* decides what they can afford on a CPU. Same zoo GGUF, same prompts (the same
token ids: judgelab's runtimes share one tokenizer), greedy, ``--new-tokens`` new tokens (64), methods:

- ``judgelab-transformers``: judgelab's transformers backend (the GGUF dequantised to float32), one prompt
  per :meth:`generate` call;
- ``judgelab-llama.cpp``: judgelab's llama.cpp runtime (``NAME@llama.cpp``), one :meth:`generate` call over
  the prompts (it runs them one after another, reusing shared prefixes);
- ``judgelab-llama.cpp-batched``: the same runtime with ``decode_batch`` = the number of prompts: their
  sequences are decoded together, one batch per step (other numbers than one at a time: its own fingerprint);
- ``llama-cpp-python``: ``llama_cpp.Llama.create_completion`` on the same token ids with the same settings
  (threads, context, extra buffer types off) -- the reference judgelab's runtime should be within 10 % of.

Batched transformers generation is added by its own function (``METHODS`` maps a name to a function of the
model name, the prompts and the config that returns a row; register one there or call :func:`measure`).

Each row records the prompts, prompt tokens, generated tokens (exact for llama.cpp; for transformers the
generated ids are counted by re-tokenising the text, which can differ from the ids by a token), wall
seconds, ``tokens_per_s`` (generated tokens / seconds, prompt processing included), the threads, the
1-minute load average before and after (the machine may be shared: read the numbers with it), the
hardware string, the date, the GGUF's sha256 and the llama-cpp-python and torch versions. Every method is
warmed up with one short generation first; with ``--repeats N`` the methods take turns N times and each
row is the run with the median tokens/s, with every run's rate in ``runs_tokens_per_s`` (on a shared
machine the fastest run is an outlier as often as not). ``--threads`` (default: every usable core) is given to torch and llama.cpp alike;
on a shared machine use 1 -- llama.cpp's threads spin on barriers, and two of them on two busy cores ran
many times slower than one.

Writes ``results/benchmarks/generation_throughput.csv``, replacing the rows of the (method, model) pairs it
ran and keeping the others. Usage::

    python benchmarks/generation_throughput.py [--models smollm2-135m-instruct,qwen2.5-coder-0.5b-instruct]
        [--methods judgelab-transformers,judgelab-llama.cpp,llama-cpp-python] [--new-tokens 64] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from judgelab.models import get_model
from judgelab.models.base import GenerationConfig, Prompt
from judgelab.models.zoo import zoo_entry
from judgelab.profiles import hardware

OUT = Path("results/benchmarks/generation_throughput.csv")
MODELS = ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct")

#: prompts that ask for more than 64 tokens, so that every method writes the full budget
PROMPTS: list[Prompt] = [
    [{"role": "user", "content": "Write a long story about a lighthouse keeper who finds a message in a bottle."}],
    [{"role": "user", "content": "Explain in detail how a bicycle works, part by part, for a curious child."}],
    [{"role": "system", "content": "You are a careful assistant who writes thorough answers."},
     {"role": "user", "content": "Describe the water cycle step by step, with an example for each step."}],
]


def threads_default() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def measure(method: str, model_name: str, run: Callable[[], tuple[int, int]], n_prompts: int,
            threads: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Time ``run()`` (which returns prompt tokens and generated tokens) and make one table row of it."""
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    prompt_tokens, new_tokens = run()
    seconds = time.perf_counter() - t0
    return {"method": method, "model": model_name, "prompts": n_prompts, "prompt_tokens": prompt_tokens,
            "new_tokens": new_tokens, "seconds": round(seconds, 3), "tokens_per_s": round(new_tokens / seconds, 2),
            "threads": threads, "load_avg_before": round(load_before, 2),
            "load_avg_after": round(os.getloadavg()[0], 2), **(extra or {})}


def run_transformers_single(model_name: str, prompts: list[Prompt], cfg: GenerationConfig, threads: int,
                            repeats: int = 1) -> dict[str, Any]:
    """judgelab's transformers backend, one prompt per call (no batching, no padding)."""
    import torch

    torch.set_num_threads(threads)
    model = get_model(f"zoo:{model_name}", device="cpu")
    model.generate(prompts[:1], GenerationConfig(max_new_tokens=4))  # warm-up
    ids = [model.encode(p) for p in prompts]

    def run() -> tuple[int, int]:
        new = 0
        for p in prompts:
            [text] = model.generate([p], cfg)
            new += len(model.tokenizer(text, add_special_tokens=False)["input_ids"])
        return sum(map(len, ids)), new

    rows = [measure("judgelab-transformers", model_name, run, len(prompts), threads,
                    {"torch": torch.__version__}) for _ in range(repeats)]
    return max(rows, key=lambda r: r["tokens_per_s"])


def _llamacpp(model_name: str, threads: int, **kwargs: Any):
    return get_model(f"{model_name}@llama.cpp", n_threads=threads, n_ctx=2048, **kwargs)


def run_llamacpp_judgelab(model_name: str, prompts: list[Prompt], cfg: GenerationConfig, threads: int,
                          repeats: int = 1) -> dict[str, Any]:
    """judgelab's llama.cpp runtime through the Model interface (text out, exact token counts from its stats)."""
    model = _llamacpp(model_name, threads)
    model.generate(prompts[:1], GenerationConfig(max_new_tokens=4))  # warm-up

    def run() -> tuple[int, int]:
        before = dict(model.stats)
        model._reset()  # every repeat starts from an empty cache, as the raw method does
        model.generate(prompts, cfg)
        return (model.stats["prompt_tokens"] - before["prompt_tokens"],
                model.stats["generated_tokens"] - before["generated_tokens"])

    from judgelab.models.llamacpp_backend import llama_cpp_version

    rows = [measure("judgelab-llama.cpp", model_name, run, len(prompts), threads,
                    {"llama_cpp_python": llama_cpp_version()}) for _ in range(repeats)]
    model.llm.close()
    return max(rows, key=lambda r: r["tokens_per_s"])


def run_llamacpp_batched(model_name: str, prompts: list[Prompt], cfg: GenerationConfig, threads: int,
                         repeats: int = 1) -> dict[str, Any]:
    """judgelab's llama.cpp runtime decoding all the prompts together (``decode_batch=len(prompts)``)."""
    model = _llamacpp(model_name, threads, decode_batch=len(prompts))
    model.generate(prompts[:2], GenerationConfig(max_new_tokens=4))  # warm-up

    def run() -> tuple[int, int]:
        before = dict(model.stats)
        model.generate(prompts, cfg)
        return (model.stats["prompt_tokens"] - before["prompt_tokens"],
                model.stats["generated_tokens"] - before["generated_tokens"])

    from judgelab.models.llamacpp_backend import llama_cpp_version

    rows = [measure("judgelab-llama.cpp-batched", model_name, run, len(prompts), threads,
                    {"llama_cpp_python": llama_cpp_version()}) for _ in range(repeats)]
    model.llm.close()
    return max(rows, key=lambda r: r["tokens_per_s"])


def run_llamacpp_raw(model_name: str, prompts: list[Prompt], cfg: GenerationConfig, threads: int,
                     repeats: int = 1) -> dict[str, Any]:
    """llama-cpp-python's own ``create_completion`` on the same token ids, same Llama settings."""
    model = _llamacpp(model_name, threads)  # the same Llama object and settings; only the call differs
    llm = model.llm
    ids = [model.encode(p) for p in prompts]
    llm.create_completion(ids[0], max_tokens=4, temperature=0.0)  # warm-up

    def run() -> tuple[int, int]:
        llm.reset()
        new = 0
        for toks in ids:
            out = llm.create_completion(toks, max_tokens=cfg.max_new_tokens, temperature=0.0)
            new += out["usage"]["completion_tokens"]
        return sum(map(len, ids)), new

    from judgelab.models.llamacpp_backend import llama_cpp_version

    rows = [measure("llama-cpp-python", model_name, run, len(prompts), threads,
                    {"llama_cpp_python": llama_cpp_version()}) for _ in range(repeats)]
    llm.close()
    return max(rows, key=lambda r: r["tokens_per_s"])


METHODS: dict[str, Callable[..., dict[str, Any]]] = {
    "judgelab-transformers": run_transformers_single,
    "judgelab-llama.cpp": run_llamacpp_judgelab,
    "judgelab-llama.cpp-batched": run_llamacpp_batched,
    "llama-cpp-python": run_llamacpp_raw,
}


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median tokens/s (the lower middle one for an even count), with every run's rate."""
    ranked = sorted(rows, key=lambda r: r["tokens_per_s"])
    row = dict(ranked[(len(ranked) - 1) // 2])
    row["runs_tokens_per_s"] = ";".join(f"{r['tokens_per_s']:g}" for r in rows)
    return row


def write_rows(rows: list[dict[str, Any]], out: Path = OUT) -> pd.DataFrame:
    """Merge ``rows`` into the table at ``out``: rows of the same (method, model) are replaced."""
    new = pd.DataFrame(rows)
    if out.is_file():
        old = pd.read_csv(out)
        ran = set(zip(new["method"], new["model"]))
        old = old[[(m, n) not in ran for m, n in zip(old["method"], old["model"])]]
        new = pd.concat([old, new], ignore_index=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    new.to_csv(tmp, index=False)
    os.replace(tmp, out)
    return new


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=threads_default())
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    methods = args.methods.split(",")
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}; known: {', '.join(METHODS)}")
    cfg = GenerationConfig(max_new_tokens=args.new_tokens)
    hw, date = hardware(), time.strftime("%Y-%m-%d")
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for name in args.models.split(","):
        sha = zoo_entry(name).gguf_sha256
        for rep in range(args.repeats):  # methods take turns, so a change in the machine's load hits all
            for m in methods:
                row = METHODS[m](name, PROMPTS, cfg, args.threads)
                row.update({"new_tokens_max": args.new_tokens, "hardware": hw, "date": date, "gguf_sha256": sha,
                            "repeats": args.repeats})
                print(f"{name:30s} {m:28s} run {rep + 1}: {row['tokens_per_s']:8.2f} tokens/s ({row['new_tokens']} "
                      f"tokens, {row['seconds']:.1f} s, load {row['load_avg_before']}->{row['load_avg_after']})",
                      flush=True)
                runs.setdefault((m, name), []).append(row)
    table = write_rows([median_row(r) for r in runs.values()], args.out)
    for name in args.models.split(","):
        rate = table[table["model"] == name].set_index("method")["tokens_per_s"]
        if {"judgelab-llama.cpp", "llama-cpp-python"} <= set(rate.index):
            print(f"{name}: judgelab-llama.cpp / llama-cpp-python = "
                  f"{rate['judgelab-llama.cpp'] / rate['llama-cpp-python']:.3f}")
    return table


if __name__ == "__main__":
    main()

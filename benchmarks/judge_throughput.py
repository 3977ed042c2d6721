"""Judge throughput: how fast can a judge read the paper's pairwise prompts on this machine?

Same model (qwen2.5-coder-0.5b-instruct, the zoo's offline GGUF), same prompts (both pairwise tasks, both
orders, the five released authors against the Llama-2 summary standing in as "self", for the first
``--articles`` held-out XSUM articles), three ways:

(a) ``naive``: one forward pass per prompt, no reuse, full logits -- what the original code does;
(b) ``judgelab-transformers``: judgelab's transformers backend (shared article prefix run once per
    group, suffixes batched, last-position logits only);
(c) ``llamacpp-server``: llama.cpp's server (its own Q4 kernels) through judgelab's OpenAI-compatible
    backend, one request per prompt, top-20 logprobs.

Writes ``results/benchmarks/judge_throughput.csv`` with ``method, prompts, seconds, prompts_per_s,
tokens_per_s`` (plus the machine and date). Timings are wall-clock on whatever else the machine is doing;
run it on an idle machine. Usage::

    python benchmarks/judge_throughput.py [--articles 20] [--methods naive,judgelab-transformers,llamacpp-server]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from judgelab.data.self_recognition import load_articles, load_summaries
from judgelab.experiments.open_models import held_out_keys, pairwise_requests
from judgelab.profiles import hardware

MODEL = "qwen2.5-coder-0.5b-instruct"
OUT = Path("results/benchmarks/judge_throughput.csv")


def benchmark_prompts(n_articles: int) -> list[list[dict[str, str]]]:
    """The pairwise prompts of the first ``n_articles`` held-out XSUM articles (llama as "self")."""
    keys = held_out_keys("xsum", n_articles)
    summaries = load_summaries("xsum")
    authors = summaries[summaries["key"].isin(keys)].assign(
        author=lambda d: d["author"].replace({"llama": "self"}))
    articles = load_articles("xsum").set_index("key")["article"]
    _, reqs = pairwise_requests(authors, "self", articles)
    return [r.messages for r in reqs]


def _row(method: str, prompts: int, seconds: float, tokens: int) -> dict:
    return {"method": method, "prompts": prompts, "seconds": round(seconds, 2),
            "prompts_per_s": round(prompts / seconds, 3), "tokens_per_s": round(tokens / seconds, 1)}


def run_transformers(prompts, prefix_sharing: bool, method: str) -> dict:
    from judgelab.models import get_model

    model = get_model(MODEL, device="cpu", prefix_sharing=prefix_sharing)
    tokens = sum(len(model.encode(p)) for p in prompts)
    model.option_probs(prompts[:2], ("1", "2"))  # warm-up
    start = time.perf_counter()
    model.option_probs(prompts, ("1", "2"))
    return _row(method, len(prompts), time.perf_counter() - start, tokens)


def run_llamacpp(prompts) -> dict:
    from judgelab.models import get_model
    from judgelab.models.llamacpp_server import serve_gguf
    from judgelab.models.openai_backend import OpenAICompatibleModel
    from judgelab.models.zoo import zoo_entry

    tok_model = get_model(MODEL, device="cpu")  # only to count prompt tokens the same way as (a) and (b)
    tokens = sum(len(tok_model.encode(p)) for p in prompts)
    del tok_model
    with serve_gguf(zoo_entry(MODEL).gguf_path(), n_ctx=4096) as url:
        model = OpenAICompatibleModel.for_zoo(MODEL, url, max_concurrency=1)
        model.option_probs(prompts[:2], ("1", "2"))
        start = time.perf_counter()
        model.option_probs(prompts, ("1", "2"))
        return _row("llamacpp-server", len(prompts), time.perf_counter() - start, tokens)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--articles", type=int, default=20)
    ap.add_argument("--methods", default="naive,judgelab-transformers,llamacpp-server")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    prompts = benchmark_prompts(args.articles)
    rows = []
    for method in args.methods.split(","):
        print(f"{method}: {len(prompts)} prompts ...", flush=True)
        if method == "naive":
            rows.append(run_transformers(prompts, False, method))
        elif method == "judgelab-transformers":
            rows.append(run_transformers(prompts, True, method))
        elif method == "llamacpp-server":
            rows.append(run_llamacpp(prompts))
        else:
            raise SystemExit(f"unknown method {method!r}")
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows).assign(model=MODEL, articles=args.articles, hardware=hardware(),
                                      date=time.strftime("%Y-%m-%d"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(table.to_string(index=False))
    return table


if __name__ == "__main__":
    main()

"""Judge throughput: how fast can a judge read the paper's pairwise prompts on this machine?

Same model (qwen2.5-coder-0.5b-instruct, the zoo's offline GGUF), same prompts (both pairwise tasks, both
orders, the five released authors against the Llama-2 summary standing in as "self", for the first
``--articles`` held-out XSUM articles), several ways:

- ``naive``: one forward pass per prompt, no reuse, full logits -- what the original code does;
- ``prefix``: judgelab's transformers backend as it was (``prefix_sharing="group"``): prompts grouped by
  a long shared prefix (the article), the prefix run once per group, the suffixes batched with padding;
- ``tree``: judgelab's transformers backend now (``prefix_sharing="tree"``): a prefix tree over all the
  prompts, every common prefix computed once, branches packed into unpadded rows, each node's queries
  scored only against the keys it can see (:mod:`judgelab.models.tree_attention`);
- ``tree-dense`` (not run by default): the same walk with the dense tree-shaped mask over each whole row
  (``tree_attention=False``, the method of the first tree table) -- what the per-node attention adds;
- ``llamacpp``: llama.cpp in-process (judgelab's llama.cpp runtime, or llama-cpp-python directly where
  that runtime is absent), prompts in sorted order so each reuses the longest prefix it shares with the
  one before (llama.cpp keeps one sequence's KV cache), last-position logits only;
- ``llamacpp-server`` (not run by default: 13 minutes for 20 articles): llama.cpp's server through
  judgelab's OpenAI-compatible backend, one request per prompt, top-20 logprobs.

Each row records the *computed tokens* (token rows through the transformer layers, padding included) against
the minimum (every distinct prefix once: :func:`~judgelab.models.prefix_tree.unique_prefix_tokens`), and the
achieved GFLOP/s against this machine's fp32 matrix-multiply peak, measured in the same run with
``torch.matmul`` before and after the methods (the higher of the two is the peak: on a shared machine the
lower one measured the other processes too). FLOPs counted are those of the weight matrices: ``2 x (parameters of the transformer
blocks' linear layers)`` per computed row, plus ``2 x hidden x vocabulary`` per row through the LM head;
the attention scores (QK^T and AV, about 10 % more at these lengths) are not counted, so the shares are a
lower bound. llama.cpp multiplies quantised weights with its own kernels, so its share of the *fp32* peak
compares speed, not kernel efficiency. The load average (1 minute, before and after each method) and the
hardware string are recorded because the machine may be shared; ``--repeats`` runs the methods in turn
that many times and keeps each one's fastest run.

Writes ``results/benchmarks/judge_throughput.csv``. Usage::

    python benchmarks/judge_throughput.py [--articles 20] [--methods naive,prefix,tree,llamacpp] [--repeats 1]
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

import pandas as pd

from judgelab.data.self_recognition import load_articles, load_summaries
from judgelab.experiments.open_models import held_out_keys, pairwise_requests
from judgelab.models.prefix_tree import sequential_reuse_tokens, unique_prefix_tokens
from judgelab.profiles import hardware

MODEL = "qwen2.5-coder-0.5b-instruct"
OUT = Path("results/benchmarks/judge_throughput.csv")
METHODS = ("naive", "prefix", "tree", "llamacpp")
#: methods run only when asked for
EXTRA_METHODS = ("tree-dense", "llamacpp-server")
#: the committed table's name for today's (before the prefix tree) method
COMMITTED_PREFIX = ("judgelab-transformers", "prefix")


def benchmark_prompts(n_articles: int) -> list[list[dict[str, str]]]:
    """The pairwise prompts of the first ``n_articles`` held-out XSUM articles (llama as "self")."""
    keys = held_out_keys("xsum", n_articles)
    summaries = load_summaries("xsum")
    authors = summaries[summaries["key"].isin(keys)].assign(
        author=lambda d: d["author"].replace({"llama": "self"}))
    articles = load_articles("xsum").set_index("key")["article"]
    _, reqs = pairwise_requests(authors, "self", articles)
    return [r.messages for r in reqs]


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """This machine's fp32 matrix-multiply rate (GFLOP/s): the best of ``repeats`` n x n products."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def flop_model(hf_model) -> tuple[float, float]:
    """FLOPs per computed row through the blocks' weight matrices, and per row through the LM head."""
    import torch

    inner = hf_model.get_decoder() if hasattr(hf_model, "get_decoder") else hf_model.model
    block = sum(m.weight.numel() for m in inner.modules() if isinstance(m, torch.nn.Linear))
    head = hf_model.get_output_embeddings().weight.numel()
    return 2.0 * block, 2.0 * head


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _time(fn) -> tuple[float, float, float]:
    before = _load()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0, before, _load()


def run_transformers(base, prompts, method: str) -> dict:
    """One of naive / prefix / tree through judgelab's transformers backend, with its compute counts."""
    from judgelab.models.transformers_backend import ComputeCounts

    model = copy.copy(base)
    model.prefix_sharing = {"naive": False, "prefix": "group", "tree": "tree", "tree-dense": "tree"}[method]
    model.tree_attention = method != "tree-dense"
    model.option_probs(prompts[:2], ("1", "2"))  # warm-up
    model.counts = ComputeCounts()
    seconds, before, after = _time(lambda: model.option_probs(prompts, ("1", "2")))
    c = model.counts
    return {"method": method, "seconds": seconds, "computed_tokens": c.judge_rows,
            "logit_rows": c.judge_logit_rows, "forward_passes": c.judge_forwards,
            "load_before": before, "load_after": after}


def run_llamacpp(prompts, ids: list[list[int]]) -> dict:
    """llama.cpp in-process with prefix reuse: judgelab's runtime if present, else llama-cpp-python directly."""
    try:
        from judgelab.models.llamacpp_backend import load_zoo
    except ImportError:
        load_zoo = None
    from judgelab.models.zoo import zoo_entry

    entry = zoo_entry(MODEL)
    if load_zoo is not None:
        model = load_zoo(entry)
        model.option_probs(prompts[:2], ("1", "2"))  # warm-up
        model.llm.reset()  # start from an empty cache, as the transformers methods do
        model.stats = dict.fromkeys(model.stats, 0)
        seconds, before, after = _time(lambda: model.option_probs(prompts, ("1", "2")))
        computed, via = model.stats["evaluated_tokens"], "judgelab LlamaCppModel"
        model.llm.close()
    else:  # pragma: no cover - only where judgelab's llama.cpp runtime is missing
        import llama_cpp
        import numpy as np

        llm = llama_cpp.Llama(model_path=str(entry.gguf_path()), n_ctx=4096, n_threads=os.cpu_count(),
                              n_threads_batch=os.cpu_count(), logits_all=False, verbose=False)

        def score_all() -> None:
            for s in sorted(ids):
                keep = 0
                if llm.n_tokens:
                    prev = llm.input_ids[: llm.n_tokens].tolist()
                    while keep < min(len(prev), len(s) - 1) and prev[keep] == s[keep]:
                        keep += 1
                llm.n_tokens = keep
                llm.eval(s[keep:])
                np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)).max()

        seconds, before, after = _time(score_all)
        computed, via = sequential_reuse_tokens(ids), "llama_cpp.Llama"
        llm.close()
    return {"method": "llamacpp", "seconds": seconds, "computed_tokens": computed, "logit_rows": len(ids),
            "forward_passes": None, "load_before": before, "load_after": after, "via": via}


def run_llamacpp_server(prompts, ids) -> dict:
    from judgelab.models.llamacpp_server import serve_gguf
    from judgelab.models.openai_backend import OpenAICompatibleModel
    from judgelab.models.zoo import zoo_entry

    with serve_gguf(zoo_entry(MODEL).gguf_path(), n_ctx=4096) as url:
        model = OpenAICompatibleModel.for_zoo(MODEL, url, max_concurrency=1)
        model.option_probs(prompts[:2], ("1", "2"))
        seconds, before, after = _time(lambda: model.option_probs(prompts, ("1", "2")))
    # the server reuses the cached prefix of its one slot; the prompts go in the caller's order
    computed = sum(len(s) for s in ids)
    return {"method": "llamacpp-server", "seconds": seconds, "computed_tokens": None, "logit_rows": len(ids),
            "forward_passes": None, "load_before": before, "load_after": after,
            "via": f"server, up to {computed} tokens (its slot's prefix reuse is not counted)"}


def committed_prefix_rate(path: Path, articles: int) -> float | None:
    """prompts/s of the committed table's prefix method on the same prompts, if the table has one."""
    if not path.is_file():
        return None
    old = pd.read_csv(path)
    hit = old[old["method"].isin(COMMITTED_PREFIX) & (old["articles"] == articles)]
    return float(hit["prompts_per_s"].iloc[0]) if len(hit) else None


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--articles", type=int, default=20)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--reference", type=Path, default=None,
                    help="table with the earlier prefix method's prompts/s to compare with (default: --out)")
    args = ap.parse_args(argv)
    methods = args.methods.split(",")
    for m in methods:
        if m not in (*METHODS, *EXTRA_METHODS):
            raise SystemExit(f"unknown method {m!r}; known: {', '.join((*METHODS, *EXTRA_METHODS))}")

    import torch

    from judgelab.models import get_model
    from judgelab.models.transformers_backend import TransformersModel

    reference = committed_prefix_rate(args.reference or args.out, args.articles)
    prompts = benchmark_prompts(args.articles)
    base = get_model(MODEL, device="cpu")
    if not isinstance(base, TransformersModel):
        raise SystemExit(f"get_model gave a {type(base).__name__}, not judgelab's transformers backend")
    ids = [base.encode(p) for p in prompts]
    prompt_tokens, minimum = sum(len(s) for s in ids), unique_prefix_tokens(ids)
    per_row, per_logit = flop_model(base.model)
    print(f"{len(prompts)} prompts, {prompt_tokens} tokens, {minimum} distinct prefixes; "
          f"torch threads {torch.get_num_threads()}", flush=True)
    peak = matmul_peak_gflops()
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s", flush=True)

    best: dict[str, dict] = {}
    for rep in range(args.repeats):
        for method in methods:
            if method == "naive" and rep > 0:
                continue  # the slowest by far; once is enough to place it
            print(f"{method} (run {rep + 1}): {len(prompts)} prompts ...", flush=True)
            if method == "llamacpp":
                row = run_llamacpp(prompts, ids)
            elif method == "llamacpp-server":
                row = run_llamacpp_server(prompts, ids)
            else:
                row = run_transformers(base, prompts, method)
            row["runs"] = best.get(method, {}).get("runs", []) + [round(row["seconds"], 2)]
            if method not in best or row["seconds"] < best[method]["seconds"]:
                best[method] = row
            else:
                best[method]["runs"] = row["runs"]
            print({k: v for k, v in row.items() if k != "runs"}, flush=True)
    peak_after = matmul_peak_gflops()
    rows = []
    for method in methods:
        r = dict(best[method])
        s = r["seconds"]
        computed = r["computed_tokens"]
        gflop = None if computed is None else (computed * per_row + r["logit_rows"] * per_logit) / 1e9
        rows.append({
            "method": method,
            "prompts": len(prompts),
            "seconds": round(s, 2),
            "prompts_per_s": round(len(prompts) / s, 3),
            "tokens_per_s": round(prompt_tokens / s, 1),
            "prompt_tokens": prompt_tokens,
            "computed_tokens": computed,
            "min_tokens": minimum,
            "computed_over_min": None if computed is None else round(computed / minimum, 3),
            "logit_rows": r["logit_rows"],
            "forward_passes": r["forward_passes"],
            "weight_gflop": None if gflop is None else round(gflop, 1),
            "gflop_per_s": None if gflop is None else round(gflop / s, 1),
            "matmul_peak_gflop_per_s": round(max(peak, peak_after), 1),
            "share_of_peak": None if gflop is None else round(gflop / s / max(peak, peak_after), 3),
            "load_before": r["load_before"],
            "load_after": r["load_after"],
            "runs_s": " ".join(f"{x:g}" for x in r["runs"]),
            "via": r.get("via", "judgelab TransformersModel"),
        })
    table = pd.DataFrame(rows)
    same_run_prefix = table.loc[table["method"] == "prefix", "prompts_per_s"]
    if len(same_run_prefix):
        table["vs_prefix_same_run"] = (table["prompts_per_s"] / float(same_run_prefix.iloc[0])).round(3)
    if reference is not None:
        table["vs_committed_prefix"] = (table["prompts_per_s"] / reference).round(3)
    table = table.assign(model=MODEL, articles=args.articles, torch_threads=torch.get_num_threads(),
                         matmul_peak_before=round(peak, 1), matmul_peak_after=round(peak_after, 1),
                         hardware=hardware(),
                         date=time.strftime("%Y-%m-%d"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".csv.tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(args.out)
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print(table.drop(columns=["hardware"]).to_string(index=False))
    return table


if __name__ == "__main__":
    main()

"""Numerical-bias scoring throughput: the exact score distribution against the paper's 10 sampled generations.

Same model, same items (the first ``--items`` of the chapter's seeded en-de sample), same prompts (the
judge's main form, range 0-10), one run, no store (every call computed). Methods:

- ``exact``: :func:`~judgelab.experiments.numerical_bias.scoring.exact_distributions` at the chapter's four
  temperatures (0.4, 0.7, 1.0, 1.3) at once, one decimal, ``min_prob`` 1e-3 -- the whole distribution, from
  which any number of samples' mean, the expected score and any of the four temperatures follow;
- ``sampled-10``: :func:`~judgelab.experiments.numerical_bias.scoring.sample_scores`, 10 generations of at
  most 5 new tokens per item at T=0.7 -- one temperature, one draw of the item's score.

Each row records items, seconds, ``items_per_s``, ``seconds_per_item``, the forward evaluations (exact) or
generations (sampled), the model, its runtime, threads, the 1-minute load average before and after (the
machine is shared: read the numbers with it), the hardware string and the date. The methods alternate
``--repeats`` times and each row is the median run, every run kept in ``runs_seconds``.

Writes ``results/benchmarks/numerical_bias_scoring.csv``, replacing the rows of the (method, model) pairs it
ran. Usage::

    OMP_NUM_THREADS=1 python benchmarks/numerical_bias_scoring.py [--models smollm2-135m-instruct@llama.cpp]
        [--items 10] [--repeats 1] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import pandas as pd

from judgelab.experiments.numerical_bias import run as R
from judgelab.experiments.numerical_bias import scoring as S
from judgelab.models import get_model
from judgelab.profiles import hardware

OUT = Path("results/benchmarks/numerical_bias_scoring.csv")


def measure(spec: str, items: int, repeats: int, threads: int) -> list[dict]:
    kwargs = {"n_threads": threads} if spec.endswith("@llama.cpp") else {}
    model = get_model(spec, **kwargs)
    form = "chat" if model.is_chat else "completion"
    rows = R.subset_items("en-de", items).to_dict("records")
    prompts = [R.item_prompt(r, form, R.DEFAULT_RANGE) for r in rows]
    batch = 1 if hasattr(model, "llm") else 8
    runtime = R.runtime_of(model.fingerprint)
    # warm-up: one item each way (tokenizer tables, first-call allocations)
    S.exact_distributions(model, prompts[:1], R.DEFAULT_RANGE, temperatures=R.TEMPERATURES, min_prob=1e-3)
    S.sample_scores(model, prompts[:1], R.DEFAULT_RANGE, n=1)
    runs: dict[str, list[tuple[float, int, float, float]]] = {"exact": [], "sampled-10": []}
    for _ in range(repeats):
        for method in runs:
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            if method == "exact":
                d = S.exact_distributions(model, prompts, R.DEFAULT_RANGE, temperatures=R.TEMPERATURES, decimals=1,
                                          min_prob=1e-3, batch_prompts=batch)
                work = sum(x[R.PAPER_T].evaluations for x in d)
            else:
                s = S.sample_scores(model, prompts, R.DEFAULT_RANGE, n=S.PAPER_SAMPLES, temperature=S.PAPER_TEMPERATURE,
                                    prompts_per_call=1 if batch == 1 else 8)
                work = len(s)
            runs[method].append((time.perf_counter() - t0, work, load0, os.getloadavg()[0]))
    out = []
    for method, rs in runs.items():
        med = statistics.median(r[0] for r in rs)
        sec, work, l0, l1 = min(rs, key=lambda r: abs(r[0] - med))
        out.append({"method": method, "model": spec, "runtime": runtime, "items": items, "seconds": round(sec, 3),
                    "items_per_s": round(items / sec, 4), "seconds_per_item": round(sec / items, 3),
                    "work": work, "work_unit": "forward evaluations" if method == "exact" else "generations",
                    "temperatures": " ".join(f"{t:g}" for t in (R.TEMPERATURES if method == "exact" else (0.7,))),
                    "threads": threads, "load_avg_before": round(l0, 2), "load_avg_after": round(l1, 2),
                    "repeats": repeats, "runs_seconds": ";".join(f"{r[0]:.2f}" for r in rs), "hardware": hardware(),
                    "date": time.strftime("%Y-%m-%d")})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="smollm2-135m-instruct@llama.cpp")
    ap.add_argument("--items", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    args = ap.parse_args()
    rows = []
    for spec in args.models.split(","):
        rows += measure(spec.strip(), args.items, args.repeats, args.threads)
    new = pd.DataFrame(rows)
    if OUT.exists():
        old = pd.read_csv(OUT)
        keep = ~old.set_index(["method", "model"]).index.isin(new.set_index(["method", "model"]).index)
        new = pd.concat([old[keep], new], ignore_index=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    from judgelab.paths import write_csv

    write_csv(new, OUT)
    print(new.drop(columns=["hardware"]).to_string(index=False))


if __name__ == "__main__":
    main()

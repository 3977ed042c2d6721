"""Zoo load time: the first load of a zoo model (GGUF -> float32 conversion) and every later load (cache).

Each load runs in a fresh Python process, as a reader's notebook would: ``first`` starts from an empty
conversion cache (a temporary ``JUDGELAB_CACHE`` whose ``gguf/`` and ``sha256/`` link to the real cache, so
the GGUF is not re-assembled or re-hashed -- only converted), ``second`` loads what ``first`` saved. The
child process times the pieces of :func:`judgelab.models.transformers_backend.load_zoo_offline` by wrapping
them (nothing in the library is changed): importing torch and transformers, verifying the GGUF, the
tokenizer, the weights, and reading the GGUF's quantisation type.

Target: the second load of qwen2.5-coder-0.5b-instruct in at most 5 s on a laptop CPU.

``--variant quant-type-memo`` emulates the fix proposed for ``load_zoo_offline`` (read the GGUF's
quantisation type once, not on every load: ``gguf.GGUFReader`` parses every vocabulary entry in Python).

Writes ``results/benchmarks/zoo_load_time.csv``: ``model, load, seconds`` (the ``get_model`` call, imports
excluded), the breakdown, ``import_s`` (torch + transformers), ``total_s`` (the child process's wall time),
``peak_rss_mb``, ``hardware``, ``date`` and the load average (the timings are wall clock on whatever else the
machine does). Usage::

    python benchmarks/zoo_load_time.py [--all | MODEL ...] [--repeats 1] [--variant as-is|quant-type-memo]
                                       [--reuse-converted] [--out results/benchmarks/zoo_load_time.csv]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_MODELS = ("qwen2.5-coder-0.5b-instruct", "smollm2-135m-instruct")
OUT = Path("results/benchmarks/zoo_load_time.csv")
TARGET_S = 5.0

CHILD = r'''
import json, os, resource, sys, time
t_start = time.perf_counter()
timings = {}
t = time.perf_counter(); import torch; timings["import_torch_s"] = time.perf_counter() - t
t = time.perf_counter(); import transformers; from transformers import AutoModelForCausalLM, AutoTokenizer
timings["import_transformers_s"] = time.perf_counter() - t
t = time.perf_counter()
from judgelab.models import get_model, transformers_backend as tb, zoo
timings["import_judgelab_s"] = time.perf_counter() - t

def timed(owner, attr, key, static=False):
    fn = getattr(owner, attr)
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - t
    setattr(owner, attr, classmethod(lambda cls, *a, **k: wrapper(*a, **k)) if static else wrapper)

timed(zoo.ZooEntry, "gguf_path", "verify_gguf_s")
timed(AutoTokenizer, "from_pretrained", "tokenizer_s", static=True)
timed(AutoModelForCausalLM, "from_pretrained", "weights_s", static=True)
if os.environ.get("ZOO_BENCH_VARIANT") == "quant-type-memo":
    # the proposed fix, emulated: read the GGUF's quantisation type once and remember it in the cache
    import hashlib
    from pathlib import Path
    _read = tb._gguf_quant_type
    def _memo(path):
        memo = zoo.model_cache_dir() / "quant_type" / hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:24]
        if memo.is_file():
            return memo.read_text() or None
        value = _read(path)
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(value or "")
        return value
    tb._gguf_quant_type = _memo
timed(tb, "_gguf_quant_type", "gguf_metadata_s")
t = time.perf_counter()
model = get_model("zoo:" + sys.argv[1], device="cpu")
timings["get_model_s"] = time.perf_counter() - t
t = time.perf_counter()
model.option_probs(["1, 2, 1, 2, 1,"], ("1", "2"))
timings["first_call_s"] = time.perf_counter() - t
timings["total_s"] = time.perf_counter() - t_start
timings["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
timings["quantisation"] = model.fingerprint.get("quantisation")
print("@@" + json.dumps(timings))
'''


def run_child(model: str, cache: Path, variant: str = "as-is") -> dict:
    env = dict(os.environ, JUDGELAB_CACHE=str(cache), TQDM_DISABLE="1", TRANSFORMERS_VERBOSITY="error",
               ZOO_BENCH_VARIANT=variant)
    wall = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", CHILD, model], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - wall
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("@@")]
    if res.returncode != 0 or not lines:
        raise RuntimeError(f"loading {model} failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    out = json.loads(lines[-1][2:])
    out["process_wall_s"] = wall
    return out


def fresh_cache(real: Path, parent: Path, reuse_converted: bool = False) -> Path:
    """A cache with the real verified GGUFs and hash memos but no converted models (or the real ones)."""
    cache = Path(tempfile.mkdtemp(prefix="zoo-load-", dir=parent))
    (cache / "models").mkdir()
    for sub in ("gguf", "sha256") + (("converted",) if reuse_converted else ()):
        src = real / sub
        src.mkdir(parents=True, exist_ok=True)
        (cache / "models" / sub).symlink_to(src.resolve(), target_is_directory=True)
    return cache


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help=f"zoo models (default: {', '.join(DEFAULT_MODELS)})")
    parser.add_argument("--all", action="store_true", help="every zoo model")
    parser.add_argument("--repeats", type=int, default=1, help="second loads per model (default 1)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--tmp", type=Path, default=None, help="where the temporary conversion caches go")
    parser.add_argument("--variant", choices=("as-is", "quant-type-memo"), default="as-is",
                        help="quant-type-memo emulates the proposed fix: the GGUF's quantisation type is read "
                             "once and remembered, not parsed from the GGUF on every load")
    parser.add_argument("--reuse-converted", action="store_true",
                        help="skip the conversion: second loads only, from the real conversion cache")
    args = parser.parse_args(argv)

    import pandas as pd

    from judgelab.models.zoo import ZOO, model_cache_dir, zoo_entry
    from judgelab.profiles import hardware

    names = list(ZOO) if args.all else (args.models or list(DEFAULT_MODELS))
    entries = [zoo_entry(n) for n in names]
    for e in entries:
        e.gguf_path()  # assemble and hash once, outside the timings
    real = model_cache_dir()
    rows = []
    for entry in entries:
        cache = fresh_cache(real, args.tmp or real.parent, args.reuse_converted)
        try:
            if args.reuse_converted and args.variant != "as-is":
                run_child(entry.name, cache, args.variant)  # warm-up: fills the variant's memo
            for load in ([] if args.reuse_converted else ["first"]) + ["second"] * args.repeats:
                t = run_child(entry.name, cache, args.variant)
                load_avg = os.getloadavg()[0]
                rows.append({"model": entry.name, "load": load, "seconds": round(t["get_model_s"], 2),
                             "variant": args.variant,
                             "import_s": round(t["import_torch_s"] + t["import_transformers_s"], 2),
                             "verify_gguf_s": round(t.get("verify_gguf_s", 0.0), 2),
                             "tokenizer_s": round(t.get("tokenizer_s", 0.0), 2),
                             "weights_s": round(t.get("weights_s", 0.0), 2),
                             "gguf_metadata_s": round(t.get("gguf_metadata_s", 0.0), 2),
                             "first_call_s": round(t["first_call_s"], 2),
                             "total_s": round(t["process_wall_s"], 2),
                             "peak_rss_mb": round(t["peak_rss_mb"]),
                             "quantisation": t["quantisation"],
                             "hardware": hardware(), "date": time.strftime("%Y-%m-%d"),
                             "load_avg_1m": round(load_avg, 2)})
                r = rows[-1]
                print(f"{entry.name:30s} {load:6s} {r['seconds']:7.2f}s  (tokenizer {r['tokenizer_s']}s, weights "
                      f"{r['weights_s']}s, gguf metadata {r['gguf_metadata_s']}s, verify {r['verify_gguf_s']}s; "
                      f"imports {r['import_s']}s; peak RSS {r['peak_rss_mb']} MB; load avg {r['load_avg_1m']})",
                      flush=True)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    df = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.is_file():  # keep rows of models not measured this time
        old = pd.read_csv(args.out)
        if "variant" not in old:
            old["variant"] = "as-is"
        measured = set(zip(df["model"], df["variant"], df["load"]))
        keep = [(m, v, lo) not in measured for m, v, lo in zip(old["model"], old["variant"], old["load"])]
        df = pd.concat([old[keep], df], ignore_index=True)
    first_cols = ["model", "load", "variant", "seconds"]
    df = df[first_cols + [c for c in df.columns if c not in first_cols]]
    order = {"first": 0, "second": 1}
    df = df.sort_values(["model", "variant", "load"], key=lambda c: c.map(order) if c.name == "load" else c,
                        kind="stable", ignore_index=True)
    df.to_csv(args.out, index=False)
    print(f"wrote {args.out}")
    for variant, second in df[(df["model"] == "qwen2.5-coder-0.5b-instruct") & (df["load"] == "second")].groupby(
            "variant"):
        best = second["seconds"].min()
        print(f"qwen2.5-coder-0.5b-instruct second load ({variant}): {best:.2f}s (target <= {TARGET_S:.0f}s): "
              f"{'met' if best <= TARGET_S else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

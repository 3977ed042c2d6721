"""The ``judgelab`` command line: data, the model zoo, the experiments and the call stores.

::

    judgelab data list [--files]                 pinned sources, their files and sizes
    judgelab data verify [SOURCE ...] [--offline] fetch and hash-check every pinned file
    judgelab zoo list                            the zoo: hub id, chat, offline weights installed, quantisation
    judgelab zoo prepare NAME ... | --all        verify the GGUF, convert it to the safetensors cache, time loads
    judgelab reanalysis [--out DIR]              re-analyse the released data (Panickssery et al. 2024)
    judgelab run open-models --profile P [--extend NAME=N] [--summaries NAME=N]
                                                 run or replay the open-models experiment
    judgelab run finetuning --profile P [--train-on DATASET]   run or replay the fine-tuning experiment (P: ci, book, gpu, api, grow)
    judgelab run labels --profile ci|book [--judges NAME=N ...] [--live]
                                                 the source-label experiment with the open judges
    judgelab run likelihood --profile ci|book [--judges NAME ...] [--articles N] [--live]
                                                 summaries' log-likelihoods under the open judges (llama.cpp)
    judgelab run align --profile ci|book [--stage sft|dpo]    gemma-3-270m base -> SFT -> DPO (resumes)
    judgelab store info PATH                     models, calls per kind and metadata of a call store
    judgelab store migrate PATH ...              rewrite call stores of an older layout in the current one

``--max-run-s SECONDS`` (before the command) bounds every OpenAI-compatible model of a run (api profiles, local
servers): all its calls together, retries included; a call past the limit fails, and what was stored stays.

Exit status: 0 on success, 1 when a check or a run failed, 2 on a usage error. Errors are printed as one
``judgelab: error: ...`` message that names the file, store or model involved, without a traceback
(``--debug`` shows it); no failure is reported as success.
Heavy imports (torch, transformers, pandas) happen inside the commands that need them, so ``judgelab data``
and ``judgelab store`` start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path

PROFILES = ("ci", "book", "gpu", "api")


class CommandError(Exception):
    """A command failed in a way the user can act on: printed without a traceback, exit status 1."""


class UsageError(CommandError):
    """The command line asks for something that cannot be done as asked: exit status 2."""


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def _table(rows: list[dict[str, object]], columns: Sequence[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    lines.append("  ".join("-" * widths[c] for c in columns))
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


# --- data --------------------------------------------------------------------------------------------------
def cmd_data_list(args: argparse.Namespace) -> int:
    from judgelab.data import SOURCE_NAMES, cache_dir, get_source

    rows = []
    for name in SOURCE_NAMES:
        src = get_source(name)
        cached = sum(1 for p in src.files if (cache_dir() / name / p).is_file())
        rows.append({"source": name, "files": len(src.files), "size": _human(sum(f.size for f in src.files.values())),
                     "cached": f"{cached}/{len(src.files)}",
                     "upstream": f"{src.upstream}@{src.commit[:10]}" if src.commit else f"{src.upstream} (mirror only)"})
    print(_table(rows, ["source", "files", "size", "cached", "upstream"]))
    if args.files:
        for name in SOURCE_NAMES:
            src = get_source(name)
            print(f"\n{name}: {src.description}")
            for f in src.files.values():
                print(f"  {f.path}  {_human(f.size)}  sha256:{f.sha256[:12]}")
    print(f"\ncache: {cache_dir()}")
    return 0


def cmd_data_verify(args: argparse.Namespace) -> int:
    from judgelab.data import SOURCE_NAMES, verify_source

    names = args.sources or list(SOURCE_NAMES)
    unknown = [n for n in names if n not in SOURCE_NAMES]
    if unknown:
        raise CommandError(f"unknown data source(s) {', '.join(unknown)}; known: {', '.join(SOURCE_NAMES)}")
    failed = []
    for name in names:
        t0 = time.perf_counter()
        try:
            paths = verify_source(name, download=not args.offline, progress=not args.quiet)
        except Exception as err:  # noqa: BLE001 - DataIntegrityError and whatever else: report and go on
            failed.append(name)
            print(f"FAILED {name}: {err}", file=sys.stderr)
            continue
        size = sum(p.stat().st_size for p in paths)
        print(f"ok {name}: {len(paths)} files, {_human(size)} verified in {time.perf_counter() - t0:.1f}s")
    if failed:
        print(f"{len(failed)} of {len(names)} sources failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


# --- zoo ---------------------------------------------------------------------------------------------------
def cmd_zoo_list(args: argparse.Namespace) -> int:
    from judgelab.models.zoo import ZOO, describe_tensor_types, model_cache_dir

    # cheap on purpose: presence of the weight packages only -- nothing assembled, nothing hashed
    # (verification happens at load and in `zoo prepare`)
    rows = []
    for entry in ZOO.values():
        offline = "installed" if entry.offline_available() else "no"
        converted = model_cache_dir() / "converted" / f"{entry.name}-{entry.gguf_sha256[:16]}" / "config.json"
        rows.append({"name": entry.name, "hub_id": entry.hub_id, "chat": "yes" if entry.chat else "no (base)",
                     "offline": offline, "converted": "yes" if converted.is_file() else "no",
                     "quantisation": entry.quantisation, "tensor types": describe_tensor_types(entry.tensor_types)})
    print(_table(rows, ["name", "hub_id", "chat", "offline", "converted", "quantisation", "tensor types"]))
    missing = [e for e in ZOO.values() if rows[list(ZOO).index(e.name)]["offline"] == "no"]
    if missing:
        print("not installed (install the offline weights with):")
    for e in missing:
        print(f"  {e.name}: {e.pip}")
    print("\nquantisation: the type the GGUF declares; tensor types: share of the tensor bytes, read from the file")
    print(f"cache: {model_cache_dir()} (verify and convert: judgelab zoo prepare NAME)")
    return 0


def cmd_zoo_prepare(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from judgelab.models.zoo import ZOO, ZooError, model_cache_dir, zoo_entry

    if args.all == bool(args.names):
        raise CommandError("name one or more zoo models, or --all")
    try:
        entries = list(ZOO.values()) if args.all else [zoo_entry(n) for n in args.names]
    except ZooError as err:
        raise CommandError(str(err)) from None
    from judgelab.models import transformers_backend as tb

    failed = []
    for entry in tqdm(entries, desc="zoo", unit="model", disable=len(entries) < 2):
        try:
            t0 = time.perf_counter()
            path = entry.gguf_path()
            print(f"{entry.name}: GGUF verified ({path}, {_human(path.stat().st_size)}) "
                  f"in {time.perf_counter() - t0:.1f}s")
            converted = model_cache_dir() / "converted" / f"{entry.name}-{entry.gguf_sha256[:16]}" / "config.json"
            was_cached = converted.is_file()
            t0 = time.perf_counter()
            model = tb.load_zoo_offline(entry, device="cpu")
            first = time.perf_counter() - t0
            del model
            t0 = time.perf_counter()
            model = tb.load_zoo_offline(entry, device="cpu")
            second = time.perf_counter() - t0
            del model
            before = "cached" if was_cached else "GGUF conversion"
            print(f"{entry.name}: load before {first:.1f}s ({before}), after {second:.1f}s (safetensors cache, "
                  f"this process)")
        except (ZooError, OSError) as err:
            failed.append(entry.name)
            print(f"FAILED {entry.name}: {err}", file=sys.stderr)
    return 1 if failed else 0


# --- experiments -------------------------------------------------------------------------------------------
def cmd_reanalysis(args: argparse.Namespace) -> int:
    from judgelab.experiments.reanalysis import write_tables

    t0 = time.perf_counter()
    print(f"re-analysing the released data into {args.out} ...", flush=True)
    paths = write_tables(args.out)
    for name, path in paths.items():
        print(f"  {name}: {path}")
    print(f"{len(paths)} tables in {time.perf_counter() - t0:.0f}s")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import importlib

    module_name = {"open-models": "open_models", "finetuning": "finetuning", "likelihood": "likelihood",
                   "labels": "labels"}[args.experiment]
    try:
        module = importlib.import_module(f"judgelab.experiments.{module_name}")
    except ModuleNotFoundError as err:
        if err.name != f"judgelab.experiments.{module_name}":
            raise
        raise CommandError(f"experiment {args.experiment!r} is not available in this version of judgelab") from None
    write_tables = getattr(module, "write_tables", None)
    if write_tables is None:
        raise CommandError(f"judgelab.experiments.{module_name} has no write_tables(profile, results_dir)")
    results_dir = args.results_dir
    if results_dir is None and hasattr(module, "default_results_dir"):
        results_dir = module.default_results_dir(args.profile)
    profile = args.profile
    if args.experiment == "likelihood":  # sizes and judges of the likelihood analysis (issue 20, item 1)
        try:
            profile = module.likelihood_profile(args.profile, judges=args.judges, articles=args.articles,
                                                live=args.live)
        except ValueError as err:
            raise UsageError(str(err)) from None
    if args.experiment == "labels":  # the source-label experiment with the open judges (issue 20, item 1)
        try:
            profile = module.labels_profile(args.profile, judges=args.judges, live=args.live)
        except ValueError as err:
            raise UsageError(str(err)) from None
        results_dir = args.results_dir or module.default_results_dir(profile.source)
    if getattr(args, "train_on", None):
        # one slice of the fine-tuning grid: the store is shared safely, so slices can run side by side
        from dataclasses import replace

        profile = replace(module.finetuning_profile(profile), train_datasets=tuple(args.train_on))
    t0 = time.perf_counter()
    try:
        if getattr(args, "extend", None) or getattr(args, "summaries", None):
            profile = _extend_open_models(module, profile, args.extend or [], args.summaries or [], results_dir)
        print(f"{args.experiment}: profile {args.profile} -> {results_dir or '(default)'}", flush=True)
        paths = write_tables(profile, results_dir) if results_dir is not None else write_tables(profile)
    except ValueError as err:
        if type(err).__name__ == "CommittedTablesError":  # the command line asked for it: a usage error
            raise UsageError(str(err)) from None
        raise
    for name, path in (paths or {}).items():
        print(f"  {name}: {path}")
    print(f"done in {time.perf_counter() - t0:.0f}s")
    return 0


def cmd_self_judge(args: argparse.Namespace) -> int:
    from judgelab.experiments.self_judge.run import run_self_judge

    try:
        paths = run_self_judge(args.profile, args.stage, live=args.live or None, results_dir=args.results_dir,
                               variants=args.variants)
    except ValueError as err:
        if "unknown self-judge" in str(err):
            raise UsageError(str(err)) from None
        raise
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return 0


def cmd_align(args: argparse.Namespace) -> int:
    """``judgelab run align``: the alignment run of judgelab.experiments.numerical_bias.alignment."""
    from judgelab.experiments.numerical_bias import alignment

    t0 = time.perf_counter()
    results_dir = args.results_dir or alignment.default_results_dir(args.profile)
    print(f"align: profile {args.profile}, stages up to {args.stage} -> {results_dir}", flush=True)
    for name, path in alignment.run(args.profile, results_dir, stage=args.stage).items():
        print(f"  {name}: {path}")
    print(f"done in {time.perf_counter() - t0:.0f}s")
    return 0


def cmd_numerical_bias(args: argparse.Namespace) -> int:
    from judgelab.experiments.numerical_bias import run as nb

    try:
        profile = nb.numerical_bias_profile(args.profile, judges=args.judges, items=args.items, live=args.live)
    except ValueError as err:
        raise UsageError(str(err)) from None
    results_dir = args.results_dir or nb.default_results_dir(args.profile)
    t0 = time.perf_counter()
    print(f"numerical-bias: profile {args.profile} -> {results_dir}", flush=True)
    for name, path in nb.write_tables(profile, results_dir).items():
        print(f"  {name}: {path}")
    print(f"done in {time.perf_counter() - t0:.0f}s")
    return 0


def size_spec(spec: str) -> tuple[str, int]:
    """``NAME=N`` (N a whole number >= 1) as ``(NAME, N)``; anything else is a usage error (exit status 2)."""
    name, eq, n = spec.partition("=")
    if not name or not eq or not n.strip().isdigit() or int(n) < 1:
        raise argparse.ArgumentTypeError(
            f"expected NAME=N with N a whole number >= 1 (e.g. smollm2-135m-instruct=100), got {spec!r}")
    return name, int(n)


def _sizes(flag: str, specs: list) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for spec in specs:
        name, n = spec if isinstance(spec, tuple) else size_spec(spec)
        if name in sizes and sizes[name] != n:
            raise UsageError(f"{flag} names {name} twice ({sizes[name]} and {n})")
        sizes[name] = n
    return sizes


def _never_shrink(flag: str, sizes: dict[str, int], current: dict[str, int], profile: str, what: str) -> None:
    """``--extend`` / ``--summaries`` only ever add articles: a size below the profile's is refused."""
    smaller = {j: (n, current[j]) for j, n in sizes.items() if n < current.get(j, 0)}
    if smaller:
        raise UsageError(
            f"{flag} never shrinks a run: the {profile} profile already has "
            + ", ".join(f"{j} at {have} articles {what} per dataset (asked: {n})" for j, (n, have) in smaller.items())
            + "; ask for at least the profile's size, or run a smaller profile into --results-dir")


def _extend_open_models(module, profile_name: str, judges: list[str], writers: list[str], results_dir: Path | None):
    """Compute live what the stores lack for ``NAME=N`` judges (``--extend``: N held-out articles per
    dataset judged) and summary writers (``--summaries``: N articles summarised), then return the profile
    with those sizes, to be written from the stores (replayed where the profile replays).

    Every judge of the profile takes part in the live run, not only the extended ones: a model's new
    summaries are "other authors" for the others, so they must judge them too (their own calls are already
    stored and replay at no cost), or the next replay of the whole profile would miss those calls."""
    from dataclasses import replace

    judge_sizes, writer_sizes = _sizes("--extend", judges), _sizes("--summaries", writers)
    from judgelab.models import ZooError, validate_spec

    for flag, names in (("--extend", judge_sizes), ("--summaries", writer_sizes)):
        for name in names:  # a bogus name is refused before any judge loads (issue 18)
            try:
                validate_spec(name)
            except ZooError as err:
                raise UsageError(f"{flag} {name}: {err}") from None
    prof = module.open_models_profile(profile_name)
    _never_shrink("--extend", judge_sizes, prof.judges, prof.name, "judged")
    _never_shrink("--summaries", writer_sizes, prof.writers(), prof.name, "summarised")
    live = replace(prof, judges={**prof.judges, **judge_sizes}, summaries={**prof.summaries, **writer_sizes},
                   replay=False)
    check = getattr(module, "check_committed_sizes", None)
    if check is not None:  # refuse before computing anything, not after
        check(live, results_dir if results_dir is not None else module.default_results_dir(prof.name))
    done = [f"{j} to {n} judged" for j, n in judge_sizes.items()] + [f"{j} to {n} summarised"
                                                                    for j, n in writer_sizes.items()]
    print(f"extending {', '.join(done)} held-out articles per dataset (live)", flush=True)
    module.run(live, results_dir) if results_dir is not None else module.run(live)
    if prof.name == "book":
        print("  the book notebook reads its sizes from judgelab/profiles.py: raise them there to show these runs")
    return replace(prof, judges=live.judges, summaries=live.summaries)


# --- stores ------------------------------------------------------------------------------------------------
def _connect_readonly(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        conn.execute("SELECT 1 FROM sqlite_master").fetchall()
        return conn
    except sqlite3.Error:  # a read-only directory cannot take the WAL index: read the file as immutable
        return sqlite3.connect(f"file:{path.resolve()}?immutable=1", uri=True)


def store_info(path: str | Path) -> dict[str, object]:
    """Models, call counts per model and kind, and metadata of the call store at ``path`` (read only)."""
    path = Path(path)
    if not path.is_file():
        raise CommandError(f"no call store at {path}")
    try:
        conn = _connect_readonly(path)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"models", "calls", "meta"} <= tables:
            raise CommandError(f"{path} is not a judgelab call store (tables: {sorted(tables) or 'none'})")
        models = [{"fingerprint_id": r[0], "name": r[1], "fingerprint": json.loads(r[2]), "created": r[3]}
                  for r in conn.execute("SELECT fingerprint_id, name, fingerprint, created FROM models ORDER BY name")]
        counts = [{"fingerprint_id": r[0], "kind": r[1], "calls": r[2], "first": r[3], "last": r[4]}
                  for r in conn.execute("SELECT fingerprint_id, kind, COUNT(*), MIN(created), MAX(created) FROM calls "
                                        "GROUP BY fingerprint_id, kind ORDER BY fingerprint_id, kind")]
        meta = {r[0]: json.loads(r[1]) for r in conn.execute("SELECT name, value FROM meta ORDER BY name")}
        conn.close()
    except sqlite3.DatabaseError as err:
        raise CommandError(f"{path}: not a readable SQLite call store ({err})") from None
    return {"path": str(path), "bytes": path.stat().st_size, "models": models, "counts": counts, "meta": meta}


def cmd_store_info(args: argparse.Namespace) -> int:
    info = store_info(args.path)
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    total = sum(c["calls"] for c in info["counts"])  # type: ignore[union-attr]
    print(f"{info['path']}: {_human(info['bytes'])}, {total} calls")  # type: ignore[arg-type]
    names = {m["fingerprint_id"]: m["name"] for m in info["models"]}  # type: ignore[union-attr]
    print("\nmodels:")
    for m in info["models"]:  # type: ignore[union-attr]
        fp = ", ".join(f"{k}={v}" for k, v in m["fingerprint"].items() if v is not None)
        print(f"  {m['name']}  [{m['fingerprint_id']}]  {fp}")
    print("\ncalls:")
    rows = [{"model": names.get(c["fingerprint_id"], c["fingerprint_id"]), "kind": c["kind"], "calls": c["calls"],
             "first": c["first"], "last": c["last"]} for c in info["counts"]]  # type: ignore[union-attr]
    print(_table(rows, ["model", "kind", "calls", "first", "last"]))
    if info["meta"]:
        print("\nmeta:")
        for k, v in info["meta"].items():  # type: ignore[union-attr]
            print(f"  {k}: {json.dumps(v, ensure_ascii=False)}")
    return 0


def cmd_store_migrate(args: argparse.Namespace) -> int:
    """Rewrite call stores in the current layout (:func:`judgelab.store.migrate`); say what changed in each."""
    from judgelab.store import migrate

    for path in args.paths:
        r = migrate(path)
        if not r["changed"]:
            print(f"{path}: already schema version {r['from_version']}, unchanged")
            continue
        print(f"{path}: {r['calls_before']} calls -> {r['calls_after']} ({r['text_keys_converted']} TEXT keys "
              f"converted, {r['duplicates_removed']} duplicates removed, indexes dropped: "
              f"{', '.join(r['indexes_dropped']) or 'none'}); every key -> record unchanged")
    return 0


# --- parser ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="judgelab", description="A reproducible replication of LLM-as-judge studies.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (anywhere on the line)")
    parser.add_argument("--max-run-s", type=float, default=None, metavar="SECONDS",
                        help="hard wall-clock limit for all calls of each API/server model of the run together "
                             "(sets $JUDGELAB_MAX_RUN_S; a call past it fails and what was stored stays)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="pinned data sources").add_subparsers(dest="action", required=True)
    p = data.add_parser("list", help="sources, files and sizes")
    p.add_argument("--files", action="store_true", help="list every pinned file")
    p.set_defaults(func=cmd_data_list)
    p = data.add_parser("verify", help="fetch and hash-check every pinned file")
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="sources to verify (default: all)")
    p.add_argument("--offline", action="store_true", help="never download: cache and mirror only")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_data_verify)

    zoo = sub.add_parser("zoo", help="the offline model zoo").add_subparsers(dest="action", required=True)
    zoo.add_parser("list", help="zoo models and their offline weights").set_defaults(func=cmd_zoo_list)
    p = zoo.add_parser("prepare", help="verify a model's GGUF and convert it to the safetensors cache")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--all", action="store_true", help="every zoo model")
    p.set_defaults(func=cmd_zoo_prepare)

    p = sub.add_parser("reanalysis", help="re-analyse the released data of Panickssery et al. 2024")
    p.add_argument("--out", default="results/panickssery2024", help="output directory (default: %(default)s)")
    p.set_defaults(func=cmd_reanalysis)

    run = sub.add_parser("run", help="run or replay an experiment").add_subparsers(dest="experiment", required=True)
    for name, text in (("open-models", "out-of-box self-recognition with open models"),
                       ("finetuning", "fine-tuning judges on self-recognition")):
        p = run.add_parser(name, help=text)
        # finetuning's ``grow``: the book grid at the sizes it is growing to, live into results/finetuning_grow
        p.add_argument("--profile", choices=PROFILES + (("grow",) if name == "finetuning" else ()), required=True)
        p.add_argument("--results-dir", type=Path, default=None,
                       help="where tables and stores go (default: the profile's directory)")
        if name == "open-models":
            p.add_argument("--extend", nargs="+", default=None, metavar="NAME=N", type=size_spec,
                           help="first compute live whatever the stores lack for these judges at N held-out "
                                "articles per dataset (the stores resume), then write the tables with those sizes")
            p.add_argument("--summaries", nargs="+", default=None, metavar="NAME=N", type=size_spec,
                           help="likewise, but these models only write summaries of N held-out articles per "
                                "dataset (more than they judge): the other judges judge them as other authors")
        if name == "finetuning":
            p.add_argument("--train-on", nargs="+", choices=("xsum", "cnn"), default=None, metavar="DATASET",
                           help="train only on these datasets (xsum, cnn): run the grid in slices, in "
                                "parallel processes or on several machines; the tables then cover the slice")
        p.set_defaults(func=cmd_run)
    p = run.add_parser("likelihood", help="log-likelihood of each author's summary under the open judges")
    p.add_argument("--profile", choices=("ci", "book"), required=True)
    p.add_argument("--results-dir", type=Path, default=None,
                   help="where tables and likelihood stores go (default: the profile's directory)")
    p.add_argument("--judges", nargs="+", default=None, metavar="NAME[=N]",
                   help="score these judges (zoo names of the open-models book run) at N or --articles each; "
                        "the profile's other judges are replayed at their sizes")
    p.add_argument("--articles", type=int, default=None, metavar="N",
                   help="held-out articles per dataset (the first N each judge judged)")
    p.add_argument("--live", action="store_true",
                   help="compute what the stores lack with the llama.cpp runtime (as JUDGELAB_LIVE=1); the "
                        "stores resume, so an interrupted run continues where it stopped")
    p.set_defaults(func=cmd_run)

    p = run.add_parser("labels", help="the paper's source-label experiment (correct / swapped / random labels) "
                                      "with the open judges")
    p.add_argument("--profile", choices=("ci", "book"), required=True)
    p.add_argument("--results-dir", type=Path, default=None,
                   help="where the tables go (default: the open-models folder of the profile's source run)")
    p.add_argument("--judges", nargs="+", default=None, metavar="NAME=N",
                   help="ask these judges on their first N held-out articles per dataset (others: profile sizes)")
    p.add_argument("--live", action="store_true",
                   help="compute what the judges' stores lack (as JUDGELAB_LIVE=1); the stores resume")
    p.set_defaults(func=cmd_run)

    p = run.add_parser("self-judge", help="Self-J: self-evaluation, judge training, selective following")
    p.add_argument("--profile", choices=PROFILES, required=True)
    p.add_argument("--results-dir", type=Path, default=None, help="default: the profile's directory")
    p.add_argument("--stage", nargs="+", default=None, metavar="STAGE", help="only these stages (default: all)")
    p.add_argument("--variants", nargs="+", default=None, metavar="VARIANT",
                   help="only these judge variants in train / evaluate_trained / best_of_n (default: the profile's; "
                        "e.g. self_j first, the ablations later)")
    p.add_argument("--live", action="store_true", help="compute what the stores lack (as JUDGELAB_LIVE=1)")
    p.set_defaults(func=cmd_self_judge)

    p = run.add_parser("align", help="align gemma-3-270m: SFT then DPO, each stage saved and evaluated (resumes)")
    p.add_argument("--profile", choices=("ci", "book"), required=True)
    p.add_argument("--stage", choices=("sft", "dpo"), default="dpo",
                   help="train and evaluate the stages up to this one (default: %(default)s, both)")
    p.add_argument("--results-dir", type=Path, default=None,
                   help="where the tables go (default: the profile's directory; adapters beside it)")
    p.set_defaults(func=cmd_align)

    p = run.add_parser("numerical-bias", help="numerical bias of judges before and after alignment (Sato et al. 2026)")
    p.add_argument("--profile", choices=PROFILES, required=True)
    p.add_argument("--results-dir", type=Path, default=None,
                   help="where tables and stores go (default: the profile's directory)")
    p.add_argument("--judges", nargs="+", default=None, metavar="NAME[=N]",
                   help="score these judges, at most N (or --items) items per cell; the profile's other judges "
                        "are replayed at their sizes")
    p.add_argument("--items", type=int, default=None, metavar="N", help="at most N items per cell")
    p.add_argument("--live", action="store_true",
                   help="compute what the stores lack (as JUDGELAB_LIVE=1); the stores resume")
    p.set_defaults(func=cmd_numerical_bias)

    store = sub.add_parser("store", help="call stores").add_subparsers(dest="action", required=True)
    p = store.add_parser("info", help="models, counts per kind and metadata")
    p.add_argument("path", type=Path, metavar="PATH")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_store_info)
    p = store.add_parser("migrate", help="rewrite stores of an older layout in the current one (checked)")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.set_defaults(func=cmd_store_migrate)
    return parser


def error_message(err: BaseException) -> str:
    """One line (or a few) that says what failed and where, for any exception a command can raise.

    The judgelab errors (replay misses, backend, zoo and data errors) already name their store, model or
    file; SQLite and OS errors often do not, so the notes added on the way up (``while judging with
    MODEL, store PATH``) are appended, and an OS error's file name is spelled out.
    """
    text = str(err) or type(err).__name__
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    if not is_judgelab_error(err):  # a foreign error's type says what kind of failure it was
        text = f"{type(err).__name__}: {text}"
    notes = [n for n in getattr(err, "__notes__", ()) if n not in text]
    return "; ".join([text, *notes])


#: errors of judgelab's own layers, raised with a message written for the user (what failed, where)
JUDGELAB_ERRORS = ("ReplayMiss", "StoreError", "ZooError", "DataIntegrityError", "BackendError", "ServerError")


def is_judgelab_error(err: BaseException) -> bool:
    return isinstance(err, CommandError) or any(c.__name__ in JUDGELAB_ERRORS for c in type(err).__mro__)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the command
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    if args.max_run_s is not None:
        if not args.max_run_s > 0:
            print(f"judgelab: error: --max-run-s must be a positive number of seconds, got {args.max_run_s:g}",
                  file=sys.stderr)
            return 2
        from judgelab.models.openai_backend import MAX_RUN_ENV

        os.environ[MAX_RUN_ENV] = repr(args.max_run_s)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # pragma: no cover
        print("judgelab: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - every failure becomes one message and a non-zero exit status
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"judgelab: error: {error_message(err)}", file=sys.stderr)
        if not args.debug and not is_judgelab_error(err):
            print("judgelab: run with --debug for the traceback", file=sys.stderr)
        return 2 if isinstance(err, UsageError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

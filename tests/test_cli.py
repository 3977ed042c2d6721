"""The ``judgelab`` command line, called in-process through :func:`judgelab.cli.main` (and once as a script)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from conftest import require
from judgelab.cli import main
from judgelab.data import SOURCE_NAMES


def test_data_list(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in SOURCE_NAMES:
        assert name in out
    assert "110.9 kB" in out  # alpaca_seed's one file


def test_data_list_files(capsys):
    assert main(["data", "list", "--files"]) == 0
    out = capsys.readouterr().out
    assert "seed_tasks.jsonl" in out and "sha256:7779004fa198" in out


def test_data_verify_offline_small_source(capsys):
    code = main(["data", "verify", "alpaca_seed", "--offline", "--quiet"])
    out, err = capsys.readouterr()
    require(not (code != 0 and "no intact copy" in err),
            f"alpaca_seed is neither cached nor mirrored on this machine: {err.strip()}")
    assert code == 0, err
    assert "ok alpaca_seed: 1 files" in out


def test_data_verify_failure_exits_non_zero(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JUDGELAB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("JUDGELAB_DATA_MIRROR", str(tmp_path / "no-mirror"))
    assert main(["data", "verify", "alpaca_seed", "--offline", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "FAILED alpaca_seed" in err
    assert "seed_tasks.jsonl" in err and "7779004fa198" in err  # the file and its pinned hash
    assert "download disabled" in err


def test_data_verify_unknown_source(capsys):
    assert main(["data", "verify", "no_such_source", "--offline"]) == 1
    assert "unknown data source" in capsys.readouterr().err


def test_zoo_list(capsys):
    from judgelab.models.zoo import ZOO

    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for entry in ZOO.values():
        assert entry.name in out and entry.hub_id in out and entry.quantisation in out
    assert "no (base)" in out  # gemma-3-270m is a base model


def test_zoo_prepare_needs_a_name(capsys):
    assert main(["zoo", "prepare"]) == 1
    assert main(["zoo", "prepare", "no-such-model"]) == 1
    err = capsys.readouterr().err
    assert "unknown zoo model" in err and "smollm2-135m-instruct" in err


def _small_store(path):
    from judgelab.models.base import GenerationConfig
    from judgelab.store import CallStore, StoredModel

    from test_store import PROMPTS, FakeModel

    with CallStore(path) as store:
        sm = StoredModel(FakeModel("fake-judge"), store, progress=False)
        sm.option_probs(PROMPTS[:7], ("1", "2"))
        sm.generate(PROMPTS[:3], GenerationConfig(max_new_tokens=5))
        store.set_meta("run:ci", {"profile": "ci", "hardware": "cpu:test"})


def test_store_info(tmp_path, capsys):
    path = tmp_path / "judge.sqlite"
    _small_store(path)
    assert main(["store", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "fake-judge" in out and "10 calls" in out
    assert "option_probs" in out and "generate" in out
    assert "run:ci" in out and "cpu:test" in out

    assert main(["store", "info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {(c["kind"], c["calls"]) for c in info["counts"]} == {("option_probs", 7), ("generate", 3)}
    assert [m["name"] for m in info["models"]] == ["fake-judge"]
    assert info["meta"] == {"run:ci": {"profile": "ci", "hardware": "cpu:test"}}


def test_store_info_errors(tmp_path, capsys):
    assert main(["store", "info", str(tmp_path / "missing.sqlite")]) == 1
    assert not (tmp_path / "missing.sqlite").exists()  # info never creates a store
    bogus = tmp_path / "bogus.sqlite"
    bogus.write_text("not a database")
    assert main(["store", "info", str(bogus)]) == 1
    err = capsys.readouterr().err
    assert "no call store" in err and "bogus.sqlite" in err


@pytest.mark.parametrize("argv", [
    [],
    ["frobnicate"],
    ["data"],
    ["run", "open-models"],  # --profile is required
    ["run", "open-models", "--profile", "huge"],
    ["store", "info"],
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: judgelab" in capsys.readouterr().err


def test_run_unknown_experiment_module(monkeypatch, capsys):
    """``run finetuning`` imports its experiment lazily and says so clearly where it does not exist yet."""
    import importlib

    real = importlib.import_module

    def fake_import(name, *a, **k):
        if name == "judgelab.experiments.finetuning":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    assert main(["run", "finetuning", "--profile", "ci"]) == 1
    assert "not available" in capsys.readouterr().err


def test_console_script():
    exe = shutil.which("judgelab") or shutil.which("judgelab", path=str(__import__("pathlib").Path(sys.executable).parent))
    require(exe is not None, "the judgelab console script is not installed")
    res = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for cmd in ("data", "zoo", "reanalysis", "run", "store"):
        assert cmd in res.stdout
    res = subprocess.run([exe, "zoo", "nonsense"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2


def test_run_open_models_calls_write_tables(tmp_path, monkeypatch, capsys):
    from judgelab.experiments import open_models

    calls = []
    monkeypatch.setattr(open_models, "write_tables",
                        lambda profile, results_dir: calls.append((profile, results_dir)) or {"pairwise.csv": "x"})
    assert main(["run", "open-models", "--profile", "ci", "--results-dir", str(tmp_path)]) == 0
    assert main(["run", "open-models", "--profile", "book"]) == 0
    assert calls == [("ci", tmp_path), ("book", open_models.default_results_dir("book"))]
    assert "pairwise.csv" in capsys.readouterr().out


def test_max_run_s_reaches_the_models_of_the_run(tmp_path, monkeypatch, capsys):
    """``--max-run-s`` sets $JUDGELAB_MAX_RUN_S before the command runs, so every OpenAI-compatible model the
    run creates is bounded; a non-positive value is a usage error."""
    from judgelab.experiments import open_models
    from judgelab.models.openai_backend import MAX_RUN_ENV, OpenAICompatibleModel

    monkeypatch.delenv(MAX_RUN_ENV, raising=False)
    seen = []
    monkeypatch.setattr(open_models, "write_tables", lambda profile, results_dir: seen.append(
        OpenAICompatibleModel("m", base_url="http://127.0.0.1:9/v1", provider_model="m").max_run_s) or {})
    assert main(["--max-run-s", "90", "run", "open-models", "--profile", "api", "--results-dir", str(tmp_path)]) == 0
    assert seen == [90.0]
    monkeypatch.delenv(MAX_RUN_ENV)
    assert main(["--max-run-s", "0", "run", "open-models", "--profile", "api"]) == 2
    assert "--max-run-s must be a positive number of seconds" in capsys.readouterr().err
    assert MAX_RUN_ENV not in os.environ


def test_run_finetuning_is_imported_lazily(tmp_path, monkeypatch, capsys):
    import types

    calls = []
    fake = types.ModuleType("judgelab.experiments.finetuning")
    fake.write_tables = lambda profile, results_dir: calls.append((profile, results_dir)) or {}
    monkeypatch.setitem(sys.modules, "judgelab.experiments.finetuning", fake)
    assert main(["run", "finetuning", "--profile", "ci", "--results-dir", str(tmp_path)]) == 0
    assert calls == [("ci", tmp_path)]


def test_reanalysis_calls_write_tables(tmp_path, monkeypatch, capsys):
    from judgelab.experiments import reanalysis

    calls = []
    monkeypatch.setattr(reanalysis, "write_tables", lambda out: calls.append(out) or {"pairwise": tmp_path / "p.csv"})
    assert main(["reanalysis", "--out", str(tmp_path)]) == 0
    assert calls == [str(tmp_path)]
    assert "1 tables" in capsys.readouterr().out


def test_run_finetuning_train_on_runs_one_slice_of_the_grid(tmp_path, monkeypatch):
    from judgelab.experiments import finetuning

    calls = []
    monkeypatch.setattr(finetuning, "write_tables", lambda profile, results_dir: calls.append((profile, results_dir)) or {})
    assert main(["run", "finetuning", "--profile", "book", "--train-on", "cnn", "--results-dir", str(tmp_path)]) == 0
    (prof, out), = calls
    assert prof.train_datasets == ("cnn",) and prof.eval_datasets == ("xsum", "cnn") and out == tmp_path
    assert prof.variants == finetuning.FINETUNING["book"].variants
    with pytest.raises(SystemExit):
        main(["run", "finetuning", "--profile", "book", "--train-on", "squad"])


def test_run_open_models_extend_computes_live_then_writes_all_judges(tmp_path, monkeypatch, capsys):
    from judgelab.experiments import open_models
    from judgelab.profiles import OPEN_MODELS

    ran, written = [], []
    monkeypatch.setattr(open_models, "run", lambda profile, results_dir: ran.append((profile, results_dir)))
    monkeypatch.setattr(open_models, "write_tables",
                        lambda profile, results_dir: written.append((profile, results_dir)) or {})
    args = ["run", "open-models", "--profile", "book", "--results-dir", str(tmp_path),
            "--extend", "smollm2-135m-instruct=240", "qwen2.5-coder-0.5b-instruct=207",
            "--summaries", "qwen2.5-coder-1.5b-instruct=59"]
    assert main(args) == 0
    (live, live_dir), = ran
    # the judge not extended takes part too: it must judge the extended judges' new summaries
    assert live.judges == {**OPEN_MODELS["book"].judges, "smollm2-135m-instruct": 240,
                           "qwen2.5-coder-0.5b-instruct": 207} and not live.replay
    assert live.summaries == {**OPEN_MODELS["book"].summaries, "qwen2.5-coder-1.5b-instruct": 59}
    (book, book_dir), = written
    assert live_dir == book_dir == tmp_path
    assert book.replay and book.judges["smollm2-135m-instruct"] == 240
    assert book.judges["qwen2.5-coder-0.5b-instruct"] == 207 and book.judges["qwen2.5-coder-1.5b-instruct"] >= 1
    assert book.summaries["qwen2.5-coder-1.5b-instruct"] == 59
    assert "profiles.py" in capsys.readouterr().out
    for flag in ("--extend", "--summaries"):
        for bad in ("smollm2-135m-instruct", "smollm2-135m-instruct=0", "=5", "x=many", "x=1.5", "x=-3"):
            with pytest.raises(SystemExit) as exc:  # a usage error: argparse's message, no traceback
                main(["run", "open-models", "--profile", "book", flag, bad])
            assert exc.value.code == 2
            err = capsys.readouterr().err
            assert "NAME=N" in err and flag in err and repr(bad) in err and "Traceback" not in err
    assert len(ran) == 1  # only the good command ran


def test_extend_never_shrinks_a_run(tmp_path, monkeypatch, capsys):
    """``--extend NAME=N`` below the profile's size used to shrink the run and rewrite the tables."""
    from judgelab.experiments import open_models

    ran = []
    monkeypatch.setattr(open_models, "run", lambda *a, **k: ran.append(a))
    monkeypatch.setattr(open_models, "write_tables", lambda *a, **k: ran.append(a) or {})
    for flag, size in (("--extend", "smollm2-135m-instruct=40"), ("--summaries", "qwen2.5-coder-1.5b-instruct=9")):
        code = main(["run", "open-models", "--profile", "book", "--results-dir", str(tmp_path), flag, size])
        err = capsys.readouterr().err
        assert code == 2 and ran == []
        assert err.startswith("judgelab: error: ") and f"{flag} never shrinks a run" in err
        assert ("smollm2-135m-instruct at 200" if flag == "--extend" else "qwen2.5-coder-1.5b-instruct at 50") in err
    # the profile's own size is not a shrink: it replays what is there
    assert main(["run", "open-models", "--profile", "book", "--results-dir", str(tmp_path),
                 "--extend", "smollm2-135m-instruct=200"]) == 0


def test_smaller_runs_cannot_overwrite_the_committed_book_tables(tmp_path, monkeypatch, capsys):
    from judgelab.experiments import open_models as om

    root = tmp_path / "clone"
    (root / "results" / "open_models").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    monkeypatch.setenv("JUDGELAB_ROOT", str(root))
    committed = root / "results" / "open_models" / "pairwise.csv"
    committed.write_text("the committed table\n")
    monkeypatch.setattr(om, "run", lambda *a, **k: pytest.fail("ran although the write is refused"))
    with pytest.raises(om.CommittedTablesError, match="smollm2-135m-instruct: 2 judged .book: 200."):
        om.write_tables("ci", root / "results" / "open_models")
    # through the command line: a usage error before anything is computed, the table untouched
    code = main(["run", "open-models", "--profile", "ci", "--results-dir", str(root / "results" / "open_models")])
    err = capsys.readouterr().err
    assert code == 2 and "refusing to overwrite the committed book tables" in err and "Traceback" not in err
    code = main(["run", "open-models", "--profile", "ci", "--results-dir", str(root / "results" / "open_models"),
                 "--extend", "smollm2-135m-instruct=5"])
    assert code == 2 and "refusing" in capsys.readouterr().err
    assert committed.read_text() == "the committed table\n"


def test_run_errors_name_the_store_without_a_traceback(tmp_path, capsys):
    """A garbage store and a replay miss: one ``judgelab: error:`` line naming the store, exit status 1."""
    stores = tmp_path / "stores"
    stores.mkdir()
    garbage = stores / "smollm2-135m-instruct.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    code = main(["run", "open-models", "--profile", "book", "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("judgelab: error: ")
    assert "smollm2-135m-instruct.sqlite" in err and "Traceback" not in err
    garbage.unlink()
    code = main(["run", "open-models", "--profile", "book", "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("judgelab: error: ") and "Traceback" not in err
    assert "smollm2-135m-instruct" in err and str(stores) in err  # which model, which store


def test_unexpected_errors_are_one_line_unless_debug(monkeypatch, capsys):
    from judgelab import cli

    def boom(args):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(cli, "cmd_data_list", boom)
    assert main(["data", "list"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "judgelab: error: OperationalError: database or disk is full"
    assert "Traceback" not in err and "--debug" in err
    assert main(["data", "list", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "judgelab: error: OperationalError" in err



def test_a_finetuning_slice_cannot_overwrite_the_committed_tables(tmp_path, monkeypatch, capsys):
    """``--train-on cnn`` writes tables of the cnn slice only: not over the committed book tables."""
    from judgelab.experiments import finetuning as ft

    root = tmp_path / "clone"
    (root / "results" / "finetuning").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    monkeypatch.setenv("JUDGELAB_ROOT", str(root))
    monkeypatch.setattr(ft, "run", lambda *a, **k: pytest.fail("ran although the write is refused"))
    assert main(["run", "finetuning", "--profile", "book", "--train-on", "cnn"]) == 2
    err = capsys.readouterr().err
    assert "refusing to overwrite the committed fine-tuning tables" in err and "training sets ['xsum'] missing" in err
    with pytest.raises(ft.CommittedTablesError, match="variants .* missing"):
        ft.write_tables("ci", root / "results" / "finetuning")


def test_self_judge_variants_choose_what_trains(capsys, monkeypatch, tmp_path):
    """--variants narrows the judge variants (the full Self-J judge can finish before its ablations); an
    unknown one is a usage error naming the known ones, before any stage runs."""
    from judgelab.experiments.self_judge import run as sjrun

    seen = {}
    monkeypatch.setitem(sjrun._STAGE_FUNCS, "train", lambda prof, out: seen.setdefault("variants", prof.variants) and {})
    assert main(["run", "self-judge", "--profile", "ci", "--stage", "train", "--variants", "self_j",
                 "--results-dir", str(tmp_path)]) == 0
    assert seen["variants"] == ("self_j",)
    assert main(["run", "self-judge", "--profile", "ci", "--stage", "train", "--variants", "self_jj"]) == 2
    err = capsys.readouterr().err
    assert "unknown self-judge variants ['self_jj']" in err and "no_distill" in err

"""Fault injection on the call store: what a hostile but fair tester tried, rerun as tests (issue 18).

Each test is a probe that once produced a wrong or lost record with no error: a repeated prompt answered
twice, two writers of one key returning different answers, replay from a read-only folder, garbage and
foreign files, a missing store created by replay, a key of the wrong type, an unversioned layout, two judges
sharing one file. Fake models (no weights) stand in for real ones, so this module takes seconds.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import shutil
import sqlite3
import stat
import tempfile
import traceback
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from judgelab.models.base import GenerationConfig, Model, OptionProbs, Prompt, canonical_json, sha256_hex
from judgelab.store import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    CallStore,
    ReplayMiss,
    StoredModel,
    StoreError,
    StoreIdentityError,
    StoreMissing,
    call_key,
    dump_calls,
    migrate,
)
from test_store import PROMPTS, FakeModel

FORK = multiprocessing.get_context("fork")


class RandomModel(Model):
    """A non-deterministic backend (sampling, a server that changes): every call a fresh random answer.

    ``barrier``: every batch waits there first, so two processes both miss the store before either writes.
    """

    def __init__(self, name: str = "random-judge", barrier: Any = None):
        self.name = name
        self.barrier = barrier
        self.computed = 0
        self._rng = random.Random(os.urandom(16))

    @property
    def fingerprint(self) -> dict[str, Any]:
        return {"backend": "random", "model": self.name, "chat": True}

    def _wait(self) -> None:
        if self.barrier is not None:
            self.barrier.wait(timeout=60)

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig = GenerationConfig()) -> list[str]:
        self._wait()
        self.computed += len(prompts)
        return [f"text-{self._rng.random()}" for _ in prompts]

    def option_probs(self, prompts: Sequence[Prompt], options: Sequence[str]) -> list[OptionProbs]:
        self._wait()
        self.computed += len(prompts)
        out = []
        for _ in prompts:
            w = [self._rng.random() for _ in options]
            out.append(OptionProbs(tuple(options), tuple(0.9 * x / sum(w) for x in w)))
        return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the store's record is what the caller gets ------------------------------------------------------------
def test_a_prompt_repeated_in_one_batch_is_computed_once_and_answered_alike(tmp_path):
    model = RandomModel()
    batch = [PROMPTS[0], PROMPTS[1], PROMPTS[0], PROMPTS[2], PROMPTS[1]]
    with CallStore(tmp_path / "s.sqlite") as store:
        sm = StoredModel(model, store, progress=False, chunk_size=2)
        live = sm.option_probs(batch, ("1", "2"))
        assert model.computed == 3  # 3 distinct prompts, not 5
        assert live[0] == live[2] and live[1] == live[4]
        texts = sm.generate(batch)
        assert model.computed == 6 and texts[0] == texts[2] and texts[1] == texts[4]
        assert store.count() == 6
    with CallStore(tmp_path / "s.sqlite", readonly=True) as store:
        replay = StoredModel(None, store, replay=True, name=model.name, progress=False)
        assert replay.option_probs(batch, ("1", "2")) == live  # live and replay cannot differ
        assert replay.generate(batch) == texts


def _writer(path: str, barrier: Any, results: Any) -> None:
    try:
        model = RandomModel(barrier=barrier)
        store = CallStore(path)
        sm = StoredModel(model, store, progress=False, chunk_size=8)
        probs = sm.option_probs(PROMPTS[:20], ("1", "2"))
        texts = sm.generate(PROMPTS[:6])
        store.close()
        results.put((os.getpid(), model.computed, [p.raw for p in probs], texts))
    except BaseException:  # noqa: BLE001 - the parent reports it
        results.put((os.getpid(), -1, traceback.format_exc(), None))


def test_two_writers_of_one_key_settle_on_one_answer_returned_to_both(tmp_path):
    """Two processes compute the same 26 calls at once (each misses the store before either writes: a barrier
    in the backend); whichever commits first wins, and both return the winner's records, which replay gives."""
    path = tmp_path / "shared.sqlite"
    barrier, results = FORK.Barrier(2), FORK.Queue()
    procs = [FORK.Process(target=_writer, args=(str(path), barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    for pid, computed, probs, texts in got:
        assert computed != -1, f"writer {pid} failed:\n{probs}"
        assert computed == 26  # both really computed everything: the race happened
    (_, _, probs_a, texts_a), (_, _, probs_b, texts_b) = got
    assert probs_a == probs_b and texts_a == texts_b
    with CallStore(path, readonly=True) as store:
        assert store.count() == 26
        replay = StoredModel(None, store, replay=True, name="random-judge", progress=False)
        assert [p.raw for p in replay.option_probs(PROMPTS[:20], ("1", "2"))] == probs_a
        assert replay.generate(PROMPTS[:6]) == texts_a


# --- replay reads, never writes ----------------------------------------------------------------------------
def _replay_child(path: str, as_user: int | None, results: Any) -> None:
    try:
        if as_user is not None:  # root ignores file modes: drop to an unprivileged user first
            os.setgid(as_user)
            os.setuid(as_user)
        with CallStore(path, readonly=True) as store:
            sm = StoredModel(None, store, replay=True, name="fake-judge", progress=False)
            probs = sm.option_probs(PROMPTS[:10], ("1", "2"))
            try:
                store.set_meta("x", 1)
                wrote = "set_meta succeeded"
            except StoreError as err:
                wrote = str(err)
        results.put(([p.raw for p in probs], wrote))
    except BaseException:  # noqa: BLE001
        results.put((None, traceback.format_exc()))


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_replay_from_a_read_only_folder(journal):
    """Replay from a folder nobody may write to (the probe: ``unable to open database file``). The store is
    left in rollback-journal mode by close(), or in WAL mode by a writer that was not the last to close."""
    root = Path(tempfile.mkdtemp(prefix="judgelab-ro-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        folder = root / "stores"
        path = folder / "judge.sqlite"
        with CallStore(path) as store:
            live = StoredModel(FakeModel(), store, progress=False).option_probs(PROMPTS[:10], ("1", "2"))
        if journal == "wal":
            conn = sqlite3.connect(path)
            assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
            conn.close()
        before, listing = _sha(path), sorted(os.listdir(folder))
        os.chmod(path, 0o444)
        os.chmod(folder, 0o555)
        as_user = 65534 if os.geteuid() == 0 else None  # nobody
        results = FORK.Queue()
        child = FORK.Process(target=_replay_child, args=(str(path), as_user, results))
        child.start()
        probs, wrote = results.get(timeout=60)
        child.join(timeout=30)
        assert probs is not None, wrote
        assert probs == [p.raw for p in live]
        assert "read-only" in wrote and str(path) in wrote
        assert _sha(path) == before and sorted(os.listdir(folder)) == listing  # nothing written, nothing created
    finally:
        for p in (root / "stores", root):
            if p.exists():
                os.chmod(p, stat.S_IRWXU)
        shutil.rmtree(root, ignore_errors=True)


def test_replay_in_a_writable_folder_writes_nothing(tmp_path):
    path = tmp_path / "s.sqlite"
    with CallStore(path) as store:
        live = StoredModel(FakeModel(), store, progress=False).option_probs(PROMPTS[:4], ("1", "2"))
    before = _sha(path)
    with CallStore(path, readonly=True) as store:
        assert StoredModel(None, store, replay=True, name="fake-judge", progress=False).option_probs(
            PROMPTS[:4], ("1", "2")) == live
        # a live model behind replay=True registers nothing either
        StoredModel(FakeModel("unknown-judge"), store, replay=True, progress=False)
        with pytest.raises(StoreError, match="read-only"):
            store.register_model("unknown-judge", {"x": 1}, "0" * 16)
    assert _sha(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.sqlite"]  # no -wal / -shm left beside it


def test_missing_store_in_replay_is_an_error_and_is_not_created(tmp_path):
    from judgelab.experiments import open_models as om
    from judgelab.profiles import OPEN_MODELS

    missing = tmp_path / "stores" / "nobody.sqlite"
    with pytest.raises(StoreMissing) as err:
        CallStore(missing, readonly=True)
    assert isinstance(err.value, ReplayMiss) and str(missing) in str(err.value)
    assert not missing.exists() and not missing.parent.exists()
    # the book's path: replaying a judge whose store is absent creates no empty store under results/
    prof = replace(OPEN_MODELS["ci"], replay=True)
    with pytest.raises(ReplayMiss, match="no call store"):
        om.open_judge("smollm2-135m-instruct", prof, tmp_path / "results", progress=False)
    assert not (tmp_path / "results").exists()


# --- files that are not this store -------------------------------------------------------------------------
@pytest.mark.parametrize("readonly", [False, True])
def test_garbage_file_is_refused_naming_the_store(tmp_path, readonly):
    path = tmp_path / "garbage.sqlite"
    path.write_bytes(os.urandom(8192))
    before = _sha(path)
    with pytest.raises(StoreError) as err:
        CallStore(path, readonly=readonly)
    assert str(path) in str(err.value) and "not a readable SQLite call store" in str(err.value)
    assert _sha(path) == before


def test_foreign_sqlite_file_is_refused_untouched(tmp_path):
    path = tmp_path / "notes.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    conn.execute("INSERT INTO notes (text) VALUES ('mine')")
    conn.commit()
    conn.close()
    before = _sha(path)
    for readonly in (False, True):
        with pytest.raises(StoreError, match="not a judgelab call store") as err:
            CallStore(path, readonly=readonly)
        assert str(path) in str(err.value) and "notes" in str(err.value)
    assert _sha(path) == before
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["notes"]
    conn.close()


# --- one layout, versioned; keys of one type ----------------------------------------------------------------
def test_a_new_store_carries_its_schema_version_and_a_newer_one_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    CallStore(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer judgelab") as err:
        CallStore(path)
    assert str(path) in str(err.value)


def test_a_key_of_the_wrong_type_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    with CallStore(path) as store:
        sm = StoredModel(FakeModel(), store, progress=False)
        sm.generate(PROMPTS[:1])
        fid = sm.fingerprint_id
        key = call_key(fid, "generate", PROMPTS[1], GenerationConfig().as_dict())
        for bad in (key.upper(), key[:32], "not-a-key", bytes.fromhex(key)):
            with pytest.raises(ValueError, match="64-character"):
                store.put_many(fid, "generate", [(bad, None, "text")])  # type: ignore[list-item]
            with pytest.raises(ValueError, match="64-character"):
                store.get_many([bad])  # type: ignore[list-item]
    # the schema refuses them too, whoever writes: the probe's TEXT-key duplicates cannot recur
    conn = sqlite3.connect(path)
    row = (fid, "generate", None, '"text"', "2026-01-01T00:00:00Z")
    for bad_key in (key, bytes.fromhex(key)[:16]):
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute("INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?)", (bad_key, *row))
    conn.execute("INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?)", (bytes.fromhex(key), *row))  # the right type
    conn.close()


def _legacy_store(path: Path, *, text_keys: int, conflict: bool = False) -> dict[str, Any]:
    """A store in the committed stores' first layout (``key TEXT`` rowid table, an index), with ``text_keys``
    of its calls stored a second time under the 64-hex TEXT form of their key, as the probe found."""
    fake = FakeModel("legacy-judge")
    fid = fake.fingerprint_id
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE models (fingerprint_id TEXT PRIMARY KEY, name TEXT NOT NULL, fingerprint TEXT NOT NULL,
                             created TEXT NOT NULL);
        CREATE TABLE calls (key TEXT PRIMARY KEY, fingerprint_id TEXT NOT NULL, kind TEXT NOT NULL, label TEXT,
                            response TEXT NOT NULL, created TEXT NOT NULL);
        CREATE INDEX calls_by_model ON calls (fingerprint_id, kind);
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    """)
    conn.execute("INSERT INTO models VALUES (?, ?, ?, ?)", (fid, fake.name, canonical_json(fake.fingerprint), "t0"))
    conn.execute("INSERT INTO meta VALUES ('run:book', ?)", (canonical_json({"profile": "book"}),))
    texts = fake.generate(PROMPTS[:8])
    expected = {}
    for i, (p, t) in enumerate(zip(PROMPTS[:8], texts)):
        k = call_key(fid, "generate", p, GenerationConfig().as_dict())
        conn.execute("INSERT INTO calls VALUES (?, ?, 'generate', ?, ?, 't1')",
                     (bytes.fromhex(k), fid, f"lab{i}", canonical_json(t)))
        if i < text_keys:
            dup = canonical_json(t + " (other)") if conflict and i == 0 else canonical_json(t)
            conn.execute("INSERT INTO calls VALUES (?, ?, 'generate', ?, ?, 't2')", (k, fid, f"lab{i}", dup))
        expected[k] = t
    conn.commit()
    conn.close()
    return expected


def test_an_unversioned_store_is_refused_until_migrated_and_migration_keeps_every_record(tmp_path):
    path = tmp_path / "legacy.sqlite"
    expected = _legacy_store(path, text_keys=3)
    for readonly in (False, True):
        with pytest.raises(StoreError, match="judgelab store migrate") as err:
            CallStore(path, readonly=readonly)
        assert str(path) in str(err.value)
    before = dump_calls(path)
    assert len(before) == 8 and {k: r[2] for k, r in before.items()} == expected

    report = migrate(path, identity="legacy-judge")
    assert report["changed"] and report["calls_before"] == 11 and report["calls_after"] == 8
    assert report["text_keys_converted"] == 3 and report["duplicates_removed"] == 3
    assert report["indexes_dropped"] == ["calls_by_model"]
    assert dump_calls(path) == before
    with CallStore(path, readonly=True, identity="legacy-judge") as store:
        assert store.get_meta("run:book") == {"profile": "book"}
        assert store.get_meta("store:migrated")["duplicates_removed"] == 3
        replay = StoredModel(None, store, replay=True, name="legacy-judge", progress=False)
        assert replay.generate(PROMPTS[:8]) == list(expected.values())
    conn = sqlite3.connect(path)
    assert {r[0] for r in conn.execute("SELECT typeof(key) FROM calls")} == {"blob"}
    conn.close()
    assert migrate(path)["changed"] is False  # idempotent
    assert sorted(p.name for p in tmp_path.iterdir()) == ["legacy.sqlite"]


def test_migration_refuses_duplicates_that_disagree(tmp_path):
    path = tmp_path / "legacy.sqlite"
    _legacy_store(path, text_keys=2, conflict=True)
    before = _sha(path)
    with pytest.raises(StoreError, match="stored twice with different records"):
        migrate(path)
    assert _sha(path) == before
    assert not any(p.name.endswith(".migrating") for p in tmp_path.iterdir())


def test_the_committed_stores_are_in_the_current_layout():
    from judgelab.experiments.open_models import store_path
    from judgelab.paths import results_path

    paths = sorted(results_path().glob("*/stores/*.sqlite"))
    assert len(paths) >= 4
    for path in paths:
        with CallStore(path, readonly=True) as store:  # layout checked
            assert store.count() > 0
            # the store records the judge it is for, and its file name is the one that judge's identity gives;
            # the numerical-bias chapter files one store per judge of its own (gemma-3-270m:sft is spec
            # stage:sft), named by nb.store_file from the judge's name
            identity = store.identity
            assert identity, path
            if path.parent.parent.name == "numerical_bias":
                from judgelab.experiments.numerical_bias import run as nb

                names = [j.name for j in nb.all_judges().values() if j.spec == identity]
                assert len(names) == 1 and nb.store_file(names[0], path.parent.parent).name == path.name, \
                    (path, identity, names)
            else:
                assert store_path(identity).name == path.name, (path, identity)
        with CallStore(path, readonly=True, identity=identity):  # identity checked on open
            pass
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete", path  # no -wal/-shm on read
        assert {r[0] for r in conn.execute("SELECT typeof(key) FROM calls")} == {"blob"}, path
        conn.close()


# --- identity: one judge per store, one fingerprint per name -----------------------------------------------
def test_a_store_refuses_a_judge_it_was_not_created_for(tmp_path):
    path = tmp_path / "judge.sqlite"
    with CallStore(path, identity="hf:orgA/judge") as store:
        assert store.identity == "hf:orgA/judge"
    with pytest.raises(StoreIdentityError) as err:
        CallStore(path, identity="hf:orgB/judge")
    assert "hf:orgA/judge" in str(err.value) and "hf:orgB/judge" in str(err.value) and str(path) in str(err.value)
    with pytest.raises(StoreIdentityError):
        CallStore(path, readonly=True, identity="hf:orgB/judge")
    CallStore(path, identity="hf:orgA/judge").close()


def test_a_store_keeps_one_fingerprint_per_model_name(tmp_path):
    with CallStore(tmp_path / "s.sqlite") as store:
        StoredModel(FakeModel("judge", version=1), store, progress=False).generate(PROMPTS[:1])
        StoredModel(FakeModel("judge", version=1), store, progress=False)  # the same again: fine
        with pytest.raises(StoreIdentityError, match=r"version: 1 -> 2"):
            StoredModel(FakeModel("judge", version=2), store, progress=False)
        v1 = FakeModel("judge", version=1)
        with pytest.raises(StoreIdentityError, match="under the name 'judge'"):
            store.register_model("judge-renamed", v1.fingerprint, v1.fingerprint_id)
        # other names are free: a fine-tuning store holds its base judge, a second judge and its variants
        StoredModel(FakeModel("judge-ft-2-xsum", version=2), store, progress=False).generate(PROMPTS[:1])
        assert sorted(m["name"] for m in store.models()) == ["judge", "judge-ft-2-xsum"]
        assert StoredModel(None, store, replay=True, name="judge", progress=False).fingerprint == v1.fingerprint


# --- store file names: distinct identities, distinct files, distinct results --------------------------------
def test_store_file_names_derive_from_the_full_identity(tmp_path, monkeypatch):
    from judgelab.experiments import open_models as om
    from judgelab.models.zoo import ZOO

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    name = "smollm2-135m-instruct"
    specs = ["hf:orgA/judge", "hf:orgB/judge", name, f"zoo-hub:{name}", f"openai:{name}@http://127.0.0.1:8080/v1",
             f"openai:{name}@http://127.0.0.1:8081/v1", "openai:gpt-4o-mini", f"{name}@llama.cpp"]
    paths = [om.store_path(s, tmp_path) for s in specs]
    assert len(set(paths)) == len(specs)
    assert om.store_path(name, tmp_path) == tmp_path / "stores" / f"{name}.sqlite"  # committed names kept
    assert om.store_path("hf:orgA/judge", tmp_path) == om.store_path("orgA/judge", tmp_path)  # the same model
    assert om.store_path("hf:orgA/judge", tmp_path).name.startswith("judge-orga-")  # readable
    assert om.store_path(f"llamacpp:{name}", tmp_path) == om.store_path(f"{name}@llama.cpp", tmp_path)
    assert om.short_name(f"llamacpp:{name}") == f"{name}@llama.cpp"  # the name llama.cpp models are stored under
    assert om.judge_identity("llamacpp:/models/x.gguf") == "llamacpp:/models/x.gguf"  # a path is not a hub id
    assert om.store_path(f"openai:{name}@http://127.0.0.1:8080/v1", tmp_path) == \
        om.store_path(f"openai:{name}@http://localhost:8080/v1/", tmp_path)  # one server, however spelled
    # openai:MODEL without @URL goes where the backend goes: OPENAI_BASE_URL if set
    default = om.store_path("openai:gpt-4o-mini", tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")
    assert om.store_path("openai:gpt-4o-mini", tmp_path) != default
    assert om.store_path("openai:gpt-4o-mini", tmp_path) == \
        om.store_path("openai:gpt-4o-mini@http://127.0.0.1:8080/v1", tmp_path)
    # a hashed name can never be a zoo name's plain one
    assert not [z for z in ZOO if len(z) > 9 and z[-9] == "-" and all(c in "0123456789abcdef" for c in z[-8:])]
    assert om.short_name("hf:orgA/judge") != om.short_name("hf:orgB/judge")
    for s in specs + ["judge@orga-ft-2-xsum"]:
        assert om.short_name(om.short_name(s)) == om.short_name(s)


class HubFake(FakeModel):
    """A hub model as load_hub makes it (named by its hub id), whose answers depend on which model it is."""

    def __init__(self, spec: str):
        super().__init__(spec.removeprefix("hf:"))

    @property
    def fingerprint(self) -> dict[str, Any]:
        return {"backend": "fake", "weights": "hub", "hub_id": self.name, "chat": True}

    def _h(self, prompt: Prompt, *extra: Any) -> int:  # type: ignore[override]
        return int(sha256_hex(canonical_json([self.name, prompt, *extra]))[:12], 16)


def test_two_hub_judges_of_one_name_keep_two_stores_and_two_results(tmp_path, monkeypatch):
    """The probe: hf:orgA/judge and hf:orgB/judge shared judge.sqlite, 80 prompt rows collapsed into 10 pairs
    and both judges got the same R."""
    from judgelab.experiments import open_models as om
    from judgelab.profiles import OPEN_MODELS

    monkeypatch.setattr(om, "get_model", lambda spec, device=None: HubFake(spec))
    prof = replace(OPEN_MODELS["ci"], judges={"hf:orgA/judge": 2, "hf:orgB/judge": 2}, datasets=("xsum",))
    res = om.run(prof, tmp_path, progress=False)
    stores = sorted(p.name for p in (tmp_path / "stores").iterdir())
    assert len(stores) == 2 and all(s.startswith("judge-org") for s in stores)
    assert set(res.prompts["judge"]) == {"judge@orga", "judge@orgb"}
    # each judge: 2 articles x (5 released authors + the other judge) x 2 tasks x 2 orders
    assert res.prompts.groupby("judge").size().to_dict() == {"judge@orga": 48, "judge@orgb": 48}
    pairs = res.pairs.groupby("judge").size().to_dict()
    assert pairs == {"judge@orga": 12, "judge@orgb": 12}
    r = res.pairs.groupby("judge")["recognition"].mean()
    assert r["judge@orga"] != r["judge@orgb"]
    for spec in prof.judges:
        with CallStore(om.store_path(spec, tmp_path), readonly=True, identity=om.judge_identity(spec)) as store:
            assert [m["name"] for m in store.models()] == [spec.removeprefix("hf:")]

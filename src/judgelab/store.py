"""The call store: every model call recorded in SQLite, so runs resume and the book replays.

Why a store: the book must show numbers that came from a real run, and readers without a GPU must be able
to rebuild it. Each call is keyed on (model fingerprint, kind of call, exact prompt or messages, decoding
parameters or options). Re-running skips what is stored; a run killed with ``kill -9`` loses at most the
batch in flight and never duplicates a record (the key is the primary key and each batch is one SQLite
transaction); replay mode answers only from the store and fails loudly on a miss.

The store keeps keys and responses, not prompts: prompts are rebuilt from the verified data, and storing
every article twenty times would make the committed stores large. A short human-readable ``label`` (e.g.
``xsum/35232142/detection/forward/human``) keeps the store browsable with any SQLite client.

Caching is a wrapper (:class:`StoredModel`) around any :class:`~judgelab.models.base.Model`, not a feature
of each backend.

**What the caller gets is the store's record.** A live call returns the record as the store holds it after
the write, never the backend's answer beside it: a prompt repeated within one batch is computed once, and
when two processes compute the same key at once the first to commit wins and both return its answer (the
insert and the read-back are one ``BEGIN IMMEDIATE`` transaction). So a live run and its replay cannot
differ, even with a non-deterministic backend.

**One versioned layout, checked on open.** A store file carries SQLite's ``application_id``
(:data:`APPLICATION_ID`) and ``user_version`` (:data:`SCHEMA_VERSION`). Opening checks both: an empty file
becomes a store; a file of the unversioned layout that came before (``key TEXT`` or BLOB keys, no version)
is refused with the command that migrates it (:func:`migrate`, ``judgelab store migrate PATH``); a newer
version is refused; any other SQLite file is refused untouched (the store never adds its tables to a foreign
database), and a file that is not SQLite at all is refused with its path. Keys are 32-byte BLOBs, enforced
by a ``CHECK`` in the schema: a key of another type or length cannot be stored.

**A store keeps one fingerprint per model name, and knows whose store it is.** Replay resolves a model name
to its fingerprint without loading weights, so two fingerprints under one name would make replay ambiguous
(or, worse, let two sets of weights pass as one judge); the ``models`` table has ``UNIQUE(name)`` and
:meth:`CallStore.register_model` refuses a second fingerprint under a recorded name (or a recorded
fingerprint under a second name) with the fields that differ. Names are otherwise free, because a
fine-tuning store holds its base judge, a second judge and every fine-tuned variant. A store opened with
``identity=`` (the normalised model string of the judge it is for, see
:func:`judgelab.experiments.open_models.judge_identity`) records that identity on creation and refuses to be
opened for another: two judges can never share one file, whatever its name. The first fingerprint of each
name is recorded freely; to record different weights under a name, use a new store.

**Replay never writes.** ``CallStore(path, readonly=True)`` opens the file with SQLite's ``mode=ro`` (no
file is created: a missing store raises :class:`StoreMissing`); where the directory is read-only and the file
is in WAL mode without its ``-shm`` index, it falls back to ``immutable=1``, which is exact there because no
SQLite writer can change a file whose directory it cannot create its journal in. A store closed by its last
writer is checkpointed and switched back to a rollback journal, so the committed file is one self-contained
file that read-only readers open without creating any side file.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from judgelab.models.base import (
    GenerationConfig,
    Model,
    OptionProbs,
    Prompt,
    canonical_json,
    check_options,
    sha256_hex,
)

#: SQLite ``PRAGMA application_id`` of a judgelab call store (ASCII "JLCS")
APPLICATION_ID = 0x4A4C4353
#: SQLite ``PRAGMA user_version`` of the layout this module writes and reads
SCHEMA_VERSION = 1

_TABLES = ("models", "calls", "meta")

_SCHEMA = """
CREATE TABLE models (
    fingerprint_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,     -- one fingerprint per model name: replay resolves a name to it
    fingerprint TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE calls (
    key BLOB PRIMARY KEY CHECK (typeof(key) = 'blob' AND length(key) = 32),  -- the sha256 call key
    fingerprint_id TEXT NOT NULL REFERENCES models (fingerprint_id),
    kind TEXT NOT NULL,
    label TEXT,
    response TEXT NOT NULL,
    created TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

IDENTITY_META = "store:identity"
MIGRATED_META = "store:migrated"

_HEX64 = re.compile(r"[0-9a-f]{64}")


class StoreError(RuntimeError):
    """A call store that cannot be used as asked (not a store, another layout, read-only); names its path."""


class StoreIdentityError(StoreError):
    """A store asked to hold a model or a judge it was not created for."""


class ReplayMiss(LookupError):
    """Replay mode was asked for a call that is not in the store."""


class StoreMissing(ReplayMiss):
    """Replay (read-only) mode was pointed at a store file that does not exist; nothing was created."""


def call_key(fingerprint_id: str, kind: str, prompt: Prompt, params: dict[str, Any]) -> str:
    """The store key of one call: sha256 over the canonical JSON of everything that determines the answer."""
    return sha256_hex(canonical_json({"model": fingerprint_id, "kind": kind, "prompt": prompt, "params": params}))


def _key_bytes(key: str) -> bytes:
    if not isinstance(key, str) or not _HEX64.fullmatch(key):
        raise ValueError(f"call key {key!r} is not a 64-character lower-case hex sha256 (see call_key)")
    return bytes.fromhex(key)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _fingerprint_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = sorted(set(a) | set(b))
    diff = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]
    return "; ".join(diff) or "no field differs"


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """``mode=ro``; ``immutable=1`` only where ``mode=ro`` cannot open (a WAL file in a read-only folder)."""
    uri = f"file:{path.resolve()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        # a WAL file whose -shm index cannot be created: "unable to open database file" or "attempt to write
        # a readonly database", depending on the SQLite version
        conn.close()
        if os.access(path.parent, os.W_OK):
            raise
    except BaseException:
        conn.close()
        raise
    # the folder is read-only, so no SQLite writer can be changing the file: reading it as immutable is exact
    conn = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None)
    conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    return conn


def _layout(conn: sqlite3.Connection) -> tuple[int, int, set[str]]:
    app = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return app, version, tables


class CallStore:
    """A SQLite file of model calls. Safe to share between processes (WAL journal, short transactions).

    ``readonly=True``: replay; the file must exist and is never written. ``identity``: the judge this store
    is for (see the module docstring); recorded on creation, checked on every open that names one.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False, identity: str | None = None):
        self.path = Path(path)
        self.readonly = readonly
        self._conn: sqlite3.Connection | None = None
        if readonly and not self.path.is_file():
            raise StoreMissing(
                f"replay: no call store at {self.path} (replay opens stores read-only and creates nothing); "
                "run the live profile to compute it, or point the results folder at the stores"
            )
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"{self.path} is not a file, so it cannot be a call store")
        try:
            if readonly:
                self._conn = _connect_readonly(self.path)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._open()
            if identity is not None:
                self._check_identity(identity)
        except sqlite3.DatabaseError as err:
            self._abandon()
            raise StoreError(f"{self.path}: not a readable SQLite call store ({err})") from err
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _open(self) -> None:
        conn = self._conn
        assert conn is not None
        if self.readonly:
            self._check_layout(*_layout(conn))
            return
        conn.execute("BEGIN IMMEDIATE")  # check and create under one write lock: two openers cannot race
        try:
            app, version, tables = _layout(conn)
            if not tables and app == 0 and version == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            else:
                self._check_layout(app, version, tables)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")

    def _check_layout(self, app: int, version: int, tables: set[str]) -> None:
        if app == APPLICATION_ID:
            if version == SCHEMA_VERSION and set(_TABLES) <= tables:
                return
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} is a call store of schema version {version}, written by a newer "
                                 f"judgelab; this one reads version {SCHEMA_VERSION}")
            raise StoreError(f"{self.path} says it is a call store (schema version {version}) but has tables "
                             f"{sorted(tables)}; it is damaged")
        if app == 0 and version == 0 and set(_TABLES) <= tables:
            raise StoreError(f"{self.path} is a call store of the unversioned layout from before schema version "
                             f"{SCHEMA_VERSION}; migrate it first: judgelab store migrate {self.path}")
        if not tables:
            raise StoreError(f"{self.path} is an empty SQLite file, not a call store")
        raise StoreError(f"{self.path} is an SQLite database but not a judgelab call store (application_id "
                         f"{app:#x}, tables {sorted(tables)}); refusing to add the store's tables to it")

    def _check_identity(self, identity: str) -> None:
        recorded = self.get_meta(IDENTITY_META)
        if recorded is None:
            if not self.readonly:
                self.set_meta(IDENTITY_META, identity)
            return
        if recorded != identity:
            raise StoreIdentityError(f"{self.path} is the call store of {recorded!r}, not of {identity!r}; "
                                     "two judges never share a store")

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the call store {self.path} is closed")
        return self._conn

    @property
    def identity(self) -> str | None:
        """The judge this store was created for (None for a store opened without one)."""
        return self.get_meta(IDENTITY_META)

    def close(self) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        try:
            if not self.readonly:
                # fold the WAL back into the main file, then (if no other connection holds the store) leave it
                # in rollback-journal mode: one self-contained file that read-only readers open as it is
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.execute("PRAGMA busy_timeout = 0")
                try:
                    conn.execute("PRAGMA journal_mode=DELETE")
                except sqlite3.OperationalError:  # another process has it open: it stays in WAL mode
                    pass
        finally:
            conn.close()

    def __enter__(self) -> CallStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (``BEGIN IMMEDIATE``): all or nothing."""
        if self.readonly:
            raise StoreError(f"{self.path} is open read-only (replay); nothing can be written to it")
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # --- models -----------------------------------------------------------------------------------
    def register_model(self, name: str, fingerprint: dict[str, Any], fingerprint_id: str) -> None:
        """Record a model's fingerprint; refuse a second fingerprint under ``name`` or a second name for it."""
        with self._write() as conn:
            rows = conn.execute("SELECT fingerprint_id, name, fingerprint FROM models WHERE name = ? OR "
                                "fingerprint_id = ?", (name, fingerprint_id)).fetchall()
            for fid, known_name, fp in rows:
                if fid == fingerprint_id and known_name == name:
                    return
                if known_name == name:
                    raise StoreIdentityError(
                        f"{self.path} holds model {name!r} with fingerprint {fid}; this {name!r} has fingerprint "
                        f"{fingerprint_id} ({_fingerprint_diff(json.loads(fp), fingerprint)}). A store keeps one "
                        "fingerprint per model name, so replay is unambiguous: use another results folder")
                raise StoreIdentityError(f"{self.path} holds fingerprint {fid} under the name {known_name!r}, "
                                         f"not {name!r}")
            conn.execute("INSERT INTO models VALUES (?, ?, ?, ?)",
                         (fingerprint_id, name, canonical_json(fingerprint), _now()))

    def models(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT fingerprint_id, name, fingerprint, created FROM models").fetchall()
        return [{"fingerprint_id": r[0], "name": r[1], "fingerprint": json.loads(r[2]), "created": r[3]} for r in rows]

    def fingerprint_for(self, name: str) -> tuple[str, dict[str, Any]]:
        """The one fingerprint recorded under ``name`` (replay needs it without loading weights)."""
        found = [m for m in self.models() if m["name"] == name]
        if len(found) != 1:
            known = sorted({m["name"] for m in self.models()})
            what = "no" if not found else f"{len(found)} different"
            raise ReplayMiss(f"{what} fingerprints for model {name!r} in {self.path}; models stored: {known}")
        return found[0]["fingerprint_id"], found[0]["fingerprint"]

    # --- run metadata (profile, hardware, dates of live runs) -----------------------------------------
    def set_meta(self, name: str, value: Any) -> None:
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, canonical_json(value)))

    def get_meta(self, name: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else default

    # --- calls ------------------------------------------------------------------------------------
    def _select(self, conn: sqlite3.Connection, blobs: Sequence[bytes]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i in range(0, len(blobs), 500):
            chunk = list(blobs[i : i + 500])
            q = f"SELECT key, response FROM calls WHERE key IN ({','.join('?' * len(chunk))})"
            out.update({k.hex(): json.loads(r) for k, r in conn.execute(q, chunk)})
        return out

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """The stored records of those ``keys`` that are stored (hex key -> record)."""
        return self._select(self.conn, [_key_bytes(k) for k in keys])

    def put_many(self, fingerprint_id: str, kind: str, rows: Sequence[tuple[str, str | None, Any]]) -> dict[str, Any]:
        """Insert ``(key, label, response)`` rows in one transaction (all or nothing); return what is stored.

        A key already stored (another process computed it first) keeps its record: the return value is the
        store's record of every key, read back in the same transaction, and that is what callers must use.
        """
        now = _now()
        records = [(_key_bytes(k), fingerprint_id, kind, label, canonical_json(resp), now) for k, label, resp in rows]
        with self._write() as conn:
            conn.executemany("INSERT OR IGNORE INTO calls VALUES (?, ?, ?, ?, ?, ?)", records)
            return self._select(conn, [r[0] for r in records])

    def count(self, fingerprint_id: str | None = None, kind: str | None = None) -> int:
        q, args = "SELECT COUNT(*) FROM calls WHERE 1=1", []
        if fingerprint_id:
            q, args = q + " AND fingerprint_id = ?", [*args, fingerprint_id]
        if kind:
            q, args = q + " AND kind = ?", [*args, kind]
        return self.conn.execute(q, args).fetchone()[0]

    def labels(self, fingerprint_id: str | None = None) -> Iterator[tuple[str, str, str]]:
        q = "SELECT key, kind, label FROM calls" + (" WHERE fingerprint_id = ?" if fingerprint_id else "")
        for key, kind, label in self.conn.execute(q, [fingerprint_id] if fingerprint_id else []):
            yield key.hex(), kind, label


class StoredModel(Model):
    """Any model, with every call answered from the store when it can be and recorded when it cannot.

    ``replay=True`` never calls the underlying model (it need not even be loaded: pass ``model=None`` and
    the name it was stored under), never writes to the store, and raises :class:`ReplayMiss` on the first
    call it cannot answer. Work is done in chunks of ``chunk_size`` distinct prompts, each written to the
    store as soon as it is computed, with a progress bar; an interrupted run resumes where it stopped.
    Every answer returned is the store's record (see the module docstring).
    """

    def __init__(
        self,
        model: Model | None,
        store: CallStore,
        *,
        replay: bool = False,
        name: str | None = None,
        chunk_size: int = 32,
        generate_chunk_size: int = 8,
        progress: bool = True,
    ):
        if model is None and not replay:
            raise ValueError("a live StoredModel needs a model; pass replay=True to answer from the store only")
        self.model = model
        self.store = store
        self.replay = replay
        self.chunk_size = chunk_size
        self.generate_chunk_size = generate_chunk_size  # generation is slow: store (and show) it often
        self.progress = progress
        if model is not None:
            self.name = model.name
            self._fingerprint = model.fingerprint
            self._fingerprint_id = model.fingerprint_id
            if not replay:  # replay writes nothing: an unknown fingerprint is a miss at the first call
                store.register_model(self.name, self._fingerprint, self._fingerprint_id)
        else:
            if name is None:
                raise ValueError("replay without a model needs the name the model was stored under")
            self.name = name
            self._fingerprint_id, self._fingerprint = store.fingerprint_for(name)

    @property
    def fingerprint(self) -> dict[str, Any]:
        return self._fingerprint

    @property
    def fingerprint_id(self) -> str:
        return self._fingerprint_id

    @property
    def is_chat(self) -> bool:
        return bool(self._fingerprint.get("chat", True))

    def _run(self, kind: str, prompts: Sequence[Prompt], params: dict[str, Any], labels, compute, desc: str,
             chunk_size: int):
        keys = [call_key(self._fingerprint_id, kind, p, params) for p in prompts]
        first: dict[str, int] = {}  # each distinct key -> its first prompt: a repeated prompt is computed once
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        found = self.store.get_many(list(first))
        todo = [i for k, i in first.items() if k not in found]
        if todo and self.replay:
            i = todo[0]
            lab = f" ({labels[i]})" if labels else ""
            raise ReplayMiss(
                f"replay: {len(todo)} of {len(first)} {kind} calls of {self.name} are not in {self.store.path}; "
                f"first missing key {keys[i][:16]}{lab}. Run the live profile to compute them."
            )
        bar = tqdm(total=len(todo), desc=f"{desc} {self.name}", unit="call", disable=not self.progress or not todo)
        for start in range(0, len(todo), chunk_size):
            idx = todo[start : start + chunk_size]
            responses = list(compute([prompts[i] for i in idx]))
            if len(responses) != len(idx):
                raise RuntimeError(f"{self.name} returned {len(responses)} answers for {len(idx)} {kind} prompts")
            rows = [(keys[i], labels[i] if labels else None, r) for i, r in zip(idx, responses)]
            found.update(self.store.put_many(self._fingerprint_id, kind, rows))  # the store's record wins
            bar.update(len(idx))
        bar.close()
        return [found[k] for k in keys]

    def generate(
        self,
        prompts: Sequence[Prompt],
        config: GenerationConfig = GenerationConfig(),
        labels: Sequence[str] | None = None,
    ) -> list[str]:
        assert self.model is not None or self.replay
        return self._run(
            "generate", prompts, config.as_dict(), labels,
            lambda ps: self.model.generate(ps, config), "generate",  # type: ignore[union-attr]
            self.generate_chunk_size,
        )

    def option_probs(
        self, prompts: Sequence[Prompt], options: Sequence[str], labels: Sequence[str] | None = None
    ) -> list[OptionProbs]:
        opts = check_options(options)
        records = self._run(
            "option_probs", prompts, {"options": list(opts)}, labels,
            lambda ps: [o.to_record() for o in self.model.option_probs(ps, opts)],  # type: ignore[union-attr]
            "judge", self.chunk_size,
        )
        return [OptionProbs.from_record(r) for r in records]

    def loglikelihood(
        self, prompts: Sequence[Prompt], continuations: Sequence[str], labels: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Log-likelihoods through the store: each (prompt, continuation) pair is one call, keyed on both."""
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        pairs = [{"prompt": p, "continuation": c} for p, c in zip(prompts, continuations)]
        return self._run(
            "loglikelihood", pairs, {}, labels,  # type: ignore[arg-type]
            lambda ps: self.model.loglikelihood(  # type: ignore[union-attr]
                [q["prompt"] for q in ps], [q["continuation"] for q in ps]),
            "loglikelihood", self.chunk_size,
        )


def open_store(path: str | Path, *, readonly: bool = False, identity: str | None = None) -> CallStore:
    """Open (creating if needed, unless ``readonly``) the store at ``path``; use as a context manager."""
    return CallStore(path, readonly=readonly, identity=identity)


# --- migration ---------------------------------------------------------------------------------------------
def dump_calls(path: str | Path) -> dict[str, tuple[str, str, Any]]:
    """Every call of the store at ``path`` (any layout, read only): hex key -> (fingerprint_id, kind, record).

    Keys stored as 64-character hex TEXT (the first layout) are read as the 32 bytes they spell; a key stored
    twice (TEXT and BLOB) must hold the same record both times, else :class:`StoreError`. This is what
    :func:`migrate` checks before and after: the map the book reads.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"no call store at {path}")
    conn = _connect_readonly(path)
    try:
        out: dict[str, tuple[str, str, Any]] = {}
        for key, fid, kind, response in conn.execute("SELECT key, fingerprint_id, kind, response FROM calls"):
            hexkey = _legacy_key(path, key)
            rec = (fid, kind, json.loads(response))
            if hexkey in out and out[hexkey] != rec:
                raise StoreError(f"{path}: key {hexkey[:16]} is stored twice with different records")
            out[hexkey] = rec
        return out
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{path}: not a readable SQLite call store ({err})") from err
    finally:
        conn.close()


def _legacy_key(path: Path, key: Any) -> str:
    if isinstance(key, bytes) and len(key) == 32:
        return key.hex()
    if isinstance(key, str) and _HEX64.fullmatch(key):
        return key
    raise StoreError(f"{path}: a call key {key!r} is neither 32 bytes nor 64 hex characters")


def migrate(path: str | Path, identity: str | None = None) -> dict[str, Any]:
    """Rewrite the call store at ``path`` in the current layout (schema :data:`SCHEMA_VERSION`), in place.

    Every call keeps its fingerprint, kind, label, response and date; 64-character hex TEXT keys become the
    32 bytes they spell, and a call stored under both forms is kept once (the BLOB record; the two must hold
    the same record, else nothing is changed). Models and metadata are copied; ``identity`` (the judge the
    store is for) is recorded if given, and ``store:migrated`` records what was done. The new file is
    written beside the old one, checked (integrity, and the key -> record map equal to the old one's), and
    then renamed over it, so an interrupted migration leaves the old file. A store already in the current
    layout is left alone. Returns a report: counts before and after, TEXT keys converted, duplicates removed.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"no call store at {path}")
    wal = Path(f"{path}-wal")
    try:
        if wal.is_file() and wal.stat().st_size:  # fold a left-over WAL in first (content unchanged)
            with sqlite3.connect(path) as c:
                c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            c.close()
        conn = _connect_readonly(path)
        app, version, tables = _layout(conn)
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{path}: not a readable SQLite call store ({err})") from err
    report: dict[str, Any] = {"path": str(path), "from_version": version}
    try:
        if app == APPLICATION_ID and version == SCHEMA_VERSION:
            conn.close()
            with CallStore(path, identity=identity):
                pass  # checks the layout, records the identity if missing
            return {**report, "changed": False}
        if not (app == 0 and version == 0 and set(_TABLES) <= tables):
            raise StoreError(f"{path} is not a call store of a layout this version can migrate "
                             f"(application_id {app:#x}, version {version}, tables {sorted(tables)})")
        models = conn.execute("SELECT fingerprint_id, name, fingerprint, created FROM models").fetchall()
        meta = conn.execute("SELECT name, value FROM meta").fetchall()
        calls = conn.execute("SELECT key, fingerprint_id, kind, label, response, created FROM calls "
                             "ORDER BY typeof(key) = 'blob' DESC").fetchall()  # BLOB records first: they win
        indexes = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")]
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{path}: not a readable SQLite call store ({err})") from err
    finally:
        conn.close()
    before = dump_calls(path)  # also refuses duplicates with different records

    kept: dict[bytes, tuple] = {}
    text_keys = duplicates = 0
    for key, fid, kind, label, response, created in calls:
        hexkey = _legacy_key(path, key)
        text_keys += not isinstance(key, bytes)
        blob = bytes.fromhex(hexkey)
        if blob in kept:
            duplicates += 1
            continue
        kept[blob] = (blob, fid, kind, label, response, created)
    known = {m[0] for m in models}
    orphans = {r[1] for r in kept.values()} - known
    if orphans:
        raise StoreError(f"{path}: calls of fingerprints {sorted(orphans)} that no model record names")
    names = [m[1] for m in models]
    if len(set(names)) != len(names):
        raise StoreError(f"{path}: a model name has several fingerprints ({sorted(names)}); "
                         "split the store before migrating")

    tmp = path.with_name(path.name + ".migrating")
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
        leftover.unlink(missing_ok=True)
    try:
        new = sqlite3.connect(tmp, isolation_level=None)
        try:
            new.execute("BEGIN")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    new.execute(statement)
            new.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            new.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            new.executemany("INSERT INTO models VALUES (?, ?, ?, ?)", models)
            new.executemany("INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?)", sorted(kept.values()))
            new.executemany("INSERT INTO meta VALUES (?, ?)", meta)
            report.update({"calls_before": len(calls), "calls_after": len(kept), "text_keys_converted": text_keys,
                           "duplicates_removed": duplicates, "indexes_dropped": indexes, "models": len(models)})
            record = {"from": "unversioned layout (key " + ("TEXT" if text_keys else "BLOB") + ")",
                      "to_version": SCHEMA_VERSION, "date": time.strftime("%Y-%m-%d"),
                      **{k: report[k] for k in ("calls_before", "calls_after", "text_keys_converted",
                                                "duplicates_removed", "indexes_dropped")}}
            new.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (MIGRATED_META, canonical_json(record)))
            if identity is not None:
                new.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (IDENTITY_META, canonical_json(identity)))
            new.execute("COMMIT")
            new.execute("VACUUM")
            if new.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                raise StoreError(f"{tmp}: the migrated store failed SQLite's integrity check")
        finally:
            new.close()
        after = dump_calls(tmp)
        if after != before:
            changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            raise StoreError(f"{path}: migration would change {len(changed)} calls (first {changed[0][:16]}); "
                             "the old file is left as it was")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if not (wal.is_file() and wal.stat().st_size):  # an empty WAL and its index, left by a read-only reader
        for side in (wal, Path(f"{path}-shm")):
            side.unlink(missing_ok=True)
    return {**report, "changed": True}


__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "CallStore", "ReplayMiss", "StoreError", "StoreIdentityError",
           "StoreMissing", "StoredModel", "call_key", "dump_calls", "migrate", "open_store"]

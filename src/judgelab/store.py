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
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    fingerprint_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
    key BLOB PRIMARY KEY,          -- the 32 bytes of the sha256 call key
    fingerprint_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    label TEXT,
    response TEXT NOT NULL,
    created TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class ReplayMiss(LookupError):
    """Replay mode was asked for a call that is not in the store."""


def call_key(fingerprint_id: str, kind: str, prompt: Prompt, params: dict[str, Any]) -> str:
    """The store key of one call: sha256 over the canonical JSON of everything that determines the answer."""
    return sha256_hex(canonical_json({"model": fingerprint_id, "kind": kind, "prompt": prompt, "params": params}))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class CallStore:
    """A SQLite file of model calls. Safe to share between processes (WAL journal, short transactions)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=60)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._conn.commit()

    def close(self) -> None:
        # fold the WAL back into the main file so a committed store is a single self-contained file
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()

    def __enter__(self) -> CallStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- models -----------------------------------------------------------------------------------
    def register_model(self, name: str, fingerprint: dict[str, Any], fingerprint_id: str) -> None:
        with self._conn:
            self._conn.execute(
                "INSERT OR IGNORE INTO models VALUES (?, ?, ?, ?)",
                (fingerprint_id, name, canonical_json(fingerprint), _now()),
            )

    def models(self) -> list[dict[str, Any]]:
        rows = self._conn.execute("SELECT fingerprint_id, name, fingerprint, created FROM models").fetchall()
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
        with self._conn:
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, canonical_json(value)))

    def get_meta(self, name: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else default

    # --- calls ------------------------------------------------------------------------------------
    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i in range(0, len(keys), 500):
            chunk = list(keys[i : i + 500])
            q = f"SELECT key, response FROM calls WHERE key IN ({','.join('?' * len(chunk))})"
            blobs = [bytes.fromhex(k) for k in chunk]
            out.update({k.hex(): json.loads(r) for k, r in self._conn.execute(q, blobs)})
        return out

    def put_many(self, fingerprint_id: str, kind: str, rows: Sequence[tuple[str, str | None, Any]]) -> None:
        """Insert ``(key, label, response)`` rows in one transaction (all or nothing)."""
        now = _now()
        with self._conn:
            self._conn.executemany(
                "INSERT OR IGNORE INTO calls VALUES (?, ?, ?, ?, ?, ?)",
                [(bytes.fromhex(k), fingerprint_id, kind, label, canonical_json(resp), now) for k, label, resp in rows],
            )

    def count(self, fingerprint_id: str | None = None, kind: str | None = None) -> int:
        q, args = "SELECT COUNT(*) FROM calls WHERE 1=1", []
        if fingerprint_id:
            q, args = q + " AND fingerprint_id = ?", [*args, fingerprint_id]
        if kind:
            q, args = q + " AND kind = ?", [*args, kind]
        return self._conn.execute(q, args).fetchone()[0]

    def labels(self, fingerprint_id: str | None = None) -> Iterator[tuple[str, str, str]]:
        q = "SELECT key, kind, label FROM calls" + (" WHERE fingerprint_id = ?" if fingerprint_id else "")
        for key, kind, label in self._conn.execute(q, [fingerprint_id] if fingerprint_id else []):
            yield key.hex(), kind, label


class StoredModel(Model):
    """Any model, with every call answered from the store when it can be and recorded when it cannot.

    ``replay=True`` never calls the underlying model (it need not even be loaded: pass ``model=None`` and
    the name it was stored under) and raises :class:`ReplayMiss` on the first call it cannot answer.
    Work is done in chunks of ``chunk_size`` prompts, each written to the store as soon as it is computed,
    with a progress bar; an interrupted run resumes where it stopped.
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
        found = self.store.get_many(keys)
        todo = [i for i, k in enumerate(keys) if k not in found]
        if todo and self.replay:
            i = todo[0]
            lab = f" ({labels[i]})" if labels else ""
            raise ReplayMiss(
                f"replay: {len(todo)} of {len(keys)} {kind} calls of {self.name} are not in {self.store.path}; "
                f"first missing key {keys[i][:16]}{lab}. Run the live profile to compute them."
            )
        bar = tqdm(total=len(todo), desc=f"{desc} {self.name}", unit="call", disable=not self.progress or not todo)
        for start in range(0, len(todo), chunk_size):
            idx = todo[start : start + chunk_size]
            responses = compute([prompts[i] for i in idx])
            rows = [(keys[i], labels[i] if labels else None, r) for i, r in zip(idx, responses)]
            self.store.put_many(self._fingerprint_id, kind, rows)
            found.update({keys[i]: r for i, r in zip(idx, responses)})
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


def open_store(path: str | Path) -> CallStore:
    """Open (creating if needed) the store at ``path``; use as a context manager to close it cleanly."""
    return CallStore(path)


__all__ = ["CallStore", "ReplayMiss", "StoredModel", "call_key", "open_store"]

"""The call store: caching, replay, keys, crash safety (kill -9 mid-run) and file size.

A fake deterministic model (no weights) stands in for a real one, so these tests take seconds.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from judgelab.models.base import GenerationConfig, Model, OptionProbs, Prompt, canonical_json, sha256_hex
from judgelab.store import CallStore, ReplayMiss, StoredModel, call_key

HERE = Path(__file__).resolve().parent


class FakeModel(Model):
    """Deterministic answers derived from a hash of the prompt; counts what it computes.

    ``delay`` seconds are slept per batch (per store chunk), to make a run slow enough to kill mid-way.
    """

    def __init__(self, name: str = "fake-judge", delay: float = 0.0, version: int = 1):
        self.name = name
        self.delay = delay
        self.version = version
        self.generate_calls = 0  # prompts generated
        self.judge_calls = 0  # prompts judged
        self.batches = 0

    @property
    def fingerprint(self) -> dict[str, Any]:
        return {"backend": "fake", "model": self.name, "version": self.version, "chat": True}

    @staticmethod
    def _h(prompt: Prompt, *extra: Any) -> int:
        return int(sha256_hex(canonical_json([prompt, *extra]))[:12], 16)

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig = GenerationConfig()) -> list[str]:
        self.batches += 1
        time.sleep(self.delay)
        self.generate_calls += len(prompts)
        return [f"summary-{self._h(p, config.as_dict()) % 10**6}" for p in prompts]

    def option_probs(self, prompts: Sequence[Prompt], options: Sequence[str]) -> list[OptionProbs]:
        self.batches += 1
        time.sleep(self.delay)
        self.judge_calls += len(prompts)
        out = []
        for p in prompts:
            h = self._h(p, list(options))
            weights = [((h >> (8 * i)) % 251 + 1) / 300.0 for i in range(len(options))]
            scale = 0.97 / sum(weights)  # 3 % of the mass falls outside the options
            raw = tuple(w * scale for w in weights)
            out.append(OptionProbs(tuple(options), raw, exact=True, extra={"top_token": options[h % len(options)]}))
        return out


def pairwise_prompt(i: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You respond with only \"1\" or \"2\" and no other text."},
        {"role": "user", "content": f"Article {i // 8}: ...\n\nSummary1:\nfirst {i}\n\nSummary2:\nsecond {i}\n\n"
                                    "Which summary did you write?"},
    ]


PROMPTS = [pairwise_prompt(i) for i in range(200)]
LABELS = [f"xsum/{10_000_000 + i // 8}/detection/{'forward' if i % 2 else 'backward'}/human" for i in range(200)]


def rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]


# --- caching and replay ------------------------------------------------------------------------------------
def test_second_call_is_answered_from_the_store(tmp_path):
    fake = FakeModel()
    with CallStore(tmp_path / "s.sqlite") as store:
        sm = StoredModel(fake, store, progress=False, chunk_size=3)
        first = sm.option_probs(PROMPTS[:10], ("1", "2"))
        assert fake.judge_calls == 10 and fake.batches == 4  # chunks of 3
        assert store.count(sm.fingerprint_id, "option_probs") == 10
        again = sm.option_probs(PROMPTS[:10], ("1", "2"))
        assert fake.judge_calls == 10  # nothing recomputed
        assert again == first
        # a partly new batch computes only the new prompts, and keeps the order of the request
        mixed = sm.option_probs(PROMPTS[5:15], ("1", "2"))
        assert fake.judge_calls == 15
        assert mixed[:5] == first[5:]
        assert mixed == fake.option_probs(PROMPTS[5:15], ("1", "2"))

        texts = sm.generate(PROMPTS[:4], GenerationConfig(max_new_tokens=20))
        assert sm.generate(PROMPTS[:4], GenerationConfig(max_new_tokens=20)) == texts
        assert fake.generate_calls == 4
        assert store.count(kind="generate") == 4


def test_records_keep_raw_probabilities_and_extra(tmp_path):
    fake = FakeModel()
    with CallStore(tmp_path / "s.sqlite") as store:
        sm = StoredModel(fake, store, progress=False)
        live = sm.option_probs(PROMPTS[:3], ("1", "2"))
        stored = StoredModel(fake, store, progress=False).option_probs(PROMPTS[:3], ("1", "2"))
    for a, b in zip(live, stored):
        assert a.raw == b.raw and a.options == b.options and a.exact is b.exact
        assert b.extra["top_token"] == a.extra["top_token"]
        assert b.outside == pytest.approx(0.03)
        assert sum(b.probs.values()) == pytest.approx(1.0)


def test_replay_without_a_model(tmp_path):
    path = tmp_path / "s.sqlite"
    fake = FakeModel("judge-a")
    with CallStore(path) as store:
        live = StoredModel(fake, store, progress=False)
        judged = live.option_probs(PROMPTS[:6], ("1", "2"), labels=LABELS[:6])
        written = live.generate(PROMPTS[:2])
    with CallStore(path) as store:
        replay = StoredModel(None, store, replay=True, name="judge-a", progress=False)
        assert replay.fingerprint == fake.fingerprint
        assert replay.fingerprint_id == fake.fingerprint_id
        assert replay.option_probs(PROMPTS[:6], ("1", "2")) == judged
        assert replay.generate(PROMPTS[:2]) == written


def test_replay_miss_names_the_store(tmp_path):
    path = tmp_path / "replay.sqlite"
    with CallStore(path) as store:
        StoredModel(FakeModel("judge-a"), store, progress=False).option_probs(PROMPTS[:2], ("1", "2"))
    with CallStore(path) as store:
        replay = StoredModel(None, store, replay=True, name="judge-a", progress=False)
        with pytest.raises(ReplayMiss) as err:
            replay.option_probs(PROMPTS[:3], ("1", "2"), labels=LABELS[:3])
        msg = str(err.value)
        assert str(path) in msg
        assert "1 of 3" in msg and LABELS[2] in msg
        # a live model behind replay=True is never called either
        fake = FakeModel("judge-a")
        with pytest.raises(ReplayMiss):
            StoredModel(fake, store, replay=True, progress=False).generate(PROMPTS[:1])
        assert fake.generate_calls == 0
        # an unknown model name is a miss too, listing what the store has
        with pytest.raises(ReplayMiss, match="judge-a"):
            StoredModel(None, store, replay=True, name="judge-b", progress=False)


def test_live_stored_model_needs_a_model(tmp_path):
    with CallStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(ValueError, match="replay"):
            StoredModel(None, store)
        with pytest.raises(ValueError, match="name"):
            StoredModel(None, store, replay=True)


def test_keys_depend_on_everything_that_determines_the_answer(tmp_path):
    fp = FakeModel().fingerprint_id
    p = PROMPTS[0]
    g = GenerationConfig()
    base = call_key(fp, "generate", p, g.as_dict())
    assert base == call_key(fp, "generate", [dict(m) for m in p], GenerationConfig().as_dict())  # stable
    variants = [
        call_key(fp, "generate", p, GenerationConfig(max_new_tokens=50).as_dict()),
        call_key(fp, "generate", p, GenerationConfig(temperature=0.7, seed=1).as_dict()),
        call_key(fp, "generate", p, GenerationConfig(stop=("\n",)).as_dict()),
        call_key(fp, "option_probs", p, g.as_dict()),
        call_key(FakeModel(version=2).fingerprint_id, "generate", p, g.as_dict()),
        call_key(fp, "generate", PROMPTS[1], g.as_dict()),
        call_key(fp, "generate", p[1]["content"], g.as_dict()),  # same text as a completion prompt
    ]
    assert len({base, *variants}) == len(variants) + 1

    fake = FakeModel()
    with CallStore(tmp_path / "s.sqlite") as store:
        sm = StoredModel(fake, store, progress=False)
        sm.option_probs(PROMPTS[:4], ("1", "2"))
        sm.option_probs(PROMPTS[:4], ("2", "1"))  # option order is part of the key
        sm.option_probs(PROMPTS[:4], ("Yes", "No"))
        assert fake.judge_calls == 12 and store.count(kind="option_probs") == 12
        sm.generate(PROMPTS[:4], GenerationConfig(max_new_tokens=10))
        sm.generate(PROMPTS[:4], GenerationConfig(max_new_tokens=11))
        assert fake.generate_calls == 8 and store.count(kind="generate") == 8
        # another model version: another fingerprint, nothing shared (under its own name: a store keeps one
        # fingerprint per model name, see test_store_faults)
        other = FakeModel("fake-judge-v2", version=2)
        StoredModel(other, store, progress=False).option_probs(PROMPTS[:4], ("1", "2"))
        assert other.judge_calls == 4
        assert len(store.models()) == 2


def test_meta_round_trip(tmp_path):
    with CallStore(tmp_path / "s.sqlite") as store:
        assert store.get_meta("run:ci") is None
        assert store.get_meta("run:ci", {}) == {}
        store.set_meta("run:ci", {"profile": "ci", "hardware": "cpu", "n": [1, 2]})
        store.set_meta("run:ci", {"profile": "ci", "hardware": "cpu:x86_64x2"})  # replaced, not duplicated
    with CallStore(tmp_path / "s.sqlite") as store:
        assert store.get_meta("run:ci") == {"profile": "ci", "hardware": "cpu:x86_64x2"}


# --- crash safety ------------------------------------------------------------------------------------------
RUNNER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_store import FakeModel, PROMPTS, LABELS
    from judgelab.store import CallStore, StoredModel

    store = CallStore({path!r})
    model = StoredModel(FakeModel(delay={delay!r}), store, chunk_size=5, progress=False)
    print("started", flush=True)
    model.option_probs(PROMPTS, ("1", "2"), labels=LABELS)
    store.close()
    print("finished", flush=True)
    """
)


def test_kill_9_mid_run_then_resume(tmp_path):
    path = tmp_path / "killed.sqlite"
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(tests=str(HERE), path=str(path), delay=0.1))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        n = 0
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"runner ended before it was killed: {proc.communicate()}")
            if path.exists():
                try:
                    n = rows(path)
                except sqlite3.OperationalError:  # schema not created yet
                    n = 0
                if n >= 20:
                    break
            time.sleep(0.02)
        assert n >= 20, "runner stored nothing within 120 s"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # what survived: whole chunks only (each chunk is one transaction), and not everything
    survived = rows(path)
    assert 20 <= survived < 200, survived
    assert survived % 5 == 0, f"{survived} rows: a chunk was half written"

    # resume in-process: only the missing prompts are computed
    fake = FakeModel()
    with CallStore(path) as store:
        resumed = StoredModel(fake, store, chunk_size=5, progress=False).option_probs(PROMPTS, ("1", "2"), labels=LABELS)
    assert fake.judge_calls == 200 - survived

    # an uninterrupted run in another store gives the same answers
    with CallStore(tmp_path / "clean.sqlite") as store:
        clean = StoredModel(FakeModel(), store, chunk_size=5, progress=False).option_probs(PROMPTS, ("1", "2"),
                                                                                          labels=LABELS)
    assert resumed == clean

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        total, distinct = conn.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM calls").fetchone()
        assert total == distinct == 200
        keys = {k.hex() for (k,) in conn.execute("SELECT key FROM calls")}  # keys are stored as 32-byte blobs
        labels = sorted(label for (label,) in conn.execute("SELECT label FROM calls"))
    fp = FakeModel().fingerprint_id
    assert keys == {call_key(fp, "option_probs", p, {"options": ["1", "2"]}) for p in PROMPTS}
    assert labels == sorted(LABELS)


# --- size --------------------------------------------------------------------------------------------------
def _bytes_per_record(tmp_path: Path, n: int = 2000) -> float:
    """File size per option_probs record after a realistic run (indexes and free space included)."""
    path = tmp_path / "size.sqlite"
    prompts = [pairwise_prompt(i) for i in range(n)]
    labels = [f"xsum/{30_000_000 + i // 40}/detection/{'forward' if i % 2 else 'backward'}/claude" for i in range(n)]
    with CallStore(path) as store:
        StoredModel(FakeModel(), store, chunk_size=64, progress=False).option_probs(prompts, ("1", "2"), labels=labels)
    wal = Path(str(path) + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "close() must fold the WAL into the store file"
    return path.stat().st_size / n


def test_store_file_stays_compact(tmp_path):
    """A committed store costs under 300 bytes per option_probs record (32-byte BLOB keys, WITHOUT ROWID: ~276;
    the first layout, hex TEXT keys with a rowid autoindex and a (fingerprint_id, kind) index, took ~410)."""
    per_record = _bytes_per_record(tmp_path)
    assert per_record < 300, f"{per_record:.0f} bytes per option_probs record"


class FakeLikelihoodModel(FakeModel):
    """A fake with log-likelihoods: a deterministic value per (prompt, continuation), counted."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.likelihood_calls = 0

    def loglikelihood(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[dict[str, Any]]:
        self.likelihood_calls += len(prompts)
        return [{"logprob": -float(self._h(p, c) % 1000) / 10, "mean_logprob": -1.0, "n_tokens": len(c.split())}
                for p, c in zip(prompts, continuations)]


def test_loglikelihood_goes_through_the_store_keyed_on_prompt_and_continuation(tmp_path):
    fake = FakeLikelihoodModel()
    prompts, conts = ["article A", "article A", "article B"], ["summary one", "summary two", "summary one"]
    with CallStore(tmp_path / "s.sqlite") as st:
        live = StoredModel(fake, st, progress=False).loglikelihood(prompts, conts)
        assert fake.likelihood_calls == 3 and len({r["logprob"] for r in live}) == 3
        again = StoredModel(fake, st, progress=False).loglikelihood(prompts + ["article A"], conts + ["summary one"])
        assert fake.likelihood_calls == 3 and again[:3] == live and again[3] == live[0]
        replay = StoredModel(None, st, replay=True, name=fake.name, progress=False)
        assert replay.loglikelihood(prompts, conts) == live
        with pytest.raises(ReplayMiss):
            replay.loglikelihood(["article A"], ["summary three"])
        with pytest.raises(ValueError, match="2 prompts but 1 continuations"):
            replay.loglikelihood(prompts[:2], conts[:1])

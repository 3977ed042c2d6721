"""The OpenAI-compatible backend against a fault-injecting fake server (no network, a few seconds).

The fake server answers ``/v1/chat/completions`` and ``/v1/completions`` on 127.0.0.1 from a script per
prompt: time-outs (it sleeps past the client's time-out), 429, 500, malformed bodies, then good answers.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from judgelab.models.base import GenerationConfig
from judgelab.models.openai_backend import (
    BackendError,
    MalformedResponse,
    OpenAICompatibleModel,
    top_logprobs_to_option_probs,
    zoo_fingerprint_extra,
)
from judgelab.store import CallStore, StoredModel

CLIENT_TIMEOUT = 0.25
GOOD_TOP = [(" 1", math.log(0.6)), ("1", math.log(0.1)), ("2", math.log(0.2)), ("The", math.log(0.05))]


class FakeServer:
    """A threaded HTTP server with a per-prompt script of actions; unscripted requests get a good answer.

    Actions: ``"good"``, ``("sleep", s)`` (then a good answer, too late), ``("status", code)``,
    ``("raw", text)`` (200, JSON content type, body as given), ``("json", obj)``.
    """

    def __init__(self) -> None:
        self.scripts: dict[str, list[Any]] = defaultdict(list)
        self.requests: list[tuple[str, str, dict[str, Any]]] = []  # (path, prompt key, body)
        self.top = list(GOOD_TOP)
        self.text = "A fine summary."
        self.models: list[str] | None = ["fake-model"]  # what /v1/models lists; None: no such endpoint (404)
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json", headers=()) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in headers:
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (time-out test)

            def do_GET(self) -> None:
                if fake.models is None:
                    err = {"error": {"message": "no such endpoint", "type": "not_found", "code": None}}
                    self._send(404, json.dumps(err).encode())
                    return
                models = {"object": "list", "data": [{"id": i, "object": "model"} for i in fake.models]}
                self._send(200, json.dumps(models).encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
                with fake.lock:
                    fake.requests.append((self.path, key, body))
                    script = fake.scripts[key]
                    action = script.pop(0) if script else "good"
                if isinstance(action, tuple) and action[0] == "sleep":
                    time.sleep(action[1])
                    action = "good"
                if action == "good":
                    self._send(200, json.dumps(fake.good(self.path, body)).encode())
                elif action[0] == "status":
                    err = {"error": {"message": f"injected {action[1]}", "type": "server_error", "code": None}}
                    retry_after = action[2] if len(action) > 2 else "0"
                    self._send(action[1], json.dumps(err).encode(), headers=[("Retry-After", retry_after)])
                elif action[0] == "raw":
                    self._send(200, action[1].encode())
                elif action[0] == "json":
                    self._send(200, json.dumps(action[1]).encode())
                else:  # pragma: no cover
                    raise AssertionError(action)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def good(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        judging = body.get("max_tokens") == 1 and body.get("logprobs")
        first = max(self.top, key=lambda t: t[1])
        if path.endswith("/chat/completions"):
            logprobs = None
            if judging:
                tops = [{"token": t, "logprob": lp, "bytes": None} for t, lp in self.top[: body["top_logprobs"]]]
                logprobs = {"content": [{"token": first[0], "logprob": first[1], "bytes": None, "top_logprobs": tops}]}
            return {
                "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "fake-model-2024",
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "finish_reason": "length", "logprobs": logprobs,
                             "message": {"role": "assistant", "content": first[0] if judging else self.text}}],
            }
        logprobs = None
        if judging:
            logprobs = {"tokens": [first[0]], "token_logprobs": [first[1]], "text_offset": [0],
                        "top_logprobs": [dict(self.top[: body["logprobs"]])]}
        return {
            "id": "cmpl-1", "object": "text_completion", "created": 0, "model": "fake-model-2024",
            "choices": [{"index": 0, "finish_reason": "length", "logprobs": logprobs,
                         "text": first[0] if judging else self.text}],
        }

    def count(self, key: str) -> int:
        return sum(1 for _, k, _ in self.requests if k == key)

    def close(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


class Blackhole:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers.

    ``trickle``: send ``HTTP/1.1 200 OK`` and then one byte of a never-ending header line every ``trickle``
    seconds -- a server that is alive, so no read time-out ever fires, but never finishes an answer.
    """

    def __init__(self, trickle: float | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.trickle = trickle
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                pass
            else:
                self.conns.append(conn)
                if self.trickle:
                    threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not self.stop.wait(self.trickle):
                conn.sendall(b"a")
        except OSError:
            pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(1)
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture
def blackhole():
    b = Blackhole()
    yield b
    b.close()


def _within(seconds: float, fn):
    """Run ``fn()`` in a thread; fail (instead of hanging the suite) if it has not returned in ``seconds``.
    Returns (elapsed seconds, the exception it raised or None)."""
    box: dict[str, Any] = {}

    def run():
        t0 = time.perf_counter()
        try:
            fn()
        except BaseException as err:  # noqa: BLE001
            box["error"] = err
        box["elapsed"] = time.perf_counter() - t0

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"the call was still running after {seconds} s: no hard deadline"
    return box["elapsed"], box.get("error")


def make(server: FakeServer, **kw: Any) -> OpenAICompatibleModel:
    opts: dict[str, Any] = dict(
        timeout=CLIENT_TIMEOUT, max_attempts=4, max_total_s=10, backoff_initial=0.01, backoff_max=0.05,
        backoff_jitter=0.01, max_concurrency=1,
    )
    opts.update(kw)
    return OpenAICompatibleModel("fake-model", base_url=server.base_url, **opts)


# --- top-logprobs -> OptionProbs ---------------------------------------------------------------------------
def test_mapping_counts_spellings_with_and_without_space():
    res = top_logprobs_to_option_probs(["1", "2"], GOOD_TOP, top_k=20)
    assert res.raw == pytest.approx((0.7, 0.2))
    assert res.exact is True
    assert res.probs["1"] == pytest.approx(0.7 / 0.9)
    assert res.outside == pytest.approx(0.1)
    assert res.extra["top_token"] == " 1"
    assert res.extra["topk_mass"] == pytest.approx(0.95)
    assert res.extra["top_k"] == 20


def test_mapping_absent_option_is_zero_and_inexact():
    res = top_logprobs_to_option_probs(["1", "2", "3"], [("1", math.log(0.5)), ("\n2 ", math.log(0.1))])
    assert res.raw == pytest.approx((0.5, 0.1, 0.0))
    assert res.exact is False
    assert res.argmax == "1"
    # outside is an upper bound when exact is False
    assert res.outside == pytest.approx(0.4)


def test_mapping_rejects_garbage():
    with pytest.raises(MalformedResponse):
        top_logprobs_to_option_probs(["1", "2"], [])
    with pytest.raises(MalformedResponse):
        top_logprobs_to_option_probs(["1", "2"], [("1", float("nan"))])
    with pytest.raises(MalformedResponse):
        top_logprobs_to_option_probs(["1", "2"], [("1", 0.5)])  # a positive log-probability
    assert top_logprobs_to_option_probs(["1", "2"], [("1", 0.0), ("2", -math.inf)]).raw == (1.0, 0.0)


# --- happy paths -------------------------------------------------------------------------------------------
def test_chat_option_probs_and_request_shape(server):
    m = make(server, top_k=3)
    [res] = m.option_probs([[{"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}]], ["1", "2"])
    assert res.raw == pytest.approx((0.7, 0.2))  # top_k=3: "The" not sent, "1", " 1", "2" are
    assert res.extra["top_token"] == " 1" and res.extra["system_fingerprint"] == "fp_fake"
    path, _, body = server.requests[-1]
    assert path == "/v1/chat/completions"
    assert body["max_tokens"] == 1 and body["temperature"] == 0 and body["logprobs"] is True
    assert body["top_logprobs"] == 3 and body["messages"][0]["role"] == "system"
    assert m.served == {"model": "fake-model-2024", "system_fingerprint": "fp_fake"}


def test_completions_endpoint_legacy_logprobs(server):
    m = make(server, chat=False)
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    [res] = m.option_probs([msgs], ["1", "2"])
    assert res.raw == pytest.approx((0.7, 0.2))
    path, key, body = server.requests[-1]
    assert path == "/v1/completions" and key == "S\n\nU\n\n" and body["logprobs"] == 20
    assert m.generate(["plain prompt"]) == [server.text]


def test_generate_parameters(server):
    m = make(server, max_concurrency=3)
    cfg = GenerationConfig(max_new_tokens=33, temperature=0.5, stop=("\n\n",), seed=7)
    out = m.generate(["a", [{"role": "user", "content": "b"}], "c"], cfg)
    assert out == [server.text] * 3
    body = server.requests[-1][2]
    assert body["max_tokens"] == 33 and body["temperature"] == 0.5 and body["stop"] == ["\n\n"] and body["seed"] == 7
    assert body["messages"] == [{"role": "user", "content": server.requests[-1][1]}]
    body = make(server).generate(["d"]) and server.requests[-1][2]
    assert "seed" not in body and "stop" not in body and body["temperature"] == 0


def test_concurrency_overlaps_requests(server):
    for k in "abcd":
        server.scripts[k] = [("sleep", 0.2)]
    m = make(server, timeout=5, max_concurrency=4)
    t0 = time.perf_counter()
    m.generate(list("abcd"))
    assert time.perf_counter() - t0 < 0.6  # four 0.2 s requests in parallel, not 0.8 s in a row


# --- faults ------------------------------------------------------------------------------------------------
def test_retries_every_fault_then_succeeds(server):
    server.scripts["q"] = [
        ("sleep", CLIENT_TIMEOUT * 3),
        ("status", 429),
        ("status", 500),
        ("raw", "{not json"),
        ("json", {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                  "choices": [{"index": 0, "finish_reason": "length", "logprobs": None,
                               "message": {"role": "assistant", "content": "1"}}]}),
    ]
    m = make(server, max_attempts=6, malformed_retries=2)
    [res] = m.option_probs(["q"], ["1", "2"])
    assert res.raw == pytest.approx((0.7, 0.2)) and res.exact
    assert server.count("q") == 6


def test_retry_after_is_honoured_up_to_the_cap(server):
    server.scripts["q"] = [("status", 429, "0.4")]
    t0 = time.perf_counter()
    assert make(server, backoff_max=0.6).generate(["q"]) == [server.text]
    assert time.perf_counter() - t0 >= 0.4 and server.count("q") == 2
    server.scripts["r"] = [("status", 429, "3600")]
    t0 = time.perf_counter()
    make(server, backoff_max=0.05).generate(["r"])  # capped at backoff_max
    assert time.perf_counter() - t0 < 1.0


def test_budget_exceeded_raises_clear_error(server):
    server.scripts["q"] = [("status", 500)] * 10
    m = make(server, max_attempts=3)
    with pytest.raises(BackendError) as info:
        m.option_probs(["q"], ["1", "2"])
    msg = str(info.value)
    assert "fake-model" in msg and server.base_url in msg and "HTTP 500" in msg and "3 attempts" in msg
    assert info.value.status == 500 and info.value.attempts == 3
    assert server.count("q") == 3


def test_timeouts_exhaust_budget(server):
    server.scripts["q"] = [("sleep", CLIENT_TIMEOUT * 3)] * 5
    m = make(server, max_attempts=2)
    with pytest.raises(BackendError, match="failed after 2 attempts: timed out"):
        m.generate(["q"])


def test_malformed_bodies_are_retried_at_most_malformed_retries(server):
    server.scripts["q"] = [("json", {"id": "x", "object": "chat.completion", "model": "m"})] * 10
    m = make(server, max_attempts=6, malformed_retries=1)
    with pytest.raises(BackendError, match="malformed response") as info:
        m.option_probs(["q"], ["1", "2"])
    assert info.value.attempts == 2 and server.count("q") == 2


def test_invalid_json_is_never_a_number(server):
    server.scripts["q"] = [("raw", "<html>oops</html>")] * 10
    m = make(server, max_attempts=6, malformed_retries=2)
    with pytest.raises(BackendError, match="malformed response"):
        m.option_probs(["q"], ["1", "2"])
    assert server.count("q") == 3


def test_client_errors_are_not_retried(server):
    server.scripts["q"] = [("status", 400)] * 3
    with pytest.raises(BackendError, match="HTTP 400") as info:
        make(server).generate(["q"])
    assert info.value.attempts == 1 and server.count("q") == 1


def test_connection_refused(server):
    url = server.base_url
    server.close()
    m = OpenAICompatibleModel("fake-model", base_url=url, timeout=0.5, max_attempts=2, backoff_initial=0.01,
                              backoff_max=0.02, backoff_jitter=0.0)
    with pytest.raises(BackendError, match="connection error") as info:
        m.generate(["q"])
    assert url in str(info.value) and info.value.attempts == 2


def test_end_of_text_without_logprobs_is_a_clear_error(server):
    # llama.cpp's server answers a one-token request whose token is end-of-text with no logprobs at all
    server.scripts["q"] = [("json", {"id": "c", "object": "text_completion", "created": 0, "model": "m",
                                     "choices": [{"index": 0, "text": "", "finish_reason": "stop",
                                                  "logprobs": {"tokens": [], "token_logprobs": [],
                                                               "text_offset": [], "top_logprobs": []}}]})]
    with pytest.raises(BackendError, match="end-of-text") as info:
        make(server, chat=False).option_probs(["q"], ["1", "2"])
    assert info.value.attempts == 1


# --- with the call store -----------------------------------------------------------------------------------
def test_store_records_only_good_calls_exactly_once(server, tmp_path):
    server.scripts["bad"] = [("status", 503)] * 3
    server.scripts["flaky"] = [("status", 429)]
    with CallStore(tmp_path / "calls.sqlite") as store:
        stored = StoredModel(make(server, max_attempts=3, max_concurrency=3), store, progress=False)
        prompts = ["bad", "flaky", "fine"]
        with pytest.raises(BackendError, match="HTTP 503"):
            stored.option_probs(prompts, ["1", "2"])
        assert store.count() == 0  # nothing stored for the failed chunk, no placeholder either

        first = stored.option_probs(prompts, ["1", "2"])  # the server has recovered
        assert [r.raw for r in first] == [pytest.approx((0.7, 0.2))] * 3
        assert store.count(kind="option_probs") == 3
        before = len(server.requests)
        again = stored.option_probs(prompts, ["1", "2"])
        assert len(server.requests) == before  # answered from the store
        assert [r.raw for r in again] == [r.raw for r in first]
        assert store.count() == 3

        server.scripts["bad"] = [("raw", "garbage")] * 5
        with pytest.raises(BackendError):
            stored.generate(["bad"])
        assert store.count(kind="generate") == 0
        assert stored.generate(["bad", "fine"]) == [server.text] * 2
        assert stored.generate(["bad", "fine"]) == [server.text] * 2
        assert store.count(kind="generate") == 2


# --- identity ----------------------------------------------------------------------------------------------
def test_fingerprint_and_keys(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    a = OpenAICompatibleModel("m", base_url="http://127.0.0.1:1234/v1", provider_model="m")
    b = OpenAICompatibleModel("m", base_url="http://localhost:9999/v1", fingerprint_extra={"gguf_sha256": "ab"})
    assert a.fingerprint == {"backend": "openai-compatible", "model": "m", "base_url": "localhost", "chat": True,
                             "endpoint": "http://localhost:1234/v1", "provider_model": "m"}
    # weights pinned by hash on this machine: no port (serve_gguf takes a free one), no server-side name
    assert b.fingerprint == {"backend": "openai-compatible", "model": "m", "base_url": "localhost", "chat": True,
                             "gguf_sha256": "ab"}
    assert a.fingerprint_id != b.fingerprint_id
    assert a.client.api_key == "not-needed" and a.client.max_retries == 0
    other_port = OpenAICompatibleModel("m", base_url="http://127.0.0.1:1235/v1", provider_model="m")
    assert other_port.fingerprint_id != a.fingerprint_id  # another server, maybe other weights
    chat_off = OpenAICompatibleModel("m", base_url="http://127.0.0.1:1234/v1", chat=False, provider_model="m")
    assert chat_off.fingerprint_id != a.fingerprint_id
    with pytest.raises(BackendError, match="OPENAI_API_KEY"):
        OpenAICompatibleModel("gpt-4o-mini")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    o = OpenAICompatibleModel("gpt-4o-mini", provider_model="gpt-4o-mini")
    assert o.fingerprint["base_url"] == "api.openai.com" and o.client.api_key == "sk-test"
    assert o.fingerprint["endpoint"] == "https://api.openai.com/v1"
    with pytest.raises(ValueError, match="not an http"):
        OpenAICompatibleModel("m", base_url="127.0.0.1:8080")


def test_openai_base_url_from_environment_is_not_filed_as_openai(server, monkeypatch, tmp_path):
    """OPENAI_BASE_URL pointing at a local server: the answers come from it, and the store says so."""
    from judgelab.models import get_model

    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    port = server.base_url.split(":")[-1].split("/")[0]
    m = get_model("openai:gpt-4o-mini", store=tmp_path / "s.sqlite", timeout=2, max_attempts=1)
    assert m.generate(["hello"]) == [server.text]  # the local server answered
    fp = m.fingerprint
    assert fp["base_url"] == "localhost" and fp["endpoint"] == f"http://localhost:{port}/v1"
    assert fp["provider_model"] == "fake-model"  # the one model the server lists, not the name asked for
    real = OpenAICompatibleModel("gpt-4o-mini", base_url="https://api.openai.com/v1", provider_model="gpt-4o-mini")
    assert real.fingerprint_id != m.fingerprint_id  # a later real run does not replay the local answers
    [(_, stored_name, stored_fp, _)] = [tuple(r.values()) for r in m.store.models()]
    assert stored_fp["endpoint"] == fp["endpoint"] and stored_fp["base_url"] != "api.openai.com"


def test_provider_model_is_what_the_server_lists(server):
    server.models = ["other", "fake-model"]
    assert make(server).fingerprint["provider_model"] == "fake-model"  # the asked name is listed
    server.models = ["a", "b"]
    assert make(server).fingerprint["provider_model"] is None  # several, not this one: nothing to claim
    server.models = None  # no /v1/models endpoint (HTTP 404)
    assert make(server).fingerprint["provider_model"] is None
    server.models = ["x"]
    m = make(server)
    assert m.fingerprint["provider_model"] == "x"
    before = len(server.requests)
    server.models = ["changed"]
    assert m.fingerprint["provider_model"] == "x" and len(server.requests) == before  # asked once


def test_provider_model_lookup_on_a_dead_server_is_a_backend_error(server):
    url = server.base_url
    server.close()
    m = OpenAICompatibleModel("fake-model", base_url=url, timeout=0.5, max_attempts=1)
    with pytest.raises(BackendError, match="list models"):
        m.fingerprint


# --- hard deadlines ----------------------------------------------------------------------------------------
def test_silent_server_is_bounded_by_the_call_deadline(blackhole):
    """A server that accepts and never answers: the call ends at max_total_s, not timeout x attempts."""
    m = OpenAICompatibleModel("m", base_url=blackhole.base_url, timeout=5, max_attempts=4, max_total_s=0.8,
                              backoff_initial=0.01, backoff_max=0.02, backoff_jitter=0.0, provider_model="m")
    elapsed, err = _within(4, lambda: m.generate(["q"]))
    assert isinstance(err, BackendError) and elapsed < 1.6, (elapsed, err)
    assert "timed out" in str(err) and "max_total_s=0.8s" in str(err) and blackhole.base_url.split("/v1")[0] in str(err)


def test_silent_server_retries_within_the_deadline(blackhole):
    m = OpenAICompatibleModel("m", base_url=blackhole.base_url, timeout=0.3, max_attempts=10, max_total_s=1.0,
                              backoff_initial=0.01, backoff_max=0.02, backoff_jitter=0.0, provider_model="m")
    elapsed, err = _within(4, lambda: m.option_probs(["q"], ["1", "2"]))
    assert isinstance(err, BackendError) and 0.9 < elapsed < 1.6, (elapsed, err)
    assert 3 <= err.attempts <= 4 and "hard per-attempt deadline" in str(err)


def test_trickling_server_is_bounded_by_the_attempt_deadline():
    """A server that sends a byte now and then never trips httpx's read time-out; the hard deadline ends it."""
    slow = Blackhole(trickle=0.05)
    try:
        m = OpenAICompatibleModel("m", base_url=slow.base_url, timeout=0.5, max_attempts=1, max_total_s=30,
                                  provider_model="m")
        elapsed, err = _within(4, lambda: m.generate(["q"]))
        assert isinstance(err, BackendError) and elapsed < 1.2, (elapsed, err)
        assert "failed after 1 attempt: timed out" in str(err)
    finally:
        slow.close()


def _failing_calls(m, n: int, seconds: float):
    """``n`` generate calls of ``m`` within ``seconds``: (elapsed, the BackendErrors they raised)."""
    errors = []

    def calls():
        for _ in range(n):
            try:
                m.generate(["q"])
            except BackendError as err:
                errors.append(err)

    elapsed, _ = _within(seconds, calls)
    return elapsed, errors


def test_run_deadline_bounds_every_call_together(blackhole):
    m = OpenAICompatibleModel("m", base_url=blackhole.base_url, timeout=0.4, max_attempts=1, max_total_s=30,
                              max_run_s=1.0, provider_model="m")
    elapsed, errors = _failing_calls(m, 5, 4)
    assert len(errors) == 5 and elapsed < 1.5, (elapsed, errors)
    assert "max_run_s=1s" in str(errors[-1]) and "not started" in str(errors[-1])
    with pytest.raises(ValueError, match="max_run_s"):
        OpenAICompatibleModel("m", base_url=blackhole.base_url, max_run_s=0)


def test_run_deadline_from_the_environment(blackhole, monkeypatch):
    """``judgelab run --max-run-s`` reaches every OpenAI-compatible model through $JUDGELAB_MAX_RUN_S."""
    from judgelab.models.openai_backend import MAX_RUN_ENV

    monkeypatch.setenv(MAX_RUN_ENV, "0.6")
    m = OpenAICompatibleModel("m", base_url=blackhole.base_url, timeout=0.4, max_attempts=1, max_total_s=30,
                              provider_model="m")
    assert m.max_run_s == 0.6
    assert OpenAICompatibleModel("m", base_url=blackhole.base_url, max_run_s=5, provider_model="m").max_run_s == 5
    elapsed, errors = _failing_calls(m, 3, 4)
    assert len(errors) == 3 and elapsed < 1.2, (elapsed, errors)
    assert "max_run_s=0.6s" in str(errors[-1])
    monkeypatch.setenv(MAX_RUN_ENV, "soon")
    with pytest.raises(ValueError, match="JUDGELAB_MAX_RUN_S must be a number of seconds, got 'soon'"):
        OpenAICompatibleModel("m", base_url=blackhole.base_url)
    monkeypatch.setenv(MAX_RUN_ENV, "-1")
    with pytest.raises(ValueError, match="max_run_s must be a positive number"):
        OpenAICompatibleModel("m", base_url=blackhole.base_url)


def test_zoo_fingerprint_extra():
    extra = zoo_fingerprint_extra("smollm2-135m-instruct", verify=False)
    assert extra["gguf_sha256"].startswith("b179c952") and extra["quantisation"] == "Q4_1"
    m = OpenAICompatibleModel.for_zoo("gemma-3-270m", "http://127.0.0.1:1/v1", verify=False)
    assert m.chat is False and m.name == "gemma-3-270m" and m.fingerprint["zoo"] == "gemma-3-270m"
    v = OpenAICompatibleModel.for_zoo("smollm2-135m-instruct", "http://10.0.0.5:8000/v1", verify=False,
                                      model_name="HuggingFaceTB/SmolLM2-135M-Instruct", provider_model="hf-smollm2")
    assert v.name == "smollm2-135m-instruct" and v.model_name == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert v.fingerprint["base_url"] == "10.0.0.5" and v.chat is True
    # a remote server: the weights are named, but where they are served and under what id is identity too
    assert v.fingerprint["endpoint"] == "http://10.0.0.5:8000/v1" and v.fingerprint["provider_model"] == "hf-smollm2"


def test_get_model_resolves_openai_specs(monkeypatch):
    from judgelab.models import get_model

    m = get_model("openai:served@http://127.0.0.1:8080/v1", max_attempts=2)
    assert isinstance(m, OpenAICompatibleModel) and m.base_url == "http://127.0.0.1:8080/v1" and m.max_attempts == 2


def test_server_models(server):
    assert make(server).server_models() == ["fake-model"]

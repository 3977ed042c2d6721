"""A prefix tree (radix tree) over token sequences: every common prefix once.

Judging reads many prompts that share long stretches of tokens: all prompts of one task start with the
same system prompt and instructions, all prompts about one article share the article, and pairwise
prompts that show the same first summary share that too. A forward pass over a token depends only on the
tokens before it, so each distinct prefix needs computing exactly once. The radix tree makes that
structure explicit: a node is a run of tokens that a set of sequences share and no other split point
interrupts; its children are the ways those sequences continue. The number of tokens in the tree
(:func:`unique_prefix_tokens`) is the least number of token positions any method must compute to read
every sequence -- the benchmark's "minimum".

The tree knows nothing about models; :class:`~judgelab.models.transformers_backend.TransformersModel`
walks it, and the benchmarks use it to count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class PrefixNode:
    """Tokens ``[start, end)`` of every sequence below this node (they are equal there).

    ``rep`` is the index of one sequence that passes through the node (its tokens spell the span),
    ``ends`` the indices of the sequences that end exactly at ``end``, and ``size`` the number of tokens
    in the node's subtree (its own span plus all descendants').
    """

    start: int
    end: int
    rep: int
    ends: list[int] = field(default_factory=list)
    children: list[PrefixNode] = field(default_factory=list)
    size: int = 0

    @property
    def span(self) -> int:
        return self.end - self.start

    def walk(self):
        """The subtree's nodes in depth-first order (parents before children, children in token order)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


def _lcp_from(a: Sequence[int], b: Sequence[int], start: int) -> int:
    """Length of the common prefix of ``a`` and ``b``, given that they agree before ``start``."""
    n = min(len(a), len(b))
    i = start
    while i < n and a[i] == b[i]:
        i += 1
    return i


def build_prefix_tree(seqs: Sequence[Sequence[int]]) -> PrefixNode:
    """The radix tree of ``seqs``. The root's span is their common prefix (empty when there is none).

    Sorting makes every set of sequences with a common prefix a contiguous run, and the common prefix of
    a sorted run is that of its first and last member, so the tree is built in one pass over the tokens.
    Duplicates end at the same node. Raises on an empty sequence (there is no next token to read after
    nothing).
    """
    tup = [tuple(int(t) for t in s) for s in seqs]
    if not tup:
        raise ValueError("build_prefix_tree: no sequences")
    for i, s in enumerate(tup):
        if not s:
            raise ValueError(f"build_prefix_tree: sequence {i} is empty")
    order = sorted(range(len(tup)), key=tup.__getitem__)

    def make(lo: int, hi: int, depth: int) -> PrefixNode:
        end = _lcp_from(tup[order[lo]], tup[order[hi - 1]], depth)
        return PrefixNode(start=depth, end=end, rep=order[lo])

    root = make(0, len(order), 0)
    # explicit stack, not recursion: a chain of nested prompts must not hit Python's recursion limit
    stack = [(root, 0, len(order))]
    while stack:
        node, lo, hi = stack.pop()
        k = lo
        while k < hi and len(tup[order[k]]) == node.end:  # a sequence that ends here sorts first
            node.ends.append(order[k])
            k += 1
        while k < hi:
            tok = tup[order[k]][node.end]
            j = k + 1
            while j < hi and tup[order[j]][node.end] == tok:
                j += 1
            child = make(k, j, node.end)
            node.children.append(child)
            stack.append((child, k, j))
            k = j
    for node in reversed(list(root.walk())):  # children before parents
        node.size = node.span + sum(c.size for c in node.children)
    return root


def unique_prefix_tokens(seqs: Sequence[Sequence[int]]) -> int:
    """The number of distinct prefixes of ``seqs``: token positions computed when each is computed once."""
    return build_prefix_tree(seqs).size


def sequential_reuse_tokens(seqs: Sequence[Sequence[int]]) -> int:
    """Tokens computed by a single-sequence cache that keeps the longest prefix it shares with the last
    sequence (llama.cpp's prefix reuse), reading ``seqs`` in sorted order; at least one token per sequence
    (the last position's logits have to be computed)."""
    tup = sorted(tuple(s) for s in seqs)
    total, prev = 0, ()
    for s in tup:
        keep = min(_lcp_from(prev, s, 0), len(s) - 1)
        total += len(s) - keep
        prev = s
    return total

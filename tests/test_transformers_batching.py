"""The prefix tree, tree-shaped judging and unpadded batched generation of the transformers backend.

The tree tests need no model. The backend tests use the session's smollm2 (real weights on CPU) and real
pairwise prompts about two XSUM articles; every fast path is checked against the plain reference: the
naive forward pass for judging, transformers' own ``generate`` of each prompt alone for generation.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
import sqlite3
from pathlib import Path

import pytest
import numpy as np
import torch

from judgelab.models.base import GenerationConfig
from judgelab.models.prefix_tree import build_prefix_tree, sequential_reuse_tokens, unique_prefix_tokens
from judgelab.models.transformers_backend import ComputeCounts, TransformersModel
from judgelab.prompts import panickssery2024 as P

ROOT = Path(__file__).resolve().parents[1]


# --- the prefix tree (no model) ---------------------------------------------------------------------------
def _spelled(root, seqs):
    """Map each sequence index to the tokens on the path from the root to the node where it ends."""
    found = {}
    stack = [(root, [])]
    while stack:
        node, path = stack.pop()
        path = path + list(seqs[node.rep][node.start : node.end])
        assert len(path) == node.end
        for i in node.ends:
            found[i] = path
        stack.extend((c, path) for c in node.children)
    return found


def test_prefix_tree_counts_every_distinct_prefix_once_and_spells_every_sequence():
    rng = random.Random(0)
    for _ in range(300):
        seqs = [[rng.randint(0, 3) for _ in range(rng.randint(1, 7))] for _ in range(rng.randint(1, 9))]
        root = build_prefix_tree(seqs)
        distinct = {tuple(s[:k]) for s in seqs for k in range(1, len(s) + 1)}
        assert root.size == unique_prefix_tokens(seqs) == len(distinct)
        assert _spelled(root, seqs) == {i: s for i, s in enumerate(seqs)}
        for node in root.walk():
            assert node.size == node.span + sum(c.size for c in node.children)
            # a split point is a real branch or a sequence end, never an arbitrary cut
            assert node is root or node.span >= 1
            assert len(node.children) != 1 or node.ends


def test_prefix_tree_shapes_by_hand():
    #   [1 2 3 4], [1 2 3 5], [1 2], [1 2], [7]: the root is empty, [1 2] ends twice and branches at 3
    seqs = [[1, 2, 3, 4], [1, 2, 3, 5], [1, 2], [1, 2], [7]]
    root = build_prefix_tree(seqs)
    assert (root.start, root.end, root.ends) == (0, 0, [])
    a, b = root.children
    assert (a.start, a.end, sorted(a.ends)) == (0, 2, [2, 3])
    assert (b.start, b.end, b.ends, b.children) == (0, 1, [4], [])
    [c] = a.children
    assert (c.start, c.end, c.ends) == (2, 3, [])
    assert [(n.start, n.end, n.ends) for n in c.children] == [(3, 4, [0]), (3, 4, [1])]
    assert root.size == 2 + 1 + 1 + 1 + 1 == 6
    # llama.cpp-style reuse reads them sorted: [1 2] (2), [1 2] again (1: the last token is recomputed),
    # [1 2 3 4] (2), [1 2 3 5] (1), [7] (1)
    assert sequential_reuse_tokens(seqs) == 7


def test_prefix_tree_refuses_empty_input():
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        build_prefix_tree([[1], []])
    with pytest.raises(ValueError, match="no sequences"):
        build_prefix_tree([])


def test_deep_nesting_does_not_recurse():
    seqs = [list(range(k)) for k in range(1, 3000)]  # each a prefix of the next: a 3000-deep chain of nodes
    root = build_prefix_tree(seqs)
    assert root.size == 2999
    assert sum(1 for _ in root.walk()) == 2999


# --- judging through the tree ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_articles(xsum_articles):
    from judgelab.data.self_recognition import load_summaries

    held_out = xsum_articles.iloc[500:560]
    keys = held_out.loc[held_out["article"].str.len().nsmallest(2).index, "key"].tolist()
    sums = load_summaries("xsum")
    sums = sums[sums["key"].isin(keys)]
    articles = xsum_articles.set_index("key")["article"]
    return [(articles[k], dict(zip(sums[sums["key"] == k]["author"], sums[sums["key"] == k]["summary"])))
            for k in keys]


def _pairwise(two_articles):
    """Both tasks, both orders, three authors about each of two articles: 24 prompts, many shared prefixes."""
    prompts = []
    for article, by in two_articles:
        for task in ("detection", "comparison"):
            for x, y in itertools.permutations(("human", "claude", "gpt4"), 2):
                prompts.append(P.pairwise_messages(task, article, by[x], by[y]))
    return prompts


def _with(model: TransformersModel, **settings) -> TransformersModel:
    m = copy.copy(model)  # same weights and tokenizer, other settings, own counters
    for k, v in settings.items():
        setattr(m, k, v)
    m.counts = ComputeCounts()
    return m


@pytest.fixture(scope="module")
def judged_three_ways(smollm2, two_articles):
    prompts = _pairwise(two_articles)
    ids = [smollm2.encode(p) for p in prompts]
    naive = _with(smollm2, prefix_sharing=False)
    group = _with(smollm2, prefix_sharing="group")
    # a small pack forces all three paths of the walk: long nodes on top of their parent's cache, packs of
    # several sibling subtrees, and subtrees too large to pack
    tree = _with(smollm2, prefix_sharing=True, pack_tokens=96)
    dense = _with(smollm2, prefix_sharing=True, pack_tokens=96, tree_attention=False)  # the dense mask alone
    out = {name: (m, m.next_token_logprobs(ids)) for name, m in
           (("naive", naive), ("group", group), ("tree", tree), ("tree_dense", dense))}
    return prompts, ids, out


def test_tree_judging_equals_the_plain_forward_pass(judged_three_ways):
    _, ids, out = judged_three_ways
    ref = out["naive"][1]
    for name in ("group", "tree", "tree_dense"):
        lp = out[name][1]
        assert lp.shape == ref.shape
        assert torch.allclose(lp.exp(), ref.exp(), atol=1e-4), name
        assert (lp.argmax(-1) == ref.argmax(-1)).all(), name


def test_tree_computes_each_common_prefix_once_and_no_padding(judged_three_ways):
    _, ids, out = judged_three_ways
    minimum = unique_prefix_tokens(ids)
    total = sum(len(s) for s in ids)
    counts = {name: m.counts for name, (m, _) in out.items()}
    for c in counts.values():
        assert c.judge_prompts == len(ids) and c.judge_prompt_tokens == total and c.judge_min_tokens == minimum
    assert counts["naive"].judge_rows == total
    assert counts["tree"].judge_rows == minimum  # every tree token exactly once: nothing padded, nothing repeated
    assert minimum < counts["group"].judge_rows < total  # the group method repeats shared summaries and pads
    assert counts["tree"].judge_forwards > 1  # the small pack really split the walk
    # packed rows went through the per-node attention in every layer; the dense variant never did
    layers = out["tree"][0].model.config.num_hidden_layers
    assert counts["tree"].judge_tree_attention_layers > 0
    assert counts["tree"].judge_tree_attention_layers % layers == 0
    assert counts["tree_dense"].judge_tree_attention_layers == 0
    assert counts["tree_dense"].judge_rows == minimum
    # the LM head only where prompts end (the tree's distinct ends, plus one per span run on its own)
    assert counts["tree"].judge_logit_rows < 2 * len(ids)
    assert counts["naive"].judge_logit_rows == total


def test_tree_options_equal_naive_options(smollm2, two_articles):
    prompts = _pairwise(two_articles)[:8]
    fast = _with(smollm2).option_probs(prompts, ("1", "2"))
    slow = _with(smollm2, prefix_sharing="naive").option_probs(prompts, ("1", "2"))
    for f, s in zip(fast, slow):
        assert f.raw == pytest.approx(s.raw, abs=1e-4)
        assert f.extra["top_token"] == s.extra["top_token"]


def test_tree_handles_duplicates_nested_prompts_and_one_token_prompts(smollm2):
    rng = random.Random(1)
    trunk = [rng.randint(100, 5000) for _ in range(60)]
    seqs = [trunk, trunk + [11, 12, 13], trunk + [11, 12, 13], trunk[:30], trunk + [11, 99], [5], [5, 6],
            [rng.randint(100, 5000) for _ in range(40)]]
    ref = _with(smollm2, prefix_sharing=False).next_token_logprobs(seqs)
    for pack in (1, 8, 10_000):
        tree = _with(smollm2, pack_tokens=pack)
        lp = tree.next_token_logprobs(seqs)
        assert torch.allclose(lp.exp(), ref.exp(), atol=1e-4), pack
        assert tree.counts.judge_rows == unique_prefix_tokens(seqs)


def test_judging_settings_do_not_change_the_fingerprint(smollm2):
    """Replay reads the committed stores by fingerprint: the new method must not change it."""
    store = ROOT / "results" / "open_models" / "stores" / "smollm2-135m-instruct.sqlite"
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
        [(fid, fp)] = conn.execute("SELECT fingerprint_id, fingerprint FROM models WHERE name = ?",
                                   ("smollm2-135m-instruct",)).fetchall()
    for settings in ({}, {"prefix_sharing": "group"}, {"prefix_sharing": False}, {"pack_tokens": 7},
                     {"prefill": "padded"}, {"tree_attention": False}):
        m = _with(smollm2, **settings)
        assert m.fingerprint == json.loads(fp)
        assert m.fingerprint_id == fid


def test_bad_settings_and_empty_prompts_are_refused(smollm2):
    with pytest.raises(ValueError, match="prefix_sharing='trie'"):
        TransformersModel(smollm2.model, smollm2.tokenizer, name="x", fingerprint={}, chat=True,
                          prefix_sharing="trie")
    with pytest.raises(ValueError, match="prefill='batched'.*per_prompt"):
        TransformersModel(smollm2.model, smollm2.tokenizer, name="x", fingerprint={}, chat=True,
                          prefill="batched")
    with pytest.raises(ValueError, match="pack_tokens"):
        TransformersModel(smollm2.model, smollm2.tokenizer, name="x", fingerprint={}, chat=True, pack_tokens=0)
    with pytest.raises(ValueError, match="prompt 1 of 2 has no tokens"):
        smollm2.next_token_logprobs([[1, 2], []])
    with pytest.raises(ValueError, match="generation prompt 0 of 1 has no tokens"):
        smollm2.generate([""], GenerationConfig(max_new_tokens=2))


# --- generation without padding ------------------------------------------------------------------------
def _gen_prompts(two_articles):
    article = max((a for a, _ in two_articles), key=len)
    return [
        [{"role": "user", "content": "Name a colour."}],
        P.summary_messages("xsum", article),  # a few hundred tokens
        "The capital of France is",  # a plain completion prompt, no chat template
        [{"role": "user", "content": "Write a haiku about winter mornings."}],
    ]


def _alone(model: TransformersModel, prompt, max_new_tokens: int) -> str:
    """transformers' own greedy generate of one prompt, no batch, no padding: the reference."""
    ids = torch.tensor([model.encode(prompt)])
    out = model.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                               do_sample=False, top_p=None, top_k=None, pad_token_id=model.tokenizer.pad_token_id)
    return model.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_batched_greedy_generation_equals_each_prompt_alone_without_padding(smollm2, two_articles):
    prompts = _gen_prompts(two_articles)
    lengths = [len(smollm2.encode(p)) for p in prompts]
    assert max(lengths) > 10 * min(lengths)  # very different lengths: the old way padded most rows
    config = GenerationConfig(max_new_tokens=24)
    alone = [_alone(smollm2, p, 24) for p in prompts]
    assert len(set(alone)) == len(alone) and all(alone)
    batched = _with(smollm2, batch_size=3)  # a chunk of three and a chunk of one
    assert batched.generate(prompts, config) == alone
    c = batched.counts
    assert c.generate_prompts == 4 and c.generate_prompt_tokens == sum(lengths)
    assert c.generate_prefill_rows == sum(lengths)  # no padding row
    padded = _with(smollm2, batch_size=3, prefill="padded")
    assert padded.generate(prompts, config) == alone
    assert padded.counts.generate_prefill_rows == 3 * max(lengths[:3]) + lengths[3]
    # caller's order kept when chunks are length-sorted
    assert _with(smollm2, batch_size=2, prefill="sorted").generate(prompts, config) == alone


def test_sampled_generation_is_seeded(smollm2, two_articles):
    prompts = _gen_prompts(two_articles)
    m = _with(smollm2, batch_size=4)
    a = m.generate(prompts, GenerationConfig(max_new_tokens=16, temperature=1.0, seed=3))
    b = m.generate(prompts, GenerationConfig(max_new_tokens=16, temperature=1.0, seed=3))
    c = m.generate(prompts, GenerationConfig(max_new_tokens=16, temperature=1.0, seed=4))
    assert a == b
    assert a != c
    # seeded per prompt: each prompt samples what it samples alone, in any batch and with any padding
    config = GenerationConfig(max_new_tokens=16, temperature=1.0, seed=3)
    alone = [_with(smollm2, batch_size=1).generate([p], config)[0] for p in prompts]
    assert a == alone
    assert _with(smollm2, batch_size=4, prefill="padded").generate(prompts, config) == a
    assert _with(smollm2, batch_size=3, prefill="sorted").generate(prompts[::-1], config) == a[::-1]


def test_prompt_seeds_differ_between_prompts_and_repeat_for_one():
    from judgelab.models.transformers_backend import prompt_seed

    assert prompt_seed(3, [1, 2, 3]) == prompt_seed(3, [1, 2, 3])
    assert len({prompt_seed(3, [1, 2, 3]), prompt_seed(3, [1, 2, 4]), prompt_seed(4, [1, 2, 3]),
                prompt_seed(3, [12, 3])}) == 4
    assert prompt_seed(None, [1, 2]) is None


def test_two_prompts_of_one_call_draw_independent_noise(smollm2):
    """The same prompt twice in one call is sampled alike (its own seed), two prompts that differ only in
    their last token are not driven by one noise stream: over 40 seeds their first sampled tokens agree
    about as often as independent draws would (0 of 40 measured; with one seed for the call: 30 of 40)."""
    a, b = "The weather today is", "The weather today was"
    config = lambda s: GenerationConfig(max_new_tokens=1, temperature=1.5, seed=s)  # noqa: E731
    same = [smollm2.generate([a, a], config(s)) for s in range(4)]
    assert all(x == y for x, y in same)
    firsts = [smollm2.generate([a, b], config(s)) for s in range(40)]
    assert sum(x == y for x, y in firsts) < 15, firsts  # 0 of 40 measured; one shared seed gave 30


def test_gumbel_sampler_draws_from_the_tempered_softmax():
    """The Gumbel-max draws follow softmax(logits / T): a chi-square test on 20,000 draws of 4 tokens."""
    from scipy import stats

    from judgelab.models.transformers_backend import GumbelSampler

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    for t in (0.5, 1.0, 2.0):
        sampler = GumbelSampler(t, [11], "cpu")
        draws = [int(sampler(None, logits).argmax()) for _ in range(20000)]
        counts = np.bincount(draws, minlength=4)
        expected = torch.softmax(logits[0].double() / t, dim=0).numpy() * counts.sum()
        assert stats.chisquare(counts, expected).pvalue > 1e-3, (t, counts, expected)
    with pytest.raises(ValueError, match="temperature > 0"):
        GumbelSampler(0.0, [1])
    with pytest.raises(ValueError, match="1 generators for 2 rows"):
        GumbelSampler(1.0, [1])(None, torch.zeros(2, 4))

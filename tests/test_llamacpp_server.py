"""The OpenAI-compatible backend against a real llama.cpp server running the smollm2 zoo GGUF.

Needs llama-cpp-python's server (``pip install 'judgelab[server]'``) and the offline smollm2 weights. The
parity test also loads the same GGUF with the transformers backend (dequantised to float32) and compares
the renormalised option probabilities: Q4 kernels in llama.cpp and dequantised fp32 matmuls in torch differ a
little. Measured on CPU (llama-cpp-python 0.3.36): |P("1") difference| <= 0.016 on chat prompts, identical
prompt token counts (the GGUF's chat template renders as transformers' does), same top token.
"""

from __future__ import annotations

import importlib.util
import os
import time

import pytest
from conftest import in_ci, require

from judgelab.models.base import GenerationConfig
from judgelab.models.zoo import ZooError, model_cache_dir, zoo_entry

pytestmark = pytest.mark.server

require(importlib.util.find_spec("llama_cpp") is not None,
        "llama-cpp-python is not installed (pip install 'judgelab[server]')", allow_module_level=True)

from judgelab.models.llamacpp_server import ServerError, serve_gguf  # noqa: E402
from judgelab.models.openai_backend import OpenAICompatibleModel  # noqa: E402

ZOO_NAME = "smollm2-135m-instruct"
SYS = "You are a helpful assistant and a careful judge of summaries."
ARTICLE = (
    "The city council voted on Tuesday to expand the bike lane network by 40 kilometres over the next three "
    "years, citing a rise in cycling commuters and a drop in traffic accidents where lanes already exist."
)
GOOD = "The council approved 40 km of new bike lanes over three years."
BAD = "A council meeting happened on Tuesday."


def judge_prompt(first: str, second: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYS},
        {"role": "user", "content": f"Article:\n{ARTICLE}\n\nSummary 1: {first}\nSummary 2: {second}\n\n"
                                    "Which summary is better? Answer with only 1 or 2."},
    ]


CHAT_PROMPTS = [
    judge_prompt(GOOD, BAD),
    judge_prompt(BAD, GOOD),
    [{"role": "user", "content": "Which number is larger, 3 or 7? Answer 1 if the first, 2 if the second. "
                                 "Answer with 1 or 2 only."}],
    [{"role": "user", "content": "Say 1."}],
]
COMPLETION_PROMPTS = ["1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 1", "Count: 2, 1, 2, 1, 2, 1, 2,"]


@pytest.fixture(scope="module")
def gguf():
    try:
        return zoo_entry(ZOO_NAME).gguf_path()
    except ZooError as err:
        require(False, f"offline smollm2 weights not installed: {err}")


@pytest.fixture(scope="module")
def base_url(gguf):
    t0 = time.perf_counter()
    with serve_gguf(gguf, n_ctx=2048) as url:
        print(f"\nllama.cpp server up in {time.perf_counter() - t0:.1f}s at {url}")
        yield url


@pytest.fixture(scope="module")
def chat_model(base_url):
    return OpenAICompatibleModel.for_zoo(ZOO_NAME, base_url, timeout=60, max_concurrency=2)


@pytest.fixture(scope="module")
def chat_results(chat_model):
    return chat_model.option_probs(CHAT_PROMPTS, ["1", "2"])


@pytest.fixture(scope="module")
def transformers_model(gguf):
    entry = zoo_entry(ZOO_NAME)
    converted = model_cache_dir() / "converted" / f"{entry.name}-{entry.gguf_sha256[:16]}" / "config.json"
    if not converted.is_file() and not os.environ.get("JUDGELAB_RUNSLOW") and not in_ci():  # CI converts
        pytest.skip("the transformers copy of smollm2 is not converted yet (a 30-100 s one-off); "
                    "set JUDGELAB_RUNSLOW=1 to convert it here")
    from judgelab.models import get_model

    return get_model(f"zoo:{ZOO_NAME}", device="cpu")


def test_fingerprint_names_the_weights(chat_model):
    fp = chat_model.fingerprint
    assert fp["backend"] == "openai-compatible" and fp["base_url"] == "localhost" and fp["chat"] is True
    assert fp["gguf_sha256"] == zoo_entry(ZOO_NAME).gguf_sha256 and fp["quantisation"] == "Q4_1"
    assert chat_model.server_models()  # the server lists its model


def test_generate_summary(chat_model):
    prompt = [{"role": "user", "content": f"Summarise this article in one sentence.\n\n{ARTICLE}"}]
    [text] = chat_model.generate([prompt], GenerationConfig(max_new_tokens=24))
    assert text.strip(), "empty summary"
    assert len(chat_model.generate(["Write one word."], GenerationConfig(max_new_tokens=5))[0]) > 0


def test_chat_option_probs(chat_model, chat_results):
    results = chat_results
    for r in results:
        assert 0 < r.inside <= 1 + 1e-6
        assert all(p >= 0 for p in r.raw)
        assert r.extra["top_token"]
    assert results[-1].argmax == "1" and results[-1].probs["1"] > 0.8  # "Say 1."
    again = chat_model.option_probs(CHAT_PROMPTS, ["1", "2"])  # llama.cpp's prefix cache changes nothing
    assert [p for r in again for p in r.raw] == pytest.approx([p for r in results for p in r.raw], abs=1e-6)


def test_completions_option_probs(base_url):
    m = OpenAICompatibleModel.for_zoo(ZOO_NAME, base_url, chat=False, timeout=60)
    counting, _ = m.option_probs(COMPLETION_PROMPTS, ["1", "2"])
    assert counting.argmax == "2" and counting.raw[1] > 0.9 and counting.inside <= 1 + 1e-6


def test_parity_with_transformers(chat_results, base_url, transformers_model):
    ll_chat = chat_results
    tf_chat = transformers_model.option_probs(CHAT_PROMPTS, ["1", "2"])
    ll_text = OpenAICompatibleModel.for_zoo(ZOO_NAME, base_url, chat=False).option_probs(COMPLETION_PROMPTS, ["1", "2"])
    tf_text = transformers_model.option_probs(COMPLETION_PROMPTS, ["1", "2"])
    print("\n  llama.cpp raw          transformers raw        P('1') llama / tf   |diff|")
    worst = 0.0
    for ll, tf in zip(ll_chat + ll_text, tf_chat + tf_text):
        diff = abs(ll.probs["1"] - tf.probs["1"])
        worst = max(worst, diff) if ll.exact else worst
        print(f"  {ll.raw[0]:.4f} {ll.raw[1]:.4f}   {tf.raw[0]:.4f} {tf.raw[1]:.4f}   "
              f"{ll.probs['1']:.4f} / {tf.probs['1']:.4f}   {diff:.4f}   top {ll.extra['top_token']!r}/"
              f"{tf.extra['top_token']!r}")
        assert ll.raw == pytest.approx(tf.raw, abs=0.03)  # measured <= 0.015
        assert ll.extra["top_token"].strip() == tf.extra["top_token"].strip()
        if not ll.exact or tf.inside < 1e-3:
            continue  # an option fell outside the top 20 (the last prompt): renormalising means nothing
        assert diff < 0.1, (ll, tf)  # measured <= 0.016
        assert ll.argmax == tf.argmax
    print(f"  worst |P('1') difference| where exact = {worst:.4f}")


def test_serve_gguf_reports_a_dead_server(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"this is not a GGUF file" * 100)
    t0 = time.perf_counter()
    with pytest.raises(ServerError, match="exited with code") as info:
        with serve_gguf(junk, startup_timeout=60):
            pass
    assert "log tail" in str(info.value) and time.perf_counter() - t0 < 60

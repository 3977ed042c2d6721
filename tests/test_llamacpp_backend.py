"""The in-process llama.cpp runtime against the transformers runtime on the smollm2 zoo GGUF.

Needs llama-cpp-python and the offline smollm2 weights (skips otherwise). The comparison tests also load the
same GGUF through the transformers backend (the session's ``smollm2`` fixture: dequantised to float32).

Tolerances, and what they were measured at on this project's CPU (llama-cpp-python 0.3.36, smollm2 Q4_1/Q8_0):

- option probabilities, llama.cpp vs transformers: ``|raw difference| <= 0.03`` (measured at most 0.012 on
  these prompts; the issue measured 0.017 on the 0.5B's benchmark prompts); the top token is the same;
- prefix reuse vs a fresh evaluation, same runtime: identical, bit for bit (the backend never evaluates a
  prompt token in a one-token batch, whose kernels give other numbers: measured up to 0.5 apart in
  next-token log-probabilities before that rule);
- log-likelihood of a one-token continuation vs the same token's next-token log-probability: ``1e-9``
  (the same logits row, read two ways); vs transformers: ``<= 0.15`` nats per token (measured 0.05).

llama.cpp runs with one thread here: the machine is shared, and llama.cpp's threads spin on barriers, so two
threads on a loaded 2-core machine run many times slower than one (measured 1 against 20 tokens/s).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from judgelab.models.base import GenerationConfig
from judgelab.models.zoo import ZooError, zoo_entry

if importlib.util.find_spec("llama_cpp") is None:
    pytest.skip("llama-cpp-python is not installed (pip install 'judgelab[server]')", allow_module_level=True)

from judgelab.models import get_model  # noqa: E402
from judgelab.models import llamacpp_backend as lb  # noqa: E402
from judgelab.store import CallStore, ReplayMiss, StoredModel, call_key  # noqa: E402

HERE = Path(__file__).resolve().parent
ZOO_NAME = "smollm2-135m-instruct"
SPEC = f"{ZOO_NAME}@llama.cpp"
SYS = "You are a helpful assistant and a careful judge of summaries."
ARTICLE = (
    "The city council voted on Tuesday to expand the bike lane network by 40 kilometres over the next three "
    "years, citing a rise in cycling commuters and a drop in traffic accidents where lanes already exist."
)
GOOD = "The council approved 40 km of new bike lanes over three years."
BAD = "A council meeting happened on Tuesday."


def judge_prompt(first: str, second: str, system: str = SYS) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": system},
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
def llm():
    try:
        zoo_entry(ZOO_NAME).gguf_path()
    except ZooError as err:
        pytest.skip(f"offline smollm2 weights not installed: {err}")
    return get_model(SPEC, n_threads=1, n_ctx=2048)


# --- strings, runtime choice, fingerprints -----------------------------------------------------------
def test_one_string_picks_the_runtime(llm):
    assert llm.name == SPEC and isinstance(llm, lb.LlamaCppModel)
    fp = llm.fingerprint
    entry = zoo_entry(ZOO_NAME)
    assert fp["backend"] == "llama.cpp" and fp["llama_cpp_python"] == lb.llama_cpp_version()
    assert fp["gguf_sha256"] == entry.gguf_sha256 and fp["chat"] is True
    # the tensor types are the file's (read from the GGUF), not a label from its name
    from judgelab.models.zoo import gguf_tensor_types, summarise_tensor_types

    assert fp["tensor_types"] == summarise_tensor_types(gguf_tensor_types(entry.gguf_path()))
    assert set(fp["tensor_types"]) == {"Q4_1", "Q8_0"}
    # the other spellings load the same runtime with the same fingerprint
    for spec, kw in [(f"llamacpp:{ZOO_NAME}", {}), (f"llamacpp:zoo:{ZOO_NAME}", {}),
                     (ZOO_NAME, {"runtime": "llama.cpp"}),
                     (f"zoo:{ZOO_NAME}", {"runtime": "auto", "device": "cpu"})]:
        other = get_model(spec, n_threads=1, n_ctx=512, **kw)
        assert other.fingerprint_id == llm.fingerprint_id, spec
        other.llm.close()


def test_runtime_strings_refuse_what_llamacpp_cannot_run():
    with pytest.raises(ValueError, match="unknown runtime"):
        get_model(ZOO_NAME, runtime="vllm")
    with pytest.raises(ZooError, match="neither a zoo name"):
        get_model("llamacpp:HuggingFaceTB/SmolLM2-135M-Instruct")
    with pytest.raises(ZooError, match="neither a zoo name"):
        get_model("openai:gpt-4o-mini", runtime="llama.cpp")
    with pytest.raises(ValueError, match="runs on the CPU"):
        get_model(SPEC, device="cuda")
    from judgelab.models import validate_spec

    assert validate_spec(SPEC) == "llama.cpp" and validate_spec(f"llamacpp:{ZOO_NAME}") == "llama.cpp"
    with pytest.raises(ZooError):
        validate_spec("nosuchmodel@llama.cpp")


def test_preferred_runtime_follows_the_measurement():
    assert lb.preferred_runtime("generate", "cpu") == "llama.cpp"
    assert lb.preferred_runtime("generate", "cuda") == "transformers"
    assert lb.preferred_runtime("option_probs", "cpu") == "transformers"
    assert lb.preferred_runtime("train", "cpu") == "transformers"
    with pytest.raises(ValueError, match="unknown kind"):
        lb.preferred_runtime("embed", "cpu")


def test_records_are_kept_apart_by_runtime(llm, smollm2, tmp_path):
    """Same weights, two runtimes: two fingerprints, two sets of keys, two names; replay finds each."""
    assert smollm2.fingerprint["backend"] == "transformers" and smollm2.name == ZOO_NAME
    assert llm.fingerprint["gguf_sha256"] == smollm2.fingerprint["gguf_sha256"]
    assert llm.fingerprint_id != smollm2.fingerprint_id
    prompts = CHAT_PROMPTS[:2]
    assert {call_key(llm.fingerprint_id, "option_probs", p, {"options": ["1", "2"]}) for p in prompts}.isdisjoint(
        {call_key(smollm2.fingerprint_id, "option_probs", p, {"options": ["1", "2"]}) for p in prompts})
    path = tmp_path / "both.sqlite"
    with CallStore(path) as store:
        a = StoredModel(llm, store, progress=False).option_probs(prompts, ["1", "2"])
        b = StoredModel(smollm2, store, progress=False).option_probs(prompts, ["1", "2"])
        assert store.count(llm.fingerprint_id) == 2 and store.count(smollm2.fingerprint_id) == 2
        assert sorted(m["name"] for m in store.models()) == [ZOO_NAME, SPEC]
    assert a != b  # different numbers, never silently one table
    assert get_model(SPEC, store=path, replay=True, progress=False).option_probs(prompts, ["1", "2"]) == a
    assert get_model(ZOO_NAME, store=path, replay=True, progress=False).option_probs(prompts, ["1", "2"]) == b
    # runtime="auto" on replay must not guess between two stored runtimes
    with pytest.raises(ZooError, match="holds both runtimes"):
        get_model(ZOO_NAME, runtime="auto", store=path, replay=True)


# --- prompts: identical text and tokens ---------------------------------------------------------------
def test_render_and_tokens_identical_to_transformers(llm, smollm2):
    for p in CHAT_PROMPTS + COMPLETION_PROMPTS:
        assert llm.render(p) == smollm2.render(p)
        assert llm.encode(p) == smollm2.encode(p)
    # llama.cpp's own tokenizer reads the same ids from the rendered text: one vocabulary
    for p in CHAT_PROMPTS:
        text = llm.render(p).encode("utf-8")
        assert llm.llm.tokenize(text, add_bos=False, special=True) == llm.encode(p)
    assert llm.option_token_ids(["1", "2"]) == smollm2.option_token_ids(["1", "2"])


# --- judging ------------------------------------------------------------------------------------------
def test_option_probs_agree_with_transformers(llm, smollm2):
    ours = llm.option_probs(CHAT_PROMPTS + COMPLETION_PROMPTS, ["1", "2"])
    theirs = smollm2.option_probs(CHAT_PROMPTS + COMPLETION_PROMPTS, ["1", "2"])
    worst = 0.0
    for a, b in zip(ours, theirs):
        assert a.invalid_reason is None and 0 < a.inside <= 1 + 1e-6
        worst = max(worst, *(abs(x - y) for x, y in zip(a.raw, b.raw)))
        assert a.extra["top_token"].strip() == b.extra["top_token"].strip()
    print(f"\n  max |raw llama.cpp - raw transformers| = {worst:.4f} over {len(ours)} prompts")
    assert worst <= 0.03
    assert ours[3].argmax == "1" and ours[3].probs["1"] > 0.8  # "Say 1."
    assert ours[4].argmax == "2" and ours[4].raw[1] > 0.9  # counting


def test_prefix_reuse_changes_nothing_and_saves_tokens(llm):
    prompts = [judge_prompt(GOOD, BAD), CHAT_PROMPTS[2], judge_prompt(BAD, GOOD), judge_prompt(GOOD, GOOD),
               judge_prompt(BAD, BAD)]
    llm.reuse_prefix = False
    try:
        before = dict(llm.stats)
        fresh = llm.option_probs(prompts, ["1", "2"])
        fresh_eval = llm.stats["evaluated_tokens"] - before["evaluated_tokens"]
    finally:
        llm.reuse_prefix = True
    before = dict(llm.stats)
    reused = llm.option_probs(prompts, ["1", "2"])
    total = llm.stats["prompt_tokens"] - before["prompt_tokens"]
    evaluated = llm.stats["evaluated_tokens"] - before["evaluated_tokens"]
    assert fresh_eval == total == sum(len(llm.encode(p)) for p in prompts)
    shared = len(llm.encode(judge_prompt(GOOD, BAD))) - len(llm.encode([judge_prompt(GOOD, BAD)[0]]))
    assert evaluated < total - shared, (evaluated, total)  # the four judge prompts share the article once
    assert [a.raw for a in fresh] == [b.raw for b in reused]  # bit for bit (no one-token batches; module doc)
    # sorting is what makes reuse work: in the caller's order the unrelated prompt breaks the chain
    llm.sort_prompts = False
    try:
        before = dict(llm.stats)
        llm.option_probs(prompts, ["1", "2"])
        unsorted_eval = llm.stats["evaluated_tokens"] - before["evaluated_tokens"]
    finally:
        llm.sort_prompts = True
    assert evaluated < unsorted_eval
    print(f"\n  prompt tokens {total}: evaluated {evaluated} with sorted reuse, {unsorted_eval} unsorted, "
          f"{fresh_eval} without reuse")


# --- log-likelihood -----------------------------------------------------------------------------------
def test_loglikelihood_matches_next_token_and_transformers(llm, smollm2):
    import torch

    [one] = llm.loglikelihood([CHAT_PROMPTS[3]], ["1"])
    tok = llm.tokenizer("1", add_special_tokens=False)["input_ids"]
    assert one["n_tokens"] == len(tok) == 1
    lp = llm.next_token_logprobs([llm.encode(CHAT_PROMPTS[3])])[0]
    assert one["logprob"] == pytest.approx(float(lp[tok[0]]), abs=1e-9)

    cont = " The council approved new bike lanes."
    prompts = [CHAT_PROMPTS[0], COMPLETION_PROMPTS[0], CHAT_PROMPTS[1]]
    conts = [cont, "2, 13, 14", cont]
    res = llm.loglikelihood(prompts, conts)
    for p, c, r in zip(prompts, conts, res):
        ctx = llm.encode(p)
        ids = llm.tokenizer(c, add_special_tokens=False)["input_ids"]
        assert r["n_tokens"] == len(ids) and r["mean_logprob"] == pytest.approx(r["logprob"] / len(ids))
        # the same sum, token by token, from next-token log-probabilities of growing prefixes
        chain = sum(float(llm.next_token_logprobs([ctx + ids[:k]])[0][ids[k]]) for k in range(len(ids)))
        assert r["logprob"] == pytest.approx(chain, abs=1e-3)
        with torch.inference_mode():
            logits = smollm2.model(torch.tensor([ctx + ids])).logits[0, len(ctx) - 1 : -1].float()
        ref = float(torch.log_softmax(logits, -1)[torch.arange(len(ids)), torch.tensor(ids)].sum())
        print(f"\n  {c!r}: llama.cpp {r['logprob']:.4f}, transformers {ref:.4f}")
        assert abs(r["logprob"] - ref) <= 0.15 * len(ids)
        assert r["logprob"] < 0
    with pytest.raises(ValueError, match="2 prompts but 1 continuations"):
        llm.loglikelihood(prompts[:2], conts[:1])
    with pytest.raises(ValueError, match="has no tokens"):
        llm.loglikelihood(prompts[:1], [""])


def test_loglikelihood_default_says_which_backend_lacks_it(tmp_path):
    from judgelab.models.base import Model

    class NoLL(Model):
        name = "no-ll"
        fingerprint = {"backend": "test"}

        def generate(self, prompts, config=GenerationConfig()):
            return [""] * len(prompts)

        def option_probs(self, prompts, options):
            return []

    with pytest.raises(NotImplementedError, match="no-ll"):
        NoLL().loglikelihood(["a"], ["b"])


# --- generation ---------------------------------------------------------------------------------------
SUMMARISE = [[{"role": "user", "content": f"Summarise this article in one sentence.\n\n{ARTICLE}"}],
             [{"role": "user", "content": "Write one word."}],
             "The capital of France is"]


def test_generate_greedy_is_deterministic_and_batch_independent(llm, smollm2):
    cfg = GenerationConfig(max_new_tokens=16)
    a = llm.generate(SUMMARISE, cfg)
    assert all(isinstance(t, str) for t in a) and a[0].strip()
    assert llm.generate(SUMMARISE[::-1], cfg)[::-1] == a  # order and company do not change an answer
    assert llm.generate([SUMMARISE[2]], cfg) == [a[2]]
    ids = llm.generate_ids(llm.encode(SUMMARISE[2]), cfg)
    assert len(ids) <= 16 and llm.tokenizer.decode(ids, skip_special_tokens=True) == a[2]
    assert "Paris" in a[2]
    # the same greedy start as transformers on a prompt without near-ties
    tf = smollm2.generate([SUMMARISE[2]], GenerationConfig(max_new_tokens=4))[0]
    assert a[2].startswith(tf) or tf.startswith(a[2][: len(tf)]), (a[2], tf)


def test_generate_stops_and_limits(llm):
    cfg = GenerationConfig(max_new_tokens=24, stop=(".",))
    [text] = llm.generate([SUMMARISE[0]], cfg)
    assert "." not in text
    [full] = llm.generate([SUMMARISE[0]], GenerationConfig(max_new_tokens=24))
    assert full.startswith(text)
    counting = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"
    ids = llm.generate_ids(llm.encode(counting), GenerationConfig(max_new_tokens=5))
    assert len(ids) == 5  # counting does not end: exactly max_new_tokens
    assert llm.generate_ids(llm.encode(counting), GenerationConfig(max_new_tokens=0)) == []
    with pytest.raises(lb.LlamaCppError, match="more than the llama.cpp context"):
        llm.generate([counting], GenerationConfig(max_new_tokens=5000))


def test_sampling_is_seeded_per_prompt(llm):
    hot = GenerationConfig(max_new_tokens=12, temperature=1.0, seed=7)
    a = llm.generate(SUMMARISE[:2], hot)
    assert llm.generate(SUMMARISE[:2], hot) == a
    assert llm.generate([SUMMARISE[1]], hot) == [a[1]]  # a prompt's sample does not depend on its company
    others = {llm.generate([SUMMARISE[0]], GenerationConfig(max_new_tokens=12, temperature=1.0, seed=s))[0]
              for s in range(1, 6)}
    assert len(others) > 1  # different seeds, different samples


# --- store, replay, kill -9 ---------------------------------------------------------------------------
GEN_PROMPTS = [[{"role": "user", "content": f"Give one short reason to like the number {i}."}] for i in range(40)]
GEN_LABELS = [f"gen/{i}" for i in range(40)]
GEN_CFG = GenerationConfig(max_new_tokens=6)

RUNNER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_llamacpp_backend import GEN_PROMPTS, GEN_LABELS, GEN_CFG, SPEC
    from judgelab.models import get_model
    from judgelab.store import CallStore, StoredModel

    store = CallStore({path!r})
    model = StoredModel(get_model(SPEC, n_threads=1, n_ctx=512), store, progress=False)
    model.generate_chunk_size = 2
    print("started", flush=True)
    model.generate(GEN_PROMPTS, GEN_CFG, labels=GEN_LABELS)
    store.close()
    print("finished", flush=True)
    """
)


def rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]


def test_store_kill_9_mid_run_then_resume_and_replay(llm, tmp_path):
    path = tmp_path / "killed.sqlite"
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(tests=str(HERE), path=str(path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.time() + 300
        n = 0
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"runner ended before it was killed: {proc.communicate()}")
            if path.exists():
                try:
                    n = rows(path)
                except sqlite3.OperationalError:  # schema not created yet
                    n = 0
                if n >= 4:
                    break
            time.sleep(0.05)
        assert n >= 4, "runner stored nothing within 300 s"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    survived = rows(path)
    assert 4 <= survived < len(GEN_PROMPTS), survived
    assert survived % 2 == 0, f"{survived} rows: a chunk was half written"

    with CallStore(path) as store:
        before = llm.stats["prompts"]
        resumed = StoredModel(llm, store, progress=False).generate(GEN_PROMPTS, GEN_CFG, labels=GEN_LABELS)
        assert llm.stats["prompts"] - before == len(GEN_PROMPTS) - survived  # only the missing ones computed
        assert store.count(llm.fingerprint_id, "generate") == len(GEN_PROMPTS)
    assert all(isinstance(t, str) for t in resumed)
    # replay loads no weights and returns exactly what was stored, including what the killed run stored
    replayed = get_model(SPEC, store=path, replay=True, progress=False).generate(GEN_PROMPTS, GEN_CFG)
    assert replayed == resumed
    with pytest.raises(ReplayMiss):
        get_model(SPEC, store=path, replay=True, progress=False).generate(GEN_PROMPTS[:1], GenerationConfig(8))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        total, distinct = conn.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM calls").fetchone()
        assert total == distinct == len(GEN_PROMPTS)
        keys = {k.hex() for (k,) in conn.execute("SELECT key FROM calls")}
    assert keys == {call_key(llm.fingerprint_id, "generate", p, GEN_CFG.as_dict()) for p in GEN_PROMPTS}


def test_log_softmax_is_exact_on_extremes():
    x = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    out = lb._log_softmax(x)
    assert np.allclose(np.exp(out).sum(-1), 1.0)
    assert out[0, 0] == pytest.approx(0.0) and out[1, 0] == pytest.approx(-np.log(3))


def test_generation_benchmark_table_merges_by_method_and_model(tmp_path):
    import importlib.util as iu

    spec = iu.spec_from_file_location("generation_throughput", HERE.parent / "benchmarks" / "generation_throughput.py")
    bench = iu.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gen.csv"
    bench.write_rows([{"method": "a", "model": "m", "tokens_per_s": 1.0},
                      {"method": "b", "model": "m", "tokens_per_s": 2.0}], out)
    table = bench.write_rows([{"method": "a", "model": "m", "tokens_per_s": 3.0},
                              {"method": "a", "model": "n", "tokens_per_s": 4.0}], out)
    got = {(r.method, r.model): r.tokens_per_s for r in table.itertuples()}
    assert got == {("b", "m"): 2.0, ("a", "m"): 3.0, ("a", "n"): 4.0}  # replaced, kept, added
    assert set(bench.METHODS) == {"judgelab-transformers", "judgelab-llama.cpp", "judgelab-llama.cpp-batched",
                                  "llama-cpp-python"}
    med = bench.median_row([{"tokens_per_s": 3.0, "k": "a"}, {"tokens_per_s": 1.0, "k": "b"},
                            {"tokens_per_s": 2.0, "k": "c"}])
    assert med["k"] == "c" and med["runs_tokens_per_s"] == "3;1;2"
    row = bench.measure("x", "m", lambda: (10, 5), 1, 1)
    assert row["new_tokens"] == 5 and row["prompt_tokens"] == 10 and row["tokens_per_s"] > 0


@pytest.mark.slow
def test_qwen_half_billion_agrees_across_runtimes():
    """The 0.5B Qwen (a different vocabulary and chat template; tensors mostly Q5_0/Q8_0): same text, same
    ids, option probabilities within the same tolerance (the issue measured 0.017 on its benchmark prompts)."""
    name = "qwen2.5-coder-0.5b-instruct"
    try:
        zoo_entry(name).gguf_path()
    except ZooError as err:
        pytest.skip(f"offline weights of {name} not installed: {err}")
    ll = get_model(f"{name}@llama.cpp", n_threads=1, n_ctx=2048)
    tf = get_model(f"zoo:{name}", device="cpu")
    prompts = CHAT_PROMPTS + COMPLETION_PROMPTS
    for p in prompts:
        assert ll.render(p) == tf.render(p) and ll.encode(p) == tf.encode(p)
    assert ll.option_token_ids(["1", "2"]) == tf.option_token_ids(["1", "2"])
    a, b = ll.option_probs(prompts, ["1", "2"]), tf.option_probs(prompts, ["1", "2"])
    worst = max(abs(x - y) for r, s in zip(a, b) for x, y in zip(r.raw, s.raw))
    print(f"\n  qwen 0.5B: max |raw llama.cpp - raw transformers| = {worst:.4f} over {len(prompts)} prompts")
    assert worst <= 0.03
    assert [r.argmax for r in a] == [s.argmax for s in b]


def test_batched_decoding_is_company_independent_and_keyed_apart(llm):
    batched = get_model(SPEC, n_threads=1, n_ctx=2048, decode_batch=4)
    assert batched.fingerprint["batched_decode"] is True and llm.fingerprint["batched_decode"] is False
    assert batched.fingerprint_id != llm.fingerprint_id  # other numbers, other keys
    prompts = SUMMARISE + GEN_PROMPTS[:3]
    ids = [batched.encode(p) for p in prompts]
    cfg = GenerationConfig(max_new_tokens=10)
    four = batched.generate_ids_batched(ids, cfg)
    batched.decode_batch = 2
    two = batched.generate_ids_batched(ids, cfg)
    alone = [batched.generate_ids_batched([x], cfg)[0] for x in ids[:2]]
    assert four == two and alone == four[:2]  # neither the company nor the batch width changes an answer
    assert all(0 < len(o) <= 10 for o in four)
    sequential = [llm.generate_ids(x, cfg) for x in ids]
    assert [o[:1] for o in four] == [o[:1] for o in sequential]  # same prefill: the same first token
    # text, stop strings and limits as the sequential path
    [text] = batched.generate([SUMMARISE[0]], GenerationConfig(max_new_tokens=24, stop=(".",)))
    assert "." not in text and text
    assert batched.generate_ids_batched(ids[:2], GenerationConfig(max_new_tokens=0)) == [[], []]
    hot = GenerationConfig(max_new_tokens=8, temperature=1.0, seed=3)
    assert batched.generate(prompts[:3], hot) == batched.generate(prompts[:3], hot)
    with pytest.raises(ValueError, match="decode_batch"):
        lb.LlamaCppModel(llm.llm, llm.tokenizer, name="x", fingerprint={}, chat=True, decode_batch=0)
    batched.llm.close()


def test_server_launcher_without_extra_buffers_agrees_with_in_process(llm, monkeypatch):
    """``python -m judgelab.models.llamacpp_backend serve`` is llama_cpp.server with extra buffer types off
    (the default build's AMX path dies with SIGILL here); its answers equal the in-process runtime's."""
    import judgelab.models.llamacpp_server as ls
    from judgelab.models.openai_backend import OpenAICompatibleModel

    cmd = ls.server_command("model.gguf", port=1)
    assert cmd[1:4] == ["-m", "judgelab.models.llamacpp_backend", "serve"] and "llama_cpp.server" not in cmd
    with ls.serve_gguf(zoo_entry(ZOO_NAME).gguf_path(), n_ctx=1024, n_threads=1) as url:
        served = OpenAICompatibleModel.for_zoo(ZOO_NAME, url, timeout=120, max_attempts=1)
        got = served.option_probs(CHAT_PROMPTS[2:], ["1", "2"])
    ours = llm.option_probs(CHAT_PROMPTS[2:], ["1", "2"])
    for a, b in zip(got, ours):
        assert a.raw == pytest.approx(b.raw, abs=1e-6)


def test_any_gguf_file_by_path(llm, tmp_path):
    """``llamacpp:/path/file.gguf``: named after the file, fingerprinted by its sha256, chat from its template;
    replay finds it under the name get_model gives the same string."""
    path = zoo_entry(ZOO_NAME).gguf_path()
    m = get_model(f"llamacpp:{path}", n_threads=1, n_ctx=512)
    assert m.name == f"{path.stem}@llama.cpp" and m.chat is True and m.fingerprint["chat"] is True
    assert m.fingerprint["gguf_sha256"] == zoo_entry(ZOO_NAME).gguf_sha256 and m.fingerprint["hub_id"] is None
    assert m.render(CHAT_PROMPTS[3]) == llm.render(CHAT_PROMPTS[3])
    store = tmp_path / "file.sqlite"
    got = get_model(f"llamacpp:{path}", store=store, n_threads=1, n_ctx=512, progress=False).option_probs(
        CHAT_PROMPTS[3:], ["1", "2"])
    assert get_model(f"llamacpp:{path}", store=store, replay=True, progress=False).option_probs(
        CHAT_PROMPTS[3:], ["1", "2"]) == got
    with pytest.raises(ZooError, match="no GGUF file"):
        get_model(f"llamacpp:{tmp_path / 'missing.gguf'}")
    m.llm.close()


def test_thread_count_does_not_change_the_numbers(llm):
    two = get_model(SPEC, n_threads=2, n_ctx=1024)
    assert two.fingerprint_id == llm.fingerprint_id  # threads are not in the fingerprint, so they must not matter
    assert [o.raw for o in two.option_probs(CHAT_PROMPTS[2:], ["1", "2"])] == \
           [o.raw for o in llm.option_probs(CHAT_PROMPTS[2:], ["1", "2"])]
    two.llm.close()

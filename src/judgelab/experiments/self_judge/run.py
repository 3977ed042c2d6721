"""The Self-J pipeline by profile and stage: ``judgelab run self-judge --profile ci|book|gpu|api [--live]``.

Profiles (:data:`SELF_JUDGE_PROFILES`, this chapter's own table; the other chapters' are in
:mod:`judgelab.profiles`):

========  ================================================================================================
``ci``    live and tiny (seconds): smollm2 in llama.cpp answers 3 instructions twice, 16 new tokens
``book``  replay of the committed stores under ``results/self_judge/stores`` (``--live`` or
          ``JUDGELAB_LIVE=1`` computes what they lack: how they were made)
``gpu``   full scale on CUDA (hub models, all instructions, best-of-32); edit the model names
``api``   as ``book`` with an OpenAI model as the rater of best-of-N (``OPENAI_API_KEY``)
========  ================================================================================================

Stages (:data:`STAGES`), each resumable through the stores; later stages read what earlier ones stored:

* ``speed`` -- tokens/s of the candidate policies (``policy_speed.csv``; live only);
* ``answers`` -- the policy's seeded samples: training instructions x ``train_samples``, then held-out x
  ``best_of_n`` (store ``stores/<policy>-<hash>.sqlite``; ``answers_summary.csv``, ``refused_instructions.csv``);
* ``labels`` -- the judge model (the policy's weights in transformers) rates each stored training answer with
  the reference; cosine; combined scores; the label (``train_labels.csv``). Uses whatever answers are stored,
  so it can run while ``answers`` still runs;
* ``evaluate`` -- the untrained methods on the 640 GPT-4-scored answers (``eval_scores.csv``,
  ``pearson.csv``, ``pearson_paper.csv``, ``selective_gpt4.csv``, ``selective_curves.csv``);
* ``perplexity`` -- the perplexity baseline under the policy (llama.cpp), joined into the tables above;
* ``train`` -- the judge variants (adapters git-ignored; records in the judge store, ``training_runs.csv``,
  ``training_log.csv``);
* ``evaluate_trained`` -- the trained judges on the 640, with and without reference (``*_all.csv``);
* ``best_of_n`` -- picks among the held-out samples, rated by another judge; selective following on the
  policy's own held-out answers with a proxy quality.

Making the book stores (CPU, 1 thread per process; every command resumes where the last one stopped)::

    judgelab run self-judge --profile book --stage answers --live      # hours on 2 shared cores
    judgelab run self-judge --profile book --stage evaluate --live     # 640 x 2 judge prompts
    judgelab run self-judge --profile book --stage perplexity labels train evaluate_trained best_of_n --live
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from judgelab.data.self_judge import Loaded, evaluation_answers, training_instructions
from judgelab.experiments import open_models as om
from judgelab.experiments.self_judge import best_of_n as bon
from judgelab.experiments.self_judge import evaluation as ev_mod
from judgelab.experiments.self_judge import policy as pol
from judgelab.experiments.self_judge import selective as sel
from judgelab.experiments.self_judge import selfeval as sev
from judgelab.experiments.self_judge import training as tr
from judgelab.experiments.self_judge.training import PAPER_TRAIN
from judgelab.models.base import GenerationConfig
from judgelab.paths import results_path, write_csv
from judgelab.profiles import hardware
from judgelab.store import CallStore, StoredModel

STAGES: tuple[str, ...] = ("speed", "answers", "labels", "evaluate", "perplexity", "train", "evaluate_trained",
                           "best_of_n")


@dataclass(frozen=True)
class SelfJudgeProfile:
    """Sizes and models of the Self-J chapter (issue 19)."""

    name: str
    #: the model that answers the instructions (a model string: the llama.cpp runtime, fast at generating)
    policy: str
    #: instructions the judge trains on, and samples of each
    n_train: int
    train_samples: int
    #: held-out instructions (best-of-N, selective following on the policy's own answers) and N
    n_heldout: int
    best_of_n: int
    max_new_tokens: int = 256
    temperature: float = 0.7
    seed: int = 0
    replay: bool = False
    n_threads: int = 1
    #: candidate policies whose speed the ``speed`` stage measures, and on how many instructions
    speed_candidates: tuple[str, ...] = ()
    speed_instructions: int = 4
    #: the same weights as the policy, in the runtime that judges fastest and that trains (transformers):
    #: it rates the policy's answers (self-evaluation) and the 640 evaluation answers; None = the policy
    judge: str | None = None
    #: the combined training score (our choice: the paper's formula is unpublished; the others are columns too)
    combination: str = "mean"
    #: evaluation questions (each has 4 answers) the untrained methods are scored on: the shortest ones of
    #: Vicuna-bench (the ci profile); None: all 160 questions, 640 answers
    eval_questions: int | None = None
    #: judge variants trained (:data:`.training.VARIANTS`), their LoRA/optimiser settings (None: the paper's)
    variants: tuple[str, ...] = ("self_j", "cosine_only", "selfeval_only", "no_distill")
    train_config: object | None = None
    #: best-of-N: the picker (a trained variant's reference-free judge, or None: the untrained judge) and the
    #: rater, a different model (the strongest zoo judge; ``api``: an OpenAI model)
    bon_picker: str | None = "self_j"
    bon_rater: str = "qwen2.5-coder-1.5b-instruct"
    #: training answers whose teacher prompt is longer are left out of judge training (counted): memory of
    #: the backward pass grows with the square of the length (book: 8 of the 400 are longer than 2,048
    #: tokens, the longest 6,269; at micro-batch 1 the training process reached 18 GB by step 3)
    max_train_tokens: int | None = None
    #: llama.cpp batch for judging: a continuation scored for perplexity must fit in one batch
    judge_n_batch: int = 4096
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def generation(self) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=self.max_new_tokens, temperature=self.temperature)

    @property
    def judge_model(self) -> str:
        return self.judge or self.policy

    def as_record(self) -> dict[str, object]:
        return {"profile": self.name, "policy": self.policy, "n_train": self.n_train,
                "train_samples": self.train_samples, "n_heldout": self.n_heldout, "best_of_n": self.best_of_n,
                "max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "seed": self.seed,
                "judge": self.judge_model}


SMOLLM2 = "smollm2-135m-instruct@llama.cpp"
QWEN05 = "qwen2.5-coder-0.5b-instruct@llama.cpp"

SELF_JUDGE_PROFILES: dict[str, SelfJudgeProfile] = {
    "ci": SelfJudgeProfile("ci", SMOLLM2, n_train=3, train_samples=2, n_heldout=2, best_of_n=2,
                           max_new_tokens=16, speed_candidates=(SMOLLM2,), speed_instructions=1, eval_questions=2,
                           judge="smollm2-135m-instruct", variants=("self_j", "no_distill"),
                           train_config=replace(PAPER_TRAIN, max_steps=2, batch_size=4, micro_batch_size=4),
                           bon_rater="qwen2.5-coder-0.5b-instruct"),
    # smollm2, not the 0.5B Qwen: at 1 thread on the shared 2-core machine (load 1.4-1.9) the Qwen decoded
    # 11.2 tokens/s against smollm2's 29.2 (policy_speed.csv, 160-190 tokens an answer), so 400 instructions
    # x 2 samples would take the Qwen over 3 hours, smollm2 about 1.5
    # one sample per training instruction: the book run's answers took 22 s each (median gap, 296 answers,
    # 1 thread, load 5-7 beside other runs), so the second pass (400 more) would cost another 2.5 hours; the
    # paper's 400-instruction minimum holds with one sample each
    # the judge is the policy's weights in transformers: prefill of one 1,383-token judge prompt took 19 s there
    # against 60 s in llama.cpp (1 thread, load ~6.8), and the trained judges are transformers models too
    # training one answer per forward pass (micro-batch 1; the optimiser step still sees the paper's batch of
    # 8): with micro-batches of 4 left-padded ~700-token prompts the book run's training process held 13 GB
    # (beside the CI's tests on this 24 GB machine, that thrashed it) and computed the padding too
    "book": SelfJudgeProfile("book", SMOLLM2, n_train=400, train_samples=1, n_heldout=40, best_of_n=8,
                             replay=True, speed_candidates=(SMOLLM2, QWEN05), judge="smollm2-135m-instruct",
                             train_config=replace(PAPER_TRAIN, micro_batch_size=1), max_train_tokens=2048),
    "gpu": SelfJudgeProfile("gpu", "hf:Qwen/Qwen2.5-7B-Instruct", n_train=1000, train_samples=4, n_heldout=100,
                            best_of_n=32, max_new_tokens=512, bon_rater="hf:meta-llama/Llama-3.1-8B-Instruct"),
    "api": SelfJudgeProfile("api", SMOLLM2, n_train=400, train_samples=1, n_heldout=40, best_of_n=8, replay=True,
                            judge="smollm2-135m-instruct", bon_rater="openai:gpt-4o-mini",
                            train_config=replace(PAPER_TRAIN, micro_batch_size=1), max_train_tokens=2048),
}


def self_judge_profile(name: str | SelfJudgeProfile, live: bool | None = None) -> SelfJudgeProfile:
    """The named profile; ``live`` (or ``JUDGELAB_LIVE=1``) turns a replaying profile live."""
    if isinstance(name, SelfJudgeProfile):
        prof = name
    elif name in SELF_JUDGE_PROFILES:
        prof = SELF_JUDGE_PROFILES[name]
    else:
        raise ValueError(f"unknown self-judge profile {name!r}; choose one of {list(SELF_JUDGE_PROFILES)}")
    if prof.replay and (live or (live is None and os.environ.get("JUDGELAB_LIVE") == "1")):
        prof = replace(prof, replay=False)
    return prof


def default_results_dir(profile: str) -> Path:
    """``results/self_judge`` for the committed book (and api) profile; ``results/runs/<profile>/self_judge``
    otherwise."""
    return results_path("self_judge") if profile in ("book", "api") else results_path("runs", profile, "self_judge")


# --- instructions ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Instructions:
    train: pd.DataFrame
    heldout: pd.DataFrame
    loaded: Loaded

    def refused_counts(self) -> pd.DataFrame:
        return self.loaded.refused_counts()


def instructions(prof: SelfJudgeProfile) -> Instructions:
    """The profile's training and held-out instructions, checked against the evaluation questions."""
    loaded = training_instructions()
    train, held = pol.split_instructions(loaded.rows, prof.n_train, prof.n_heldout, prof.seed)
    evaluation = evaluation_answers().rows
    pol.check_no_evaluation_overlap(pd.concat([train, held], ignore_index=True), evaluation)
    return Instructions(train, held, loaded)


# --- stores ------------------------------------------------------------------------------------------------
def store_path(model: str, results_dir: Path) -> Path:
    return om.store_path(model, results_dir)


def open_model(model: str, prof: SelfJudgeProfile, results_dir: Path, progress: bool = False, *,
               judge: bool = False) -> StoredModel:
    """``model`` behind its call store under ``<results_dir>/stores``: replayed, or live (loaded, 1 thread on
    the llama.cpp runtime; ``judge``: with the larger batch perplexity needs, which changes no number) with
    the run recorded in the store's metadata."""
    store = CallStore(store_path(model, results_dir), readonly=prof.replay, identity=om.judge_identity(model))
    if prof.replay:
        return StoredModel(None, store, replay=True, name=om.short_name(model), progress=progress)
    from judgelab.models import get_model

    kwargs: dict[str, object] = {}
    if model.endswith("@llama.cpp") or model.startswith("llamacpp:"):
        kwargs = {"n_threads": prof.n_threads, **({"n_batch": prof.judge_n_batch} if judge else {})}
    else:
        import torch

        torch.set_num_threads(prof.n_threads)
    live = get_model(model, **kwargs)
    store.set_meta(f"run:{prof.name}", {**prof.as_record(), "hardware": hardware(),
                                       "date": time.strftime("%Y-%m-%d")})
    return StoredModel(live, store, progress=progress)


# --- stages ------------------------------------------------------------------------------------------------
def stage_speed(prof: SelfJudgeProfile, results_dir: Path) -> dict[str, Path]:
    """Tokens/s of each candidate policy on the first ``speed_instructions`` training instructions (live
    only: a replaying profile keeps the committed table)."""
    path = Path(results_dir) / "policy_speed.csv"
    if prof.replay:
        return {"policy_speed.csv": path} if path.is_file() else {}
    ins = instructions(prof)
    table = pol.measure_speed(prof.speed_candidates, ins.train.head(prof.speed_instructions), prof.generation,
                              n_threads=prof.n_threads, base_seed=prof.seed)
    return {"policy_speed.csv": write_csv(table.assign(profile=prof.name), path)}


def policy_answers(prof: SelfJudgeProfile, results_dir: Path, progress: bool = True, *,
                   stored_only: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The policy's answers: training instructions x ``train_samples`` then held-out x ``best_of_n``
    (training first: they are what the judge needs). Returns (train answers, held-out answers), each with
    the instruction's columns joined. ``stored_only``: replay what the store holds, the rest marked
    ``'missing'`` (later stages can run while the generation is still going)."""
    ins = instructions(prof)
    if stored_only:
        prof = replace(prof, replay=True)
    model = open_model(prof.policy, prof, results_dir)
    kw = {"base_seed": prof.seed, "progress": progress and not stored_only, "skip_missing": stored_only}
    try:
        train = pol.generate_answers(model, ins.train, range(prof.train_samples), prof.generation,
                                     desc="train answers", **kw)
        held = pol.generate_answers(model, ins.heldout, range(prof.best_of_n), prof.generation,
                                    desc="held-out answers", **kw)
    finally:
        model.store.close()
    cols = ["source", "id", "instruction", "reference", "system_prompt"]
    return (train.merge(ins.train[cols], on=["source", "id"], how="left"),
            held.merge(ins.heldout[cols], on=["source", "id"], how="left"))


def stage_answers(prof: SelfJudgeProfile, results_dir: Path) -> dict[str, Path]:
    """Live: generate what the store lacks. Replay: summarise what it holds (the rest counted as missing)."""
    train, held = policy_answers(prof, results_dir, stored_only=prof.replay)
    ins_refused = instructions(prof).refused_counts()
    summary = pd.concat([pol.answers_summary(train).assign(split="train"),
                         pol.answers_summary(held).assign(split="heldout")], ignore_index=True)
    summary = summary.assign(policy=prof.policy, profile=prof.name, max_new_tokens=prof.max_new_tokens,
                             temperature=prof.temperature)
    out = Path(results_dir)
    return {"answers_summary.csv": write_csv(summary, out / "answers_summary.csv"),
            "refused_instructions.csv": write_csv(ins_refused, out / "refused_instructions.csv")}


def provenance(model: StoredModel, prof: SelfJudgeProfile) -> dict[str, object]:
    """Columns every table carries: the model's fingerprint id and weights sha256, the profile, and the date
    and hardware of the live run that made the store's records (from the store, not this machine)."""
    fp = model.fingerprint
    runs = [model.store.get_meta(f"run:{p}") for p in (prof.name, "book", "ci", "gpu", "api")]
    run = next((r for r in runs if r), {}) or {}
    return {"judge": model.name, "fingerprint_id": model.fingerprint_id,
            "weights_sha256": fp.get("gguf_sha256") or fp.get("weights_sha256") or fp.get("revision"),
            "profile": prof.name, "run_date": run.get("date"), "hardware": run.get("hardware")}


# --- training labels: the policy rates its own answers ---------------------------------------------------------
def training_labels(prof: SelfJudgeProfile, results_dir: Path, answers: pd.DataFrame | None = None,
                    progress: bool = True) -> pd.DataFrame:
    """Self-evaluation with the reference of every usable training answer by the policy itself (the paper's
    prompt, expected digit), the cosine with the reference (all-MiniLM-L6-v2) and every candidate combined
    score (``combined_<name>``; ``label`` is the profile's :attr:`~SelfJudgeProfile.combination`, rounded to
    the digit the judge is trained to say). Invalid self-evaluations stay, NaN, with ``valid`` False."""
    if answers is None:  # what the store holds: the generation may still be running
        answers, _ = policy_answers(prof, results_dir, progress=progress, stored_only=True)
    ok = answers[answers["status"] == "ok"].reset_index(drop=True)
    judge = open_model(prof.judge_model, prof, results_dir, progress=not prof.replay, judge=True)
    try:
        se = sev.self_eval_scores(judge, ok["instruction"].tolist(), ok["answer"].tolist(), ok["reference"].tolist(),
                                  labels=[f"selfeval/ref/{s}/{i}/{k}" for s, i, k in
                                          zip(ok["source"], ok["id"], ok["sample"])])
        prov = provenance(judge, prof)
    finally:
        judge.store.close()
    cos = sev.cosine_scores(ok["answer"].tolist(), ok["reference"].tolist())
    comb = sev.combined_table(se["score"].to_numpy(), cos)
    out = pd.concat([ok[["source", "id", "sample", "seed", "n_words"]],
                     se[["valid", "invalid_reason", "digit_mass"]], comb], axis=1)
    chosen = out[f"combined_{prof.combination}"]
    out["label"] = chosen.round().clip(0, 9).astype("Int64")
    return out.assign(combination=prof.combination, **prov)


def stage_labels(prof: SelfJudgeProfile, results_dir: Path) -> dict[str, Path]:
    t = training_labels(prof, results_dir)
    return {"train_labels.csv": write_csv(t, Path(results_dir) / "train_labels.csv")}


# --- evaluation of the untrained methods on the 640 GPT-4-scored answers ---------------------------------------
#: score columns of :func:`evaluation_scores` -> (setting, the paper's name for the method or ours)
EVAL_METHODS: dict[str, tuple[str, str]] = {
    "cosine": ("with reference", "Cosine"),
    "selfeval_ref": ("with reference", "Self-eval"),
    "selfeval_ref_cosine": ("with reference", "Self-eval + Cosine"),
    "logprob": ("without reference", "Perplexity"),
    "selfeval_free": ("without reference", "Self-eval"),
    "length_words": ("without reference", "Answer length (words)"),
}


def evaluation_rows(prof: SelfJudgeProfile) -> pd.DataFrame:
    """The evaluation answers the profile scores: all 640, or every answer (all four responding models) to the
    ``eval_questions`` Vicuna-bench questions whose judge prompts are shortest (the ci profile: seconds)."""
    ev = evaluation_answers().rows
    if prof.eval_questions is None:
        return ev
    vic = ev[ev["eval_set"] == "vicuna_eval"]
    size = (vic["question"].str.len() + vic["reference"].str.len() + vic["response"].str.len())
    longest = size.groupby(vic["question_id"]).max().sort_values(kind="stable")
    keep = set(longest.index[: prof.eval_questions])
    return ev[(ev["eval_set"] == "vicuna_eval") & ev["question_id"].isin(keep)].reset_index(drop=True)


def evaluation_scores(prof: SelfJudgeProfile, results_dir: Path) -> pd.DataFrame:
    """Every untrained method's score of each evaluation answer (:data:`EVAL_METHODS` but perplexity, which
    :func:`perplexity_scores` adds), with the validity of the judge's answers, the GPT-4 quality and the
    provenance columns. With reference first: the with-reference table is the one the paper leads with."""
    ev = evaluation_rows(prof)
    q, a, r = ev["question"].tolist(), ev["response"].tolist(), ev["reference"].tolist()
    judge = open_model(prof.judge_model, prof, results_dir, progress=not prof.replay, judge=True)
    try:
        ref = sev.self_eval_scores(judge, q, a, r, labels=[f"eval/ref/{i}" for i in ev["id"]])
        free = sev.self_eval_scores(judge, q, a, labels=[f"eval/free/{i}" for i in ev["id"]])
        prov = provenance(judge, prof)
    finally:
        judge.store.close()
    cos = sev.cosine_scores(a, r)
    out = ev[["eval_set", "id", "question_id", "model", "category", "gpt4_mean"]].copy()
    out["cosine"] = cos
    out["selfeval_ref"], out["selfeval_ref_valid"] = ref["score"], ref["valid"]
    out["selfeval_ref_digit_mass"] = ref["digit_mass"]
    out["selfeval_free"], out["selfeval_free_valid"] = free["score"], free["valid"]
    out["selfeval_free_digit_mass"] = free["digit_mass"]
    for name in sev.COMBINATIONS:
        out[f"selfeval_ref_cosine_{name}"] = sev.combined_scores(ref["score"].to_numpy(), cos, name)
    out["selfeval_ref_cosine"] = out[f"selfeval_ref_cosine_{prof.combination}"]
    out["length_words"] = ev_mod.answer_length_words(a)
    return out.assign(combination=prof.combination, **prov)


def perplexity_scores(prof: SelfJudgeProfile, results_dir: Path) -> pd.DataFrame:
    """The paper's perplexity baseline: each evaluation answer's mean log-probability per token after its
    question under the policy (the llama.cpp runtime: the one with log-likelihoods), with provenance."""
    ev = evaluation_rows(prof)
    model = open_model(prof.policy, prof, results_dir, progress=not prof.replay, judge=True)
    try:
        lp = sev.answer_logprobs(model, ev["question"].tolist(), ev["response"].tolist(),
                                 labels=[f"eval/loglik/{i}" for i in ev["id"]])
        prov = provenance(model, prof)
    finally:
        model.store.close()
    out = ev[["id"]].copy()
    out["logprob"], out["n_tokens"], out["logprob_valid"] = lp["mean_logprob"], lp["n_tokens"], lp["valid"]
    return out.assign(**{f"logprob_{k}": v for k, v in prov.items()})


def pearson_tables(scores: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pearson r of every method present in ``scores`` (per model, pooled, average) and the paper's layout."""
    combos = [f"selfeval_ref_cosine_{n}" for n in sev.COMBINATIONS]
    methods = {m: v for m, v in EVAL_METHODS.items() if m in scores.columns}
    pearson = ev_mod.pearson_table(scores, list(methods) + combos)
    prov = scores.iloc[0][["judge", "fingerprint_id", "weights_sha256", "profile", "run_date", "hardware"]].to_dict()
    return pearson.assign(**prov), ev_mod.paper_comparison(pearson, methods).assign(**prov)


def stage_evaluate(prof: SelfJudgeProfile, results_dir: Path) -> dict[str, Path]:
    out = Path(results_dir)
    scores = evaluation_scores(prof, out)
    ppl = out / "eval_perplexity.csv"
    if ppl.is_file():  # the perplexity stage ran: join its column
        p = pd.read_csv(ppl)
        scores = scores.merge(p[["id", "logprob", "n_tokens", "logprob_valid"]], on="id", how="left")
    pearson, paper = pearson_tables(scores)
    return {"eval_scores.csv": write_csv(scores, out / "eval_scores.csv"),
            "pearson.csv": write_csv(pearson, out / "pearson.csv"),
            "pearson_paper.csv": write_csv(paper, out / "pearson_paper.csv"),
            **selective_tables(scores, [m for m in EVAL_METHODS if m in scores.columns], out, "")}


def selective_tables(scores: pd.DataFrame, methods: Sequence[str], out: Path, suffix: str) -> dict[str, Path]:
    """Selective following on the GPT-4-scored answers (quality = mean GPT-4 score): per-method summary with
    intervals, and the curves (with oracle and random) to plot."""
    prov = scores.iloc[0][["judge", "fingerprint_id", "profile", "run_date", "hardware"]].to_dict()
    summary = sel.selective_summaries(scores, methods).assign(quality="gpt4_mean", **prov)
    curves = ev_mod.selective_table(scores, methods)
    return {f"selective_gpt4{suffix}.csv": write_csv(summary, out / f"selective_gpt4{suffix}.csv"),
            f"selective_curves{suffix}.csv": write_csv(curves, out / f"selective_curves{suffix}.csv")}


def stage_perplexity(prof: SelfJudgeProfile, results_dir: Path) -> dict[str, Path]:
    out = Path(results_dir)
    paths = {"eval_perplexity.csv": write_csv(perplexity_scores(prof, out), out / "eval_perplexity.csv")}
    if (out / "eval_scores.csv").is_file():  # refresh the tables with the new column
        paths.update(stage_evaluate(replace(prof, replay=True), out))
    return paths


# --- judge training and the trained judges' evaluation ---------------------------------------------------------
def labelled_answers(prof: SelfJudgeProfile, results_dir: Path) -> pd.DataFrame:
    """The training-labels table with each answer's text, instruction and reference joined (what training
    needs; the committed table keeps no text)."""
    labels = training_labels(prof, results_dir, progress=False)
    answers, _ = policy_answers(prof, results_dir, progress=False, stored_only=True)
    cols = ["source", "id", "sample", "answer", "instruction", "reference"]
    return labels.merge(answers[cols], on=["source", "id", "sample"], how="left", validate="one_to_one")


def _base_judge(prof: SelfJudgeProfile):
    import torch

    from judgelab.models import get_model

    torch.set_num_threads(prof.n_threads)
    return get_model(prof.judge_model, device="cpu")


def stage_train(prof: SelfJudgeProfile, results_dir: Path) -> dict[str, Path]:
    """Train every variant not yet trained (a finished variant's adapter is kept and skipped); the training
    records go into the judge's store (so the book replays without adapters) and ``training_runs.csv``,
    which keeps the rows of variants this run was not asked for (``--variants``)."""
    out = Path(results_dir)
    if prof.replay:
        return {k: out / k for k in ("training_runs.csv", "training_log.csv") if (out / k).is_file()}
    data = labelled_answers(prof, out)
    tm = _base_judge(prof)
    config = prof.train_config or PAPER_TRAIN
    metas, logs = [], []
    store = CallStore(store_path(prof.judge_model, out), identity=om.judge_identity(prof.judge_model))
    try:
        for v in prof.variants:
            meta = tr.train_variant(tm, data, v, out, config=config, combination=prof.combination,
                                    judge=prof.judge_model, max_tokens=prof.max_train_tokens)
            store.set_meta(f"selfj:train:{v}", meta)
            metas.append(meta)
            logs.append(pd.read_csv(tr.adapter_path(out, prof.judge_model, v) / "training_log.csv"))
    finally:
        store.close()
    runs = pd.DataFrame([{k: m[k] for k in ("variant", "description", "label", "combination", "ce_student", "kl",
                                            "kl_over", "n_examples", "n_dropped", "n_too_long", "steps", "seconds",
                                            "adapter_sha256", "date", "hardware")} for m in metas])
    runs = keep_other_variants(runs.assign(profile=prof.name, judge=prof.judge_model), out / "training_runs.csv",
                               prof.variants)
    log = keep_other_variants(pd.concat(logs, ignore_index=True), out / "training_log.csv", prof.variants)
    return {"training_runs.csv": write_csv(runs, out / "training_runs.csv"),
            "training_log.csv": write_csv(log, out / "training_log.csv")}


def trained_judge(prof: SelfJudgeProfile, results_dir: Path, variant: str, tm=None) -> StoredModel:
    """A trained variant behind the judge's store: replayed by its recorded fingerprint, or live (the base
    judge with the saved adapter merged in, loaded only when a call is missing)."""
    from judgelab.experiments.finetuning import LazyModel

    out = Path(results_dir)
    store = CallStore(store_path(prof.judge_model, out), readonly=prof.replay,
                      identity=om.judge_identity(prof.judge_model))
    meta = store.get_meta(f"selfj:train:{variant}")
    if meta is None:
        store.close()
        raise ValueError(f"variant {variant!r} is not trained in {store.path}: run the train stage first")
    name = f"{om.short_name(prof.judge_model)}-selfj-{variant}"
    if prof.replay:
        return StoredModel(None, store, replay=True, name=name, progress=False)
    base = tm if tm is not None else _base_judge(prof)
    fp = tr.trained_fingerprint(base.fingerprint, meta)
    path = tr.adapter_path(out, prof.judge_model, variant)
    lazy = LazyModel(name, fp, lambda: tr.merged_judge(base, path, meta))
    return StoredModel(lazy, store, progress=False)


def trained_scores(prof: SelfJudgeProfile, results_dir: Path) -> pd.DataFrame:
    """Each trained variant's score of each evaluation answer with the reference (``selfj_<v>_ref``, the
    teacher's prompt) and without (``selfj_<v>_free``, the student's: the judge Self-J deploys)."""
    ev = evaluation_rows(prof)
    q, a, r = ev["question"].tolist(), ev["response"].tolist(), ev["reference"].tolist()
    out = ev[["id"]].copy()
    tm = None if prof.replay else _base_judge(prof)
    for v in prof.variants:
        judge = trained_judge(prof, results_dir, v, tm)
        try:
            ref = sev.self_eval_scores(judge, q, a, r, labels=[f"eval/{v}/ref/{i}" for i in ev["id"]])
            free = sev.self_eval_scores(judge, q, a, labels=[f"eval/{v}/free/{i}" for i in ev["id"]])
        finally:
            judge.store.close()
        out[f"selfj_{v}_ref"], out[f"selfj_{v}_ref_valid"] = ref["score"], ref["valid"]
        out[f"selfj_{v}_free"], out[f"selfj_{v}_free_valid"] = free["score"], free["valid"]
    return out


def trained_methods(variants: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Score columns of the trained judges -> (setting, row name): the paper's names for the full Self-J."""
    m: dict[str, tuple[str, str]] = {}
    for v in variants:
        m[f"selfj_{v}_ref"] = ("with reference", "Self-J" if v == "self_j" else f"Self-J ({v})")
        m[f"selfj_{v}_free"] = ("without reference", "Self-J judge" if v == "self_j" else f"Self-J ({v})")
    return m


def keep_other_variants(new: pd.DataFrame, path: Path, variants: Sequence[str]) -> pd.DataFrame:
    """``new`` (rows of ``variants``, in a ``variant`` column) with the rows of every other variant already in
    the table at ``path``: a run restricted to some variants (``--variants``) adds to the committed table
    instead of replacing the variants it did not run. Rows are ordered by variant as in VARIANTS."""
    if Path(path).is_file():
        old = pd.read_csv(path)
        if "variant" in old.columns:
            new = pd.concat([old[~old["variant"].isin(set(variants))], new], ignore_index=True)
    rank = {v: i for i, v in enumerate(tr.VARIANTS)}
    return new.sort_values("variant", key=lambda c: c.map(lambda v: rank.get(v, len(rank))), kind="stable",
                           ignore_index=True)


def keep_other_variant_columns(new: pd.DataFrame, path: Path, variants: Sequence[str]) -> pd.DataFrame:
    """``eval_trained``'s wide table (one row per answer ``id``, columns ``selfj_<variant>_*``) with the
    columns of every other variant already in the table at ``path`` (see :func:`keep_other_variants`)."""
    if not Path(path).is_file():
        return new
    old = pd.read_csv(path)
    others = [v for v in tr.VARIANTS if v not in set(variants)]
    cols = [c for c in old.columns for v in others if c.startswith(f"selfj_{v}_")]
    if cols:
        if set(old["id"]) != set(new["id"]):
            raise ValueError(f"{path} scores other answers than this run ({len(old)} against {len(new)} ids): "
                             "rerun evaluate_trained for every variant")
        new = new.merge(old[["id", *cols]], on="id", how="left")
    order = [c for v in tr.VARIANTS for c in new.columns if c.startswith(f"selfj_{v}_")]
    return new[["id", *order, *[c for c in new.columns if c != "id" and c not in order]]]


def evaluated_variants(table: pd.DataFrame) -> list[str]:
    """The variants with scores in an ``eval_trained`` table, in VARIANTS order."""
    return [v for v in tr.VARIANTS if f"selfj_{v}_ref" in table.columns]


def stage_evaluate_trained(prof: SelfJudgeProfile, results_dir: Path) -> dict[str, Path]:
    out = Path(results_dir)
    t = keep_other_variant_columns(trained_scores(prof, out), out / "eval_trained.csv", prof.variants)
    paths = {"eval_trained.csv": write_csv(t, out / "eval_trained.csv")}
    if (out / "eval_scores.csv").is_file():
        scores = pd.read_csv(out / "eval_scores.csv").merge(t, on="id", how="left")
        methods = {**{m: v for m, v in EVAL_METHODS.items() if m in scores.columns},
                   **trained_methods(evaluated_variants(t))}
        pearson = ev_mod.pearson_table(scores, list(methods))
        prov = scores.iloc[0][["judge", "fingerprint_id", "weights_sha256", "profile", "run_date", "hardware"]]
        paper = ev_mod.paper_comparison(pearson, methods).assign(**prov.to_dict())
        paths["pearson_all.csv"] = write_csv(pearson.assign(**prov.to_dict()), out / "pearson_all.csv")
        paths["pearson_paper_all.csv"] = write_csv(paper, out / "pearson_paper_all.csv")
        paths.update(selective_tables(scores, list(methods), out, "_all"))
    return paths


# --- best-of-N and selective following on the policy's own held-out answers ----------------------------------
def heldout_scores(prof: SelfJudgeProfile, results_dir: Path) -> pd.DataFrame:
    """Every stored held-out sample with the picker's reference-free score (``score``) and the rater's
    reference-based self-evaluation of it (``proxy_quality``: the quality proxy of selective following)."""
    out = Path(results_dir)
    _, held = policy_answers(prof, out, progress=False, stored_only=True)
    held = held[held["status"] == "ok"].reset_index(drop=True)
    lab = [f"heldout/{s}/{i}/{k}" for s, i, k in zip(held["source"], held["id"], held["sample"])]
    if prof.bon_picker:
        picker = trained_judge(prof, out, prof.bon_picker)
        tag = f"{prof.bon_picker}/free"
    else:
        picker, tag = open_model(prof.judge_model, prof, out, judge=True), "untrained/free"
    try:
        free = sev.self_eval_scores(picker, held["instruction"].tolist(), held["answer"].tolist(),
                                    labels=[f"{x}/{tag}" for x in lab])
        picker_name = picker.name
    finally:
        picker.store.close()
    rater = open_model(prof.bon_rater, prof, out, judge=True)
    try:
        proxy = sev.self_eval_scores(rater, held["instruction"].tolist(), held["answer"].tolist(),
                                     held["reference"].tolist(), labels=[f"{x}/proxy" for x in lab])
        rater_prov = provenance(rater, prof)
    finally:
        rater.store.close()
    return held.assign(score=free["score"], score_valid=free["valid"], proxy_quality=proxy["score"],
                       proxy_valid=proxy["valid"], picker=picker_name, rater=rater_prov["judge"],
                       rater_fingerprint_id=rater_prov["fingerprint_id"], profile=prof.name)


def best_of_n_wins(prof: SelfJudgeProfile, results_dir: Path, scored: pd.DataFrame) -> pd.DataFrame:
    """For N = 1, 2, 4, ... up to ``best_of_n`` (column ``best_of``): the pick's win probability against
    sample 0 and against the reference, by the rater, both orders (one row per instruction, N and baseline)."""
    out = Path(results_dir)
    ns = sorted({n for n in (1, 2, 4, 8, 16, 32) if n <= prof.best_of_n} | {prof.best_of_n})
    text = scored.set_index(["source", "id", "sample"])["answer"]
    first = scored[scored["sample"] == 0].set_index(["source", "id"])
    rater = open_model(prof.bon_rater, prof, out, judge=True)
    parts = []
    try:
        for n in ns:
            picks = bon.pick_best(scored, n=n)
            picks = picks[[(s, i) in first.index for s, i in zip(picks["source"], picks["id"])]]
            cand = [text[(s, i, k)] for s, i, k in zip(picks["source"], picks["id"], picks["picked"])]
            q = [first.loc[(s, i), "instruction"] for s, i in zip(picks["source"], picks["id"])]
            for baseline in ("first sample", "reference"):
                col = "answer" if baseline == "first sample" else "reference"
                base = [first.loc[(s, i), col] for s, i in zip(picks["source"], picks["id"])]
                w = bon.pairwise_wins(rater, q, cand, base, labels=[
                    f"bon/{s}/{i}/{k}/vs-{baseline.split()[0]}" for s, i, k in
                    zip(picks["source"], picks["id"], picks["picked"])])
                parts.append(pd.concat([picks.reset_index(drop=True), w], axis=1).assign(best_of=n,
                                                                                         baseline=baseline))
        rater_name = rater.name
    finally:
        rater.store.close()
    return pd.concat(parts, ignore_index=True).assign(rater=rater_name, profile=prof.name)


def stage_best_of_n(prof: SelfJudgeProfile, results_dir: Path) -> dict[str, Path]:
    out = Path(results_dir)
    scored = heldout_scores(prof, out)
    wins = best_of_n_wins(prof, out, scored)
    rates = bon.win_rate_table(wins, by=["best_of", "baseline"]).assign(picker=scored["picker"].iloc[0],
                                                                  rater=wins["rater"].iloc[0], profile=prof.name)
    own = scored[scored["sample"] == 0].dropna(subset=["proxy_quality"])
    own = own.assign(length_words=own["n_words"].astype(float))
    sel_table = sel.selective_summaries(own, ["score", "length_words"], quality="proxy_quality").assign(
        quality="proxy: reference-based self-evaluation by " + str(scored["rater"].iloc[0]), profile=prof.name)
    keep = [c for c in scored.columns if c not in ("answer", "instruction", "reference", "system_prompt")]
    tables = {"heldout_scores": scored[keep], "best_of_n_wins": wins, "best_of_n": rates, "selective_own": sel_table}
    return {f"{k}{bon_suffix(prof)}.csv": write_csv(t, out / f"{k}{bon_suffix(prof)}.csv") for k, t in tables.items()}


def bon_suffix(prof: SelfJudgeProfile) -> str:
    """``""``, or ``"_api"`` for the api profile: it shares the book's folder and stores (the same answers,
    another rater), so its best-of-N tables must not overwrite the book's."""
    return "_api" if prof.name == "api" else ""


_STAGE_FUNCS = {"speed": stage_speed, "answers": stage_answers, "labels": stage_labels, "evaluate": stage_evaluate,
                "perplexity": stage_perplexity, "train": stage_train, "evaluate_trained": stage_evaluate_trained,
                "best_of_n": stage_best_of_n}


def run_self_judge(profile: str | SelfJudgeProfile = "book", stages: Sequence[str] | None = None, *,
                   live: bool | None = None, results_dir: Path | str | None = None,
                   variants: Sequence[str] | None = None) -> dict[str, Path]:
    """Run (or replay) the named stages of the Self-J pipeline (default: all) and write their tables.

    ``variants``: only these judge variants (of :data:`.training.VARIANTS`) in the stages that train,
    evaluate or pick with them: a CPU run can finish the full Self-J judge before its ablations."""
    prof = self_judge_profile(profile, live)
    if variants:
        unknown_v = [v for v in variants if v not in tr.VARIANTS]
        if unknown_v:
            raise ValueError(f"unknown self-judge variants {unknown_v}; known: {list(tr.VARIANTS)}")
        prof = replace(prof, variants=tuple(variants))
    stages = list(stages) if stages else list(STAGES)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown self-judge stages {unknown}; known: {list(STAGES)}")
    out = Path(results_dir) if results_dir is not None else default_results_dir(prof.name)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for s in STAGES:
        if s in stages:
            paths.update(_STAGE_FUNCS[s](prof, out))
    return paths

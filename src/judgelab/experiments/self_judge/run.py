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

Stages (:data:`STAGES`), each resumable through the stores: ``speed`` (tokens/s of the candidate policies,
a table), ``answers`` (the policy's samples of the training and held-out instructions). Later stages read
what earlier ones stored.
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
from judgelab.experiments.self_judge import policy as pol
from judgelab.models.base import GenerationConfig
from judgelab.paths import results_path, write_csv
from judgelab.profiles import hardware
from judgelab.store import CallStore, StoredModel

STAGES: tuple[str, ...] = ("speed", "answers")


@dataclass(frozen=True)
class SelfJudgeProfile:
    """Sizes and models of the Self-J chapter (issue 19)."""

    name: str
    #: the model that answers the instructions and rates its own answers (a model string)
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
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def generation(self) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=self.max_new_tokens, temperature=self.temperature)

    def as_record(self) -> dict[str, object]:
        return {"profile": self.name, "policy": self.policy, "n_train": self.n_train,
                "train_samples": self.train_samples, "n_heldout": self.n_heldout, "best_of_n": self.best_of_n,
                "max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "seed": self.seed}


SMOLLM2 = "smollm2-135m-instruct@llama.cpp"
QWEN05 = "qwen2.5-coder-0.5b-instruct@llama.cpp"

SELF_JUDGE_PROFILES: dict[str, SelfJudgeProfile] = {
    "ci": SelfJudgeProfile("ci", SMOLLM2, n_train=3, train_samples=2, n_heldout=2, best_of_n=2,
                           max_new_tokens=16, speed_candidates=(SMOLLM2,), speed_instructions=1),
    # smollm2, not the 0.5B Qwen: at 1 thread on the shared 2-core machine (load 1.4-1.9) the Qwen decoded
    # 11.2 tokens/s against smollm2's 29.2 (policy_speed.csv, 160-190 tokens an answer), so 400 instructions
    # x 2 samples would take the Qwen over 3 hours, smollm2 about 1.5
    "book": SelfJudgeProfile("book", SMOLLM2, n_train=400, train_samples=2, n_heldout=40, best_of_n=8,
                             replay=True, speed_candidates=(SMOLLM2, QWEN05)),
    "gpu": SelfJudgeProfile("gpu", "hf:Qwen/Qwen2.5-7B-Instruct", n_train=1000, train_samples=4, n_heldout=100,
                            best_of_n=32, max_new_tokens=512),
    "api": SelfJudgeProfile("api", SMOLLM2, n_train=400, train_samples=2, n_heldout=40, best_of_n=8, replay=True),
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


def open_model(model: str, prof: SelfJudgeProfile, results_dir: Path, progress: bool = False) -> StoredModel:
    """``model`` behind its call store under ``<results_dir>/stores``: replayed, or live (loaded, 1 thread on
    the llama.cpp runtime) with the run recorded in the store's metadata."""
    store = CallStore(store_path(model, results_dir), readonly=prof.replay, identity=om.judge_identity(model))
    if prof.replay:
        return StoredModel(None, store, replay=True, name=om.short_name(model), progress=progress)
    from judgelab.models import get_model

    kwargs = {"n_threads": prof.n_threads} if model.endswith("@llama.cpp") or model.startswith("llamacpp:") else {}
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


def policy_answers(prof: SelfJudgeProfile, results_dir: Path, progress: bool = True
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The policy's answers: training instructions x ``train_samples`` then held-out x ``best_of_n``
    (training first: they are what the judge needs). Returns (train answers, held-out answers), each with
    the instruction's columns joined."""
    ins = instructions(prof)
    model = open_model(prof.policy, prof, results_dir)
    try:
        train = pol.generate_answers(model, ins.train, range(prof.train_samples), prof.generation,
                                     base_seed=prof.seed, progress=progress, desc="train answers")
        held = pol.generate_answers(model, ins.heldout, range(prof.best_of_n), prof.generation,
                                    base_seed=prof.seed, progress=progress, desc="held-out answers")
    finally:
        model.store.close()
    cols = ["source", "id", "instruction", "reference", "system_prompt"]
    return (train.merge(ins.train[cols], on=["source", "id"], how="left"),
            held.merge(ins.heldout[cols], on=["source", "id"], how="left"))


def stage_answers(prof: SelfJudgeProfile, results_dir: Path) -> dict[str, Path]:
    train, held = policy_answers(prof, results_dir)
    ins_refused = instructions(prof).refused_counts()
    summary = pd.concat([pol.answers_summary(train).assign(split="train"),
                         pol.answers_summary(held).assign(split="heldout")], ignore_index=True)
    summary = summary.assign(policy=prof.policy, profile=prof.name, max_new_tokens=prof.max_new_tokens,
                             temperature=prof.temperature)
    out = Path(results_dir)
    return {"answers_summary.csv": write_csv(summary, out / "answers_summary.csv"),
            "refused_instructions.csv": write_csv(ins_refused, out / "refused_instructions.csv")}


_STAGE_FUNCS = {"speed": stage_speed, "answers": stage_answers}


def run_self_judge(profile: str | SelfJudgeProfile = "book", stages: Sequence[str] | None = None, *,
                   live: bool | None = None, results_dir: Path | str | None = None) -> dict[str, Path]:
    """Run (or replay) the named stages of the Self-J pipeline (default: all) and write their tables."""
    prof = self_judge_profile(profile, live)
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

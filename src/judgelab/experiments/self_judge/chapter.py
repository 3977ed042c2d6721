"""What the Self-J chapter (``notebooks/06_self_judge.ipynb``) reads: the pipeline's tables, how far each stage
has got, and the few tables the chapter derives from them.

:func:`load_chapter` is the notebook's one entry point. A replaying profile (``book``, ``api``) only *reads*:
the committed CSVs under ``results/self_judge`` that exist, and, for every stage whose tables do not exist
yet, how much of its work the committed call stores already hold (:func:`stage_progress`: answers stored,
judge calls stored, variants trained), so the chapter can say "608 of 1,280 judge calls" instead of
rendering nothing. It never writes a table and never calls a model. A live profile (``ci``: seconds;
``gpu``: hours) runs :func:`~judgelab.experiments.self_judge.run.run_self_judge` first, into
``results/runs/<profile>/self_judge``, then reads the same way.

Derived tables, computed here from those tables (no model):

- :func:`data_overview` -- the training instructions per source, the refused ones with reasons, the selection
  and the leakage check (the selected instructions against the evaluation questions, by normalised text),
  and the 640 evaluation answers per responding model (from the verified data, so it renders before any
  stage has run);
- :func:`answer_timing` -- when the book run stored its answers (the ``created`` stamps of the policy's store):
  the generation cost as the run met it, beside the benchmark;
- :func:`invalid_counts` -- per method, the evaluation answers it could not score (no digit in the judge's
  answer; an empty answer for perplexity), never scored 0;
- :func:`label_distribution` -- the digit each judge variant is trained to say, per training answer;
- :func:`pearson_differences` / :func:`claims_table` -- paired differences in pooled Pearson r between two
  methods on the same answers, with bootstrap intervals that resample *questions* (the four answers to one
  question are not independent: :mod:`judgelab.stats`' convention), and the paper's claims checked on them;
- :func:`per_model_table` -- r with its interval per responding model, one row per method;
- :func:`length_controlled` -- each method's r with GPT-4 beside its r with answer length and its partial r
  once (log) length is held fixed: whether any signal lies beneath a length effect.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from judgelab.experiments.self_judge import evaluation as ev_mod
from judgelab.experiments.self_judge import run as sjrun
from judgelab.experiments.self_judge.findings import PARTIAL, method_name
from judgelab.stats import LEVEL, N_RESAMPLES, SEED

#: the tables each stage writes (``run.py``'s stage functions), in stage order; a stage is done when all exist
STAGE_TABLES: dict[str, tuple[str, ...]] = {
    "speed": ("policy_speed.csv",),
    "answers": ("answers_summary.csv", "refused_instructions.csv"),
    "labels": ("train_labels.csv",),
    "evaluate": ("eval_scores.csv", "pearson.csv", "pearson_paper.csv", "selective_gpt4.csv",
                 "selective_curves.csv"),
    "perplexity": ("eval_perplexity.csv",),
    "train": ("training_runs.csv", "training_log.csv"),
    "evaluate_trained": ("eval_trained.csv", "pearson_all.csv", "pearson_paper_all.csv", "selective_gpt4_all.csv",
                         "selective_curves_all.csv"),
    "best_of_n": ("heldout_scores.csv", "best_of_n_wins.csv", "best_of_n.csv", "selective_own.csv"),
}

#: the states :func:`stage_progress` reports
DONE, COMPUTED, RUNNING, NOT_STARTED = "done", "computed, tables not written", "in progress", "not started"
#: and PARTIAL (from findings): tables written for part of a stage's work, as a run restricted to some judge
#: variants (``--variants``) leaves them


# --- reading ----------------------------------------------------------------------------------------------------
@dataclass
class SelfJudgeChapter:
    """The chapter's tables (those that exist) and each stage's progress."""

    profile: sjrun.SelfJudgeProfile
    results_dir: Path
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    progress: pd.DataFrame = field(default_factory=pd.DataFrame)

    def has(self, *names: str) -> bool:
        return all(n in self.tables for n in names)

    def get(self, name: str) -> pd.DataFrame | None:
        t = self.tables.get(name)
        return None if t is None else t.copy()

    def stage_done(self, stage: str) -> bool:
        return self.has(*STAGE_TABLES[stage])

    @property
    def combination(self) -> str:
        return self.profile.combination

    def scores(self) -> pd.DataFrame | None:
        """``eval_scores.csv`` with the trained judges' columns (``eval_trained.csv``) joined when they exist."""
        s = self.get("eval_scores.csv")
        if s is None:
            return None
        t = self.get("eval_trained.csv")
        if t is not None:
            s = s.merge(t, on="id", how="left", validate="one_to_one")
        return s


def read_tables(results_dir: Path | str, bon_suffix: str = "") -> dict[str, pd.DataFrame]:
    """Every stage table of :data:`STAGE_TABLES` found in ``results_dir``, by file name. ``bon_suffix``
    (the api profile's ``"_api"``): the best-of-N tables are read from ``<name><suffix>.csv`` instead (the
    api profile shares the book's folder with another rater) and keep their plain names here."""
    out = {}
    for stage, names in STAGE_TABLES.items():
        for n in names:
            p = Path(results_dir) / (n.replace(".csv", f"{bon_suffix}.csv") if stage == "best_of_n" else n)
            if p.is_file():
                out[n] = pd.read_csv(p)
    return out


def load_chapter(profile: str | sjrun.SelfJudgeProfile = "book", *, live: bool | None = None,
                 results_dir: Path | str | None = None, stages: Sequence[str] | None = None) -> SelfJudgeChapter:
    """Read (replaying profile) or run then read (live profile) the chapter's tables, with stage progress.

    ``stages``: what a live profile runs (default: all). A replaying profile runs nothing and writes nothing.
    """
    prof = sjrun.self_judge_profile(profile, live)
    out = Path(results_dir) if results_dir is not None else sjrun.default_results_dir(prof.name)
    if not prof.replay:
        sjrun.run_self_judge(prof, stages or sjrun.STAGES, results_dir=out)
    tables = read_tables(out, sjrun.bon_suffix(prof))
    return SelfJudgeChapter(prof, out, tables, stage_progress(prof, out, tables))


# --- progress ---------------------------------------------------------------------------------------------------
def _read_store(path: Path, query: str) -> list:
    """Rows of ``query`` on the call store at ``path`` opened read-only (:class:`~judgelab.store.CallStore`);
    [] when there is no store."""
    from judgelab.store import CallStore

    if not Path(path).is_file():
        return []
    store = CallStore(path, readonly=True)
    try:
        return store.conn.execute(query).fetchall()
    finally:
        store.close()


def _stored_labels(path: Path, wanted: Iterable[str]) -> int:
    """How many of the ``wanted`` labels the store at ``path`` holds (0 when there is no store). Read-only.

    A call is keyed on its prompt, so two planned calls with the same prompt (two identical answers to one
    question) are one record under the first one's label: the count can fall short of a finished stage's
    total by such repeats, never exceed it."""
    want = set(wanted)
    if not want:
        return 0
    return len(want & {r[0] for r in _read_store(path, "SELECT label FROM calls")})


def _meta(path: Path, names: Iterable[str]) -> int:
    have = {r[0] for r in _read_store(path, "SELECT name FROM meta")}
    return sum(n in have for n in names)


def stage_progress(prof: sjrun.SelfJudgeProfile, results_dir: Path | str,
                   tables: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """One row per stage: ``state`` (:data:`DONE`: its tables exist and the stores hold all its work;
    :data:`PARTIAL`: its tables exist for part of the work, e.g. some judge variants; :data:`COMPUTED`: the
    stores hold all its work but the tables are not written; :data:`RUNNING`; :data:`NOT_STARTED`),
    ``done`` and ``total`` units of
    work (``unit`` names them), ``tables`` (present of expected) and ``missing_tables``.

    Work is counted in the committed stores, read-only, by the labels the stages give their calls: answers
    (the policy's store), judge calls (the judge's), variants trained (the judge store's training records),
    the picker's and the rater's scores of the held-out answers (best-of-N's pairwise ratings come after
    them and are not counted)."""
    out = Path(results_dir)
    tables = read_tables(out) if tables is None else tables
    ins = sjrun.instructions(prof)
    ev_ids = sjrun.evaluation_rows(prof)["id"].tolist()
    policy_store = sjrun.store_path(prof.policy, out)
    judge_store = sjrun.store_path(prof.judge_model, out)
    rater_store = sjrun.store_path(prof.bon_rater, out)
    train_keys = [(r.source, r.id) for r in ins.train.itertuples(index=False)]
    held_keys = [(r.source, r.id) for r in ins.heldout.itertuples(index=False)]
    train_answers = [f"answer/{s}/{i}/{k}" for k in range(prof.train_samples) for s, i in train_keys]
    held_answers = [f"answer/{s}/{i}/{k}" for k in range(prof.best_of_n) for s, i in held_keys]
    speed = tables.get("policy_speed.csv")
    n_speed = 0 if speed is None else int(speed["model"].isin(prof.speed_candidates).sum())
    tag = f"{prof.bon_picker}/free" if prof.bon_picker else "untrained/free"
    held = [f"heldout/{s}/{i}/{k}" for k in range(prof.best_of_n) for s, i in held_keys]
    work = {
        "speed": (n_speed, len(prof.speed_candidates), "candidate policies timed"),
        "answers": (_stored_labels(policy_store, train_answers + held_answers),
                    len(train_answers) + len(held_answers), "answers generated"),
        "labels": (_stored_labels(judge_store, [f"selfeval/ref/{s}/{i}/{k}" for k in range(prof.train_samples)
                                                for s, i in train_keys]),
                   len(train_answers), "training answers self-evaluated"),
        "evaluate": (_stored_labels(judge_store, [f"eval/{w}/{i}" for w in ("ref", "free") for i in ev_ids]),
                     2 * len(ev_ids), "judge calls on the evaluation answers"),
        "perplexity": (_stored_labels(policy_store, [f"eval/loglik/{i}" for i in ev_ids]), len(ev_ids),
                       "evaluation answers scored for perplexity"),
        "train": (_meta(judge_store, [f"selfj:train:{v}" for v in prof.variants]), len(prof.variants),
                  "judge variants trained"),
        "evaluate_trained": (_stored_labels(judge_store, [f"eval/{v}/{w}/{i}" for v in prof.variants
                                                          for w in ("ref", "free") for i in ev_ids]),
                             2 * len(ev_ids) * len(prof.variants), "trained-judge calls on the evaluation answers"),
        "best_of_n": (_stored_labels(judge_store, [f"{h}/{tag}" for h in held])
                      + _stored_labels(rater_store, [f"{h}/proxy" for h in held]),
                      2 * len(held), "held-out answers scored by picker and rater"),
    }
    rows = []
    for stage, names in STAGE_TABLES.items():
        done, total, unit = work[stage]
        present = [n for n in names if n in tables]
        missing = [n for n in names if n not in tables]
        if not missing:
            state = DONE if not total or done >= total else PARTIAL
        elif total and done >= total:
            state = COMPUTED
        elif done > 0:
            state = RUNNING
        else:
            state = NOT_STARTED
        rows.append({"stage": stage, "state": state, "done": int(done), "total": int(total), "unit": unit,
                     "tables": f"{len(present)} of {len(names)}", "missing_tables": ", ".join(missing)})
    return pd.DataFrame(rows).assign(profile=prof.name)


# --- data -------------------------------------------------------------------------------------------------------
def data_overview(prof: sjrun.SelfJudgeProfile) -> dict[str, pd.DataFrame]:
    """The chapter's data from the verified files (no stage needed).

    ``sources``: per training source, instructions kept (with a reference), refused, and selected for
    training and held out; ``refused``: counts per source and reason; ``leakage``: the selected instructions
    checked against the evaluation questions (``overlapping`` must be 0: the run refuses to start otherwise)
    beside those refused earlier for being evaluation questions; ``evaluation``: answers, questions and the
    mean GPT-4 score (1-5) per responding model."""
    from judgelab.data.self_judge import (
        TRAINING_SOURCES,
        evaluation_answers,
        instruction_overlap,
    )

    ins = sjrun.instructions(prof)
    kept = ins.loaded.rows.groupby("source").size()
    refused = ins.loaded.refused.groupby("source").size()
    sources = pd.DataFrame({"source": list(TRAINING_SOURCES)})
    sources["kept"] = sources["source"].map(kept).fillna(0).astype(int)
    sources["refused"] = sources["source"].map(refused).fillna(0).astype(int)
    sources["train"] = sources["source"].map(ins.train.groupby("source").size()).fillna(0).astype(int)
    sources["heldout"] = sources["source"].map(ins.heldout.groupby("source").size()).fillna(0).astype(int)
    evaluation = evaluation_answers().rows
    selected = pd.concat([ins.train, ins.heldout], ignore_index=True)
    overlap = instruction_overlap(selected, evaluation)
    in_eval = ins.loaded.refused[ins.loaded.refused["reason"] == "in evaluation set"]
    leakage = pd.DataFrame([{
        "selected": len(selected), "evaluation_questions": int(evaluation["question"].nunique()),
        "overlapping": int(overlap[["source", "id"]].drop_duplicates().shape[0]),
        "refused_as_evaluation": len(in_eval), "check": "normalised text: equal, or one contains the other"}])
    per_model = (evaluation.groupby(["model"], sort=False)
                 .agg(answers=("id", "size"), questions=("question_id", "nunique"),
                      gpt4_mean=("gpt4_mean", "mean"), gpt4_sd=("gpt4_mean", "std")).reset_index())
    sets = ", ".join(sorted(evaluation["eval_set"].unique()))
    per_model = per_model.assign(eval_sets=sets)
    return {"sources": sources, "refused": ins.refused_counts(), "leakage": leakage, "evaluation": per_model}


def answer_timing(prof: sjrun.SelfJudgeProfile, results_dir: Path | str) -> pd.DataFrame:
    """When the policy's answers were stored: count, first and last time stamp, and the median gap between
    consecutive answers in seconds (one-second stamps; gaps over an hour -- the run stopped and resumed --
    are left out and counted). Empty when there is no store or no answer."""
    path = sjrun.store_path(prof.policy, Path(results_dir))
    cols = ["answers", "first", "last", "median_gap_s", "mean_gap_s", "gaps", "pauses_over_1h", "policy"]
    stamps = [r[0] for r in _read_store(path, "SELECT created FROM calls WHERE label LIKE 'answer/%'")]
    if not stamps:
        return pd.DataFrame(columns=cols)
    t = pd.to_datetime(pd.Series(stamps), utc=True).sort_values().reset_index(drop=True)
    gaps = t.diff().dt.total_seconds().dropna()
    pauses = gaps > 3600
    g = gaps[~pauses]
    return pd.DataFrame([{"answers": len(t), "first": t.iloc[0].strftime("%Y-%m-%d %H:%M"),
                          "last": t.iloc[-1].strftime("%Y-%m-%d %H:%M"),
                          "median_gap_s": float(g.median()) if len(g) else np.nan,
                          "mean_gap_s": float(g.mean()) if len(g) else np.nan, "gaps": len(g),
                          "pauses_over_1h": int(pauses.sum()), "policy": prof.policy}])


# --- invalid answers and labels ------------------------------------------------------------------------------------
def invalid_counts(scores: pd.DataFrame, combination: str = "mean") -> pd.DataFrame:
    """Per method with a validity column (``<method>_valid``), the evaluation answers it scored and those it
    could not (NaN, left out of every r, never 0), with the median probability the judge put on the ten
    digits at all where recorded (``<method>_digit_mass``)."""
    rows = []
    for col in scores.columns:
        if not col.endswith("_valid"):
            continue
        m = col.removesuffix("_valid")
        valid = scores[col].astype(bool)
        mass = scores.get(f"{m}_digit_mass")
        rows.append({"method": m, "name": method_name(m, combination), "answers": len(scores),
                     "scored": int(valid.sum()), "invalid": int((~valid).sum()),
                     "invalid_share": float((~valid).mean()) if len(scores) else np.nan,
                     "median_digit_mass": float(mass.median()) if mass is not None else np.nan})
    return pd.DataFrame(rows, columns=["method", "name", "answers", "scored", "invalid", "invalid_share",
                                       "median_digit_mass"])


def label_distribution(labels: pd.DataFrame, combination: str = "mean") -> pd.DataFrame:
    """For every judge variant (:data:`.training.VARIANTS`), how many training answers teach each digit 0-9
    (columns ``"0"``..``"9"``) and how many teach nothing (``missing``: an invalid self-evaluation)."""
    from judgelab.experiments.self_judge import training as tr

    rows = []
    for name, v in tr.VARIANTS.items():
        d = tr.variant_labels(labels, v, combination)
        counts = d.value_counts(dropna=True)
        row = {"variant": name, "label_from": v.label if v.label != "combined" else f"combined_{combination}",
               "answers": len(d)}
        row.update({str(k): int(counts.get(k, 0)) for k in range(10)})
        row["missing"] = int(d.isna().sum())
        rows.append(row)
    return pd.DataFrame(rows)


# --- paired differences in Pearson r ------------------------------------------------------------------------------
def _r_from_sums(n, sx, sy, sxx, syy, sxy):
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy - sx * sy / n
        vx, vy = sxx - sx * sx / n, syy - sy * sy / n
        return cov / np.sqrt(vx * vy)


def _cluster_resamples(scores: pd.DataFrame, cluster: Sequence[str], n_resamples: int, seed: int):
    """Each row's cluster code, the clusters, and the bootstrap's resampled cluster indices
    ``[n_resamples, n_clusters]`` (None without clusters): one draw shared by every method compared."""
    keys = scores[list(cluster)].astype(str).agg("/".join, axis=1) if cluster else pd.Series(range(len(scores)))
    codes, uniques = pd.factorize(keys)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(uniques), size=(n_resamples, len(uniques))) if len(uniques) else None
    return codes, uniques, idx


def _cluster_sums(codes, n_clusters: int, u, v) -> list:
    """Per-cluster sums of 1, u, v, u^2, v^2 and uv: what :func:`_r_from_sums` needs, for any resample."""
    return [np.bincount(codes, weights=w, minlength=n_clusters)
            for w in (np.ones(len(u)), u, v, u * u, v * v, u * v)]


def pearson_differences(scores: pd.DataFrame, pairs: Sequence[tuple[str, str]], quality: str = "gpt4_mean",
                        cluster: Sequence[str] = ("eval_set", "question_id"), *, level: float = LEVEL,
                        n_resamples: int = N_RESAMPLES, seed: int = SEED, min_clusters: int = 10) -> pd.DataFrame:
    """For each pair ``(a, b)`` of score columns: pooled Pearson r of each with ``quality`` on the answers both
    scored, their difference ``r_a - r_b`` and its percentile bootstrap interval, resampling whole clusters
    (questions: the four answers to a question share its difficulty). A pair with a missing column gets a
    row of NaN with ``note`` saying which; fewer than 4 answers, NaN with the count; fewer than
    ``min_clusters`` questions, the estimates without an interval (a bootstrap over a handful of questions is
    no interval)."""
    codes, uniques, idx = _cluster_resamples(scores, cluster, n_resamples, seed)
    alpha = (1 - level) / 2
    rows = []
    for a, b in pairs:
        base = {"a": a, "b": b, "r_a": np.nan, "r_b": np.nan, "diff": np.nan, "low": np.nan, "high": np.nan,
                "n": 0, "clusters": 0, "note": ""}
        absent = [c for c in (a, b, quality) if c not in scores.columns]
        if absent:
            rows.append({**base, "note": f"not computed: no column {', '.join(absent)}"})
            continue
        x, y, q = (scores[c].to_numpy(dtype=float) for c in (a, b, quality))
        keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(q)
        n = int(keep.sum())
        if n < 4:
            rows.append({**base, "n": n, "note": f"only {n} answers scored by both"})
            continue
        c = codes[keep]
        sums = {name: _cluster_sums(c, len(uniques), v, q[keep]) for name, v in (("a", x[keep]), ("b", y[keep]))}
        r_a = float(_r_from_sums(*[s.sum() for s in sums["a"]]))
        r_b = float(_r_from_sums(*[s.sum() for s in sums["b"]]))
        boot_a = _r_from_sums(*[s[idx].sum(axis=1) for s in sums["a"]])
        boot_b = _r_from_sums(*[s[idx].sum(axis=1) for s in sums["b"]])
        d = boot_a - boot_b
        d = d[np.isfinite(d)]
        k = len(np.unique(c))
        lo, hi = (np.quantile(d, [alpha, 1 - alpha]) if len(d) and k >= min_clusters else (np.nan, np.nan))
        note = ("constant scores: r undefined" if not np.isfinite(r_a - r_b) else
                f"only {k} questions: no interval" if k < min_clusters else "")
        rows.append({**base, "r_a": r_a, "r_b": r_b, "diff": r_a - r_b, "low": float(lo), "high": float(hi),
                     "n": n, "clusters": k, "note": note})
    return pd.DataFrame(rows)



#: the untrained and trained score columns :func:`length_controlled` examines in the chapter (those present)
LENGTH_METHODS: tuple[str, ...] = ("cosine", "selfeval_ref", "selfeval_ref_cosine", "selfeval_free", "logprob",
                                   "selfj_self_j_ref", "selfj_self_j_free")


def length_methods(scores: pd.DataFrame) -> list[str]:
    """The methods of the length analysis that ``scores`` has: :data:`LENGTH_METHODS`, then every trained
    ablation's two scores (``selfj_<variant>_ref`` / ``_free``) in training's variant order -- an ablation
    that beats the full judge must face the same length test."""
    from judgelab.experiments.self_judge.training import VARIANTS

    extra = [f"selfj_{v}_{w}" for v in VARIANTS if v != "self_j" for w in ("ref", "free")]
    return [m for m in (*LENGTH_METHODS, *extra) if m in scores.columns]


def length_controlled(scores: pd.DataFrame, methods: Sequence[str], quality: str = "gpt4_mean",
                      length: str = "length_words", cluster: Sequence[str] = ("eval_set", "question_id"), *,
                      level: float = LEVEL, n_resamples: int = N_RESAMPLES, seed: int = SEED,
                      min_clusters: int = 10) -> pd.DataFrame:
    """Is there signal beneath answer length? For each method: pooled r with ``quality``, r with the answer's
    length, and the partial r with ``quality`` once ``log(1 + length)`` is held fixed (both residualised on it:
    ``(r_xq - r_xl r_ql) / sqrt((1 - r_xl^2)(1 - r_ql^2))``), and ``r_quality_length`` (``r_ql``: the quality's
    own r with log length, on the method's answers), each with a percentile bootstrap interval that
    resamples whole questions (as :func:`pearson_differences`). GPT-4 rewards longer answers; a judge whose r
    is mostly its r with length reads the length, not the content, and its partial r says what is left."""
    codes, uniques, idx = _cluster_resamples(scores, cluster, n_resamples, seed)
    alpha = (1 - level) / 2
    rows = []
    for m in methods:
        row = {"method": m, "n": 0, "clusters": 0, "note": ""}
        for k in ("r_quality", "r_length", "partial_r", "r_quality_length"):
            row.update({k: np.nan, f"{k}_low": np.nan, f"{k}_high": np.nan})
        absent = [c for c in (m, quality, length) if c not in scores.columns]
        if absent:
            rows.append({**row, "note": f"not computed: no column {', '.join(absent)}"})
            continue
        x, q = scores[m].to_numpy(dtype=float), scores[quality].to_numpy(dtype=float)
        ln = np.log1p(scores[length].to_numpy(dtype=float))
        keep = np.isfinite(x) & np.isfinite(q) & np.isfinite(ln)
        n, c = int(keep.sum()), codes[keep]
        if n < 4:
            rows.append({**row, "n": n, "note": f"only {n} answers scored"})
            continue

        pairs = {"xq": _cluster_sums(c, len(uniques), x[keep], q[keep]),
                 "xl": _cluster_sums(c, len(uniques), x[keep], ln[keep]),
                 "ql": _cluster_sums(c, len(uniques), q[keep], ln[keep])}

        def stats(agg):
            r = {k: _r_from_sums(*[agg(s) for s in v]) for k, v in pairs.items()}
            with np.errstate(invalid="ignore", divide="ignore"):
                part = (r["xq"] - r["xl"] * r["ql"]) / np.sqrt((1 - r["xl"] ** 2) * (1 - r["ql"] ** 2))
            return {"r_quality": r["xq"], "r_length": r["xl"], "partial_r": part, "r_quality_length": r["ql"]}

        point = stats(lambda s: s.sum())
        k = len(np.unique(c))
        row.update({key: float(v) for key, v in point.items()}, n=n, clusters=k)
        if k >= min_clusters:
            boot = stats(lambda s: s[idx].sum(axis=1))
            for key, v in boot.items():
                v = v[np.isfinite(v)]
                if len(v):
                    row[f"{key}_low"], row[f"{key}_high"] = (float(b) for b in np.quantile(v, [alpha, 1 - alpha]))
        else:
            row["note"] = f"only {k} questions: no interval"
        rows.append(row)
    return pd.DataFrame(rows)


#: the paper's claims the chapter checks on its answers: (claim, a, b, (setting, paper's name of a), (setting,
#: paper's name of b)); each says r(a) > r(b) in the paper's table (Ye & Ng 2024, README)
PAPER_CLAIMS: tuple[tuple[str, str, str, tuple[str, str], tuple[str, str]], ...] = (
    ("recalibrating self-evaluation with the cosine beats self-evaluation alone", "selfeval_ref_cosine",
     "selfeval_ref", ("with reference", "Self-eval + Cosine"), ("with reference", "Self-eval")),
    ("recalibrating self-evaluation with the cosine beats the cosine alone", "selfeval_ref_cosine", "cosine",
     ("with reference", "Self-eval + Cosine"), ("with reference", "Cosine")),
    ("self-evaluation with the reference beats self-evaluation without it", "selfeval_ref", "selfeval_free",
     ("with reference", "Self-eval"), ("without reference", "Self-eval")),
    ("the trained judge beats its own training signal (with reference)", "selfj_self_j_ref",
     "selfeval_ref_cosine", ("with reference", "Self-J"), ("with reference", "Self-eval + Cosine")),
    ("the trained reference-free judge beats untrained self-evaluation", "selfj_self_j_free", "selfeval_free",
     ("without reference", "Self-J judge"), ("without reference", "Self-eval")),
    ("the trained reference-free judge beats perplexity", "selfj_self_j_free", "logprob",
     ("without reference", "Self-J judge"), ("without reference", "Perplexity")),
)


def comparison_pairs(variants: Sequence[str] = (), combination: str = "mean") -> list[tuple[str, str]]:
    """The method pairs the chapter compares (:func:`pearson_differences`): the paper's claims, every method
    against answer length, each candidate combination against ours, and the full Self-J judge against each
    trained ablation (both settings)."""
    pairs = [(a, b) for _, a, b, _, _ in PAPER_CLAIMS]
    judges = ["cosine", "selfeval_ref", "selfeval_ref_cosine", "selfeval_free", "logprob"]
    judges += [f"selfj_{v}_{w}" for v in variants for w in ("ref", "free")]
    pairs += [(m, "length_words") for m in judges]
    from judgelab.experiments.self_judge.selfeval import COMBINATIONS

    pairs += [(f"selfeval_ref_cosine_{k}", f"selfeval_ref_cosine_{combination}") for k in COMBINATIONS
              if k != combination]
    pairs += [(f"selfj_self_j_{w}", f"selfj_{v}_{w}") for w in ("free", "ref") for v in variants if v != "self_j"]
    return list(dict.fromkeys(pairs))


def claims_table(diffs: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims (:data:`PAPER_CLAIMS`) beside our paired differences: ``verdict`` is ``supported``
    where our interval lies above 0, ``contradicted`` below, ``not distinguishable`` where it spans 0, ``no
    interval`` where there are too few questions for one, and ``not run`` where a method has not been computed (``diffs`` from :func:`pearson_differences`)."""
    d = diffs.set_index(["a", "b"])
    rows = []
    for claim, a, b, pa, pb in PAPER_CLAIMS:
        ra, rb = ev_mod.PAPER_PEARSON.get(pa, np.nan), ev_mod.PAPER_PEARSON.get(pb, np.nan)
        row = {"claim": claim, "a": a, "b": b, "paper_r100_a": ra, "paper_r100_b": rb,
               "paper_diff_r100": ra - rb}
        if (a, b) in d.index and np.isfinite(d.loc[(a, b), "diff"]):
            x = d.loc[(a, b)]
            lo, hi = float(x["low"]), float(x["high"])
            verdict = ("no interval" if not (np.isfinite(lo) and np.isfinite(hi)) else
                       "supported" if lo > 0 else "contradicted" if hi < 0 else "not distinguishable")
            row.update({"ours_diff_r100": 100 * float(x["diff"]), "ours_low_r100": 100 * lo,
                        "ours_high_r100": 100 * hi, "n": int(x["n"]), "verdict": verdict})
        else:
            row.update({"ours_diff_r100": np.nan, "ours_low_r100": np.nan, "ours_high_r100": np.nan, "n": 0,
                        "verdict": "not run"})
        rows.append(row)
    return pd.DataFrame(rows)


def per_model_table(pearson: pd.DataFrame, methods: Sequence[str] | None = None, combination: str = "mean",
                    digits: int = 2) -> pd.DataFrame:
    """One row per method, one column per responding model (then pooled and the per-model average): r with
    its 95 % interval as text (``0.41 [0.25, 0.55]``; the average has none), in ``pearson``'s order."""
    methods = list(pd.unique(pearson["method"])) if methods is None else [m for m in methods
                                                                            if m in set(pearson["method"])]
    cols = list(pd.unique(pearson["model"]))
    cols = [c for c in cols if c not in (ev_mod.POOLED, "average")] + [ev_mod.POOLED, "average"]

    def cell(r) -> str:
        if not np.isfinite(r["r"]):
            return "n/a"
        if np.isfinite(r["r_low"]) and np.isfinite(r["r_high"]):
            return f"{r['r']:.{digits}f} [{r['r_low']:.{digits}f}, {r['r_high']:.{digits}f}]"
        return f"{r['r']:.{digits}f}"

    rows = []
    for m in methods:
        t = pearson[pearson["method"] == m].set_index("model")
        rows.append({"method": method_name(m, combination),
                     **{c: cell(t.loc[c]) if c in t.index else "" for c in cols},
                     "n": int(t.loc[ev_mod.POOLED, "n"]) if ev_mod.POOLED in t.index else 0})
    return pd.DataFrame(rows)

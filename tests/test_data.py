"""The data layer: every pinned file verifies, tampering is caught, loaders and the tour's tables hold."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
from conftest import require

from judgelab.data import SOURCE_NAMES, DataIntegrityError, fetch, get_source, mirror_dirs, verify_source
from judgelab.data import self_recognition as sr
from judgelab.data import tour

ARTICLE = "articles/xsum_train_articles.json"


def _mirror() -> Path:
    mirrors = [m for m in mirror_dirs() if (m / "self_recognition").is_dir()]
    require(mirrors, "no data mirror (set JUDGELAB_DATA_MIRROR)")
    return mirrors[0]


def test_require_skips_locally_and_fails_in_ci(monkeypatch, tmp_path):
    """What a missing mirror does to the data tests: a skip on a laptop, a failure with the reason in CI."""
    monkeypatch.setenv("JUDGELAB_DATA_MIRROR", str(tmp_path / "no-mirror"))
    monkeypatch.setattr("test_data.mirror_dirs", lambda: [tmp_path / "no-mirror"])
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no data mirror"):
        _mirror()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and a requirement is missing: no data mirror"):
        _mirror()
    require(True, "never raised when the requirement holds")


@pytest.mark.parametrize("source", SOURCE_NAMES)
def test_every_pinned_file_verifies_offline(source):
    _mirror()
    paths = verify_source(source, download=False, progress=False)
    files = get_source(source).files
    assert len(paths) == len(files) > 0
    for path, pin in zip(paths, files.values()):
        assert path.stat().st_size == pin.size


def test_self_recognition_manifest_covers_every_mirrored_file():
    mirror = _mirror() / "self_recognition"
    mirrored = {
        str(p.relative_to(mirror)).removesuffix(".gz")
        for p in mirror.rglob("*")
        if p.is_file() and p.name not in {"MANIFEST.tsv", "SOURCE.md"}
    }
    assert mirrored == set(get_source("self_recognition").files)


def _tampered_mirror(tmp_path: Path) -> Path:
    """A mirror with one byte changed in the (decompressed) xsum articles file."""
    mirror = tmp_path / "mirror"
    dest = mirror / "self_recognition" / f"{ARTICLE}.gz"
    dest.parent.mkdir(parents=True)
    with gzip.open(_mirror() / "self_recognition" / f"{ARTICLE}.gz", "rb") as fh:
        raw = bytearray(fh.read())
    raw[10] = ord("X") if raw[10] != ord("X") else ord("Y")
    with gzip.open(dest, "wb") as fh:
        fh.write(bytes(raw))
    return mirror


def test_tampered_mirror_file_is_rejected_naming_file_hash_and_places(tmp_path, monkeypatch):
    mirror = _tampered_mirror(tmp_path)
    monkeypatch.setenv("JUDGELAB_DATA_MIRROR", str(mirror))
    monkeypatch.setenv("JUDGELAB_CACHE", str(tmp_path / "cache"))
    expected = get_source("self_recognition").file(ARTICLE).sha256
    with pytest.raises(DataIntegrityError) as info:
        fetch("self_recognition", ARTICLE, download=False)
    msg = str(info.value)
    assert ARTICLE in msg
    assert expected in msg
    assert str(mirror / "self_recognition" / f"{ARTICLE}.gz") in msg
    assert str(tmp_path / "cache") in msg  # the cache was looked in too
    assert "download disabled" in msg  # and the upstream was named but not tried
    assert not (tmp_path / "cache" / "self_recognition" / ARTICLE).exists()  # nothing bad was cached


def test_truncated_cache_file_is_replaced_from_the_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGELAB_DATA_MIRROR", str(_mirror()))
    monkeypatch.setenv("JUDGELAB_CACHE", str(tmp_path / "cache"))
    pin = get_source("self_recognition").file(ARTICLE)
    path = fetch("self_recognition", ARTICLE, download=False)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    again = fetch("self_recognition", ARTICLE, download=False)
    assert again == path
    assert again.stat().st_size == pin.size
    assert again.read_bytes() == good


def test_truncated_gzip_in_mirror_is_reported_not_crashing(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    dest = mirror / "self_recognition" / f"{ARTICLE}.gz"
    dest.parent.mkdir(parents=True)
    src = (_mirror() / "self_recognition" / f"{ARTICLE}.gz").read_bytes()
    dest.write_bytes(src[: len(src) // 3])
    monkeypatch.setenv("JUDGELAB_DATA_MIRROR", str(mirror))
    monkeypatch.setenv("JUDGELAB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataIntegrityError, match="unreadable"):
        fetch("self_recognition", ARTICLE, download=False)


def test_second_mirror_is_used_when_the_first_is_tampered(tmp_path, monkeypatch):
    import os

    bad = _tampered_mirror(tmp_path)
    monkeypatch.setenv("JUDGELAB_DATA_MIRROR", os.pathsep.join([str(bad), str(_mirror())]))
    monkeypatch.setenv("JUDGELAB_CACHE", str(tmp_path / "cache"))
    path = fetch("self_recognition", ARTICLE, download=False)
    assert path.stat().st_size == get_source("self_recognition").file(ARTICLE).size


def test_unknown_path_raises_keyerror_naming_it():
    with pytest.raises(KeyError, match="articles/nope.json"):
        fetch("self_recognition", "articles/nope.json", download=False)


def test_unknown_source_raises_keyerror_naming_it():
    with pytest.raises(KeyError, match="no_such_source"):
        get_source("no_such_source")


@pytest.mark.parametrize("dataset", sr.DATASETS)
def test_thousand_articles_and_five_sources_of_thousand_summaries(dataset):
    _mirror()
    articles = sr.load_articles(dataset)
    assert len(articles) == 1000
    assert articles["key"].is_unique
    assert list(articles["index"]) == list(range(1000))
    assert articles["article"].str.len().min() > 0
    summaries = sr.load_summaries(dataset)
    assert list(summaries.columns) == ["dataset", "index", "key", "author", "summary"]
    counts = summaries.groupby("author")["key"].nunique()
    assert set(counts.index) == set(sr.AUTHORS)
    assert (counts == 1000).all()
    assert len(summaries) == 5000
    assert summaries["summary"].str.strip().str.len().min() > 0
    assert list(summaries["author"].iloc[:5]) == list(sr.AUTHORS)  # article order, then the paper's source order


def test_bad_dataset_name_is_rejected():
    with pytest.raises(ValueError, match="dataset"):
        sr.load_articles("dailymail")


# --- the tour ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def records():
    _mirror()
    return tour.file_records()


def test_manifest_table_matches_pins():
    m = tour.manifest()
    files = get_source("self_recognition").files
    assert len(m) == len(files)
    assert m["bytes"].sum() == sum(p.size for p in files.values())
    assert set(m["folder"]) == set(tour.FOLDER_NOTES)


def test_folder_table_counts_every_file_once(records):
    table = tour.folder_table(records)
    assert list(table["folder"]) == list(tour.FOLDER_NOTES)  # every folder described, in tour order
    assert table["files"].sum() == len(get_source("self_recognition").files)
    assert (table["holds"] != "").all()
    row = table.set_index("folder").loc["articles"]
    assert row["files"] == 2 and row["records"] == 2000 and row["records/file"] == "1000"
    comparisons = table.set_index("folder").loc["comparisons"]
    assert comparisons["records/file"] == "50"


def test_record_kinds_and_schemas(records):
    assert set(records.loc[records["folder"] == "finetuning_data_gpt35", "kind"]) == {"jsonl"}
    assert set(records.loc[records["folder"].isin(["articles", "summaries"]), "kind"]) == {"dict"}
    schemas = tour.record_schemas(records)
    assert schemas["files"].sum() == (records["fields"] != "").sum()
    assert schemas["fields"].str.startswith("key").sum() >= 1
    assert all(f.startswith("key") for f in schemas.loc[schemas["folder"] == "results", "fields"])


def test_word_count():
    assert tour.word_count("") == 0
    assert tour.word_count("  a b\n\tc ") == 3


def test_length_stats_cover_both_datasets_and_all_sources():
    _mirror()
    lengths = tour.text_lengths()
    assert len(lengths) == 2 * (1000 + 5 * 1000)
    stats = tour.length_stats(lengths).set_index(["dataset", "source"])
    assert set(stats.index) == {(d, s) for d in sr.DATASETS for s in ["article", *sr.AUTHORS]}
    assert (stats["n"] == 1000).all()
    for ds in sr.DATASETS:
        art = stats.loc[(ds, "article"), "median_words"]
        for author in sr.AUTHORS:
            assert stats.loc[(ds, author), "median_words"] < art / 3  # summaries are much shorter
            assert 0 < stats.loc[(ds, author), "median_compression"] < 0.5
    # XSUM's references are one-sentence summaries: shorter than CNN/DM's highlights
    assert stats.loc[("xsum", "human"), "median_words"] < stats.loc[("cnn", "human"), "median_words"]


def test_example_has_article_and_five_summaries():
    _mirror()
    ex = tour.example("cnn", 3)
    assert ex["key"] == sr.article_keys("cnn")[3]
    assert set(ex) == {"key", "article", *sr.AUTHORS}
    assert all(isinstance(v, str) and v for v in ex.values())


def test_loaders_work_without_touching_shared_cache(tmp_path, monkeypatch):
    """A fresh cache is filled from the mirror: readers with an empty cache get the same data."""
    monkeypatch.setenv("JUDGELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("JUDGELAB_DATA_MIRROR", str(_mirror()))
    keys = sr.article_keys("xsum")
    assert len(keys) == 1000
    assert (tmp_path / "cache" / "self_recognition" / ARTICLE).is_file()
    shutil.rmtree(tmp_path / "cache")


def test_parse_evaluator_names():
    assert tour.parse_evaluator("gpt4") == {"evaluator": "gpt4", "ft_dataset": None, "variant": None}
    assert tour.parse_evaluator("cnn_10_ft_gpt35") == {"evaluator": "gpt35", "ft_dataset": "cnn", "variant": "10"}
    assert tour.parse_evaluator("xsum_always_1_ft_llama")["variant"] == "always_1"
    with pytest.raises(ValueError, match="not an evaluator"):
        tour.parse_evaluator("claude_ft_gpt35")


def test_result_files_cover_every_variant_on_both_datasets():
    files = tour.result_files("results")
    assert len(files) == 70
    base = files[files["variant"].isna()]
    assert set(base["evaluator"]) == {"gpt35", "gpt4", "llama"}
    tuned = files.dropna(subset=["variant"])
    # each fine-tuned model (2 base models x 2 training sets x 8 variants) is evaluated on both datasets
    counts = tuned.groupby(["evaluator", "ft_dataset", "variant"]).size()
    assert len(counts) == 2 * 2 * len(tour.FINETUNE_VARIANTS) and (counts == 2).all()

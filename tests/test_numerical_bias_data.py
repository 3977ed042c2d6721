"""Data of the numerical-bias chapter: counts, the paper's gold kurtosis, hash checks and malformed rows."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from scipy.stats import kurtosis

from judgelab.data import DataIntegrityError, get_source, mirror_dirs
from judgelab.data import numerical_bias as nb

#: Sato et al. 2026's gold (human) excess kurtosis per MLQE-PE pair.
PAPER_GOLD_KURTOSIS = {"en-de": 1.48, "ne-en": 0.97, "si-en": -0.72}


def _mirror(source: str) -> Path:
    mirrors = [m for m in mirror_dirs() if (m / source).is_dir()]
    if not mirrors:
        pytest.skip(f"no data mirror with {source} (set JUDGELAB_DATA_MIRROR)")
    return mirrors[0]


@pytest.fixture(autouse=True)
def _needs_mirror():
    _mirror("mlqe_pe")


@pytest.mark.parametrize("pair", list(PAPER_GOLD_KURTOSIS))
def test_gold_kurtosis_is_the_papers(pair):
    df = nb.load_mlqe_pe(pair)
    assert len(df) == 1000
    assert round(float(kurtosis(df["gold"], fisher=True)), 2) == PAPER_GOLD_KURTOSIS[pair]


@pytest.mark.parametrize("pair", list(PAPER_GOLD_KURTOSIS))
def test_the_wrong_column_or_split_would_not_reproduce_the_paper(pair):
    """The check above discriminates: z-score means and the dev split give other kurtoses."""
    test20 = nb.load_mlqe_pe(pair)
    dev = nb.load_mlqe_pe(pair, split="dev")
    assert round(float(kurtosis(test20["gold_z"])), 2) != PAPER_GOLD_KURTOSIS[pair]
    assert round(float(kurtosis(dev["gold"])), 2) != PAPER_GOLD_KURTOSIS[pair]
    assert not dev["source"].isin(set(test20["source"])).all()


def test_mlqe_pe_every_pair_has_1000_segments_with_their_raters():
    for pair in nb.MLQE_PAIRS:
        df = nb.load_mlqe_pe(pair)
        assert len(df) == 1000 and df["item"].tolist() == list(range(1000)), pair
        raters = 3 if pair == "ru-en" else 6
        assert (df["ratings"].map(len) == raters).all(), pair
        assert df["gold"].between(0, 100).all(), pair
        assert df["source"].str.len().gt(0).all() and df["translation"].str.len().gt(0).all(), pair
        assert df["doc_id"].str.len().gt(0).all(), pair
    first = nb.load_mlqe_pe("en-de").iloc[0]
    assert first["ratings"] == [91, 90, 90, 90, 100, 95]
    assert first["gold"] == pytest.approx(92.6666666667)
    assert first["source"].startswith("The Sultan appoints judges")


def test_mlqe_pe_rejects_unknown_pairs_and_splits():
    with pytest.raises(ValueError, match="pair must be one of"):
        nb.load_mlqe_pe("de-en")
    with pytest.raises(ValueError, match="split must be one of"):
        nb.load_mlqe_pe("en-de", split="test")


def test_tmu_gfm_has_4221_outputs_with_5_raters_per_aspect():
    df = nb.load_tmu_gfm()
    assert len(df) == 4221
    assert df["source"].nunique() == 1378
    for aspect in nb.TMU_ASPECTS:
        ratings = df[f"ratings_{aspect}"]
        assert (ratings.map(len) == 5).all()
        assert ratings.map(lambda r: all(0 <= v <= 4 for v in r)).all()
        assert df[f"gold_{aspect}"].between(1, 4).all()
    # the upstream means leave out 0 ratings (row 38: grammaticality 2,3,1,0,3 -> 2.25, not 1.8)
    row = df.iloc[38]
    assert row["ratings_grammaticality"] == [2, 3, 1, 0, 3]
    assert row["gold_grammaticality"] == pytest.approx(2.25)
    zeros = {a: int(df[f"ratings_{a}"].map(lambda r: r.count(0)).sum()) for a in nb.TMU_ASPECTS}
    assert zeros == {"grammaticality": 18, "fluency": 0, "meaning": 84}


def test_complex_test_items_and_gold():
    both = nb.load_complex()
    assert len(nb.load_complex("single")) == 917
    assert len(nb.load_complex("multi")) == 184
    assert len(both) == 1101 and both["item"].is_unique
    assert both["gold"].between(0, 1).all()
    assert set(both["corpus"]) == {"bible", "biomed", "europarl"}
    multi = both[both["subset"] == "multi"]
    assert multi["token"].str.contains(" ").all()
    assert len(nb.load_complex("single", split="trial")) == 421
    with pytest.raises(ValueError, match="single words only"):
        nb.load_complex("multi", split="trial")


def test_summeval_1600_summaries():
    df = nb.load_summeval()
    assert len(df) == 1600 and df["item"].is_unique
    assert df["doc_id"].nunique() == 100 and df["system"].nunique() == 16
    for aspect in nb.SUMMEVAL_ASPECTS:
        assert df[aspect].between(1, 5).all()
    assert df["article"].str.len().gt(0).all()


def test_a_file_that_fails_its_hash_stops_naming_the_file(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    dest = mirror / "tmu_gfm" / f"{nb.TMU_FILE}.gz"
    dest.parent.mkdir(parents=True)
    with gzip.open(_mirror("tmu_gfm") / "tmu_gfm" / f"{nb.TMU_FILE}.gz", "rb") as fh:
        raw = bytearray(fh.read())
    raw[200] = ord("X") if raw[200] != ord("X") else ord("Y")
    with gzip.open(dest, "wb") as fh:
        fh.write(bytes(raw))
    monkeypatch.setenv("JUDGELAB_DATA_MIRROR", str(mirror))
    monkeypatch.setenv("JUDGELAB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataIntegrityError) as err:
        nb.load_tmu_gfm()
    msg = str(err.value)
    assert "tmu_gfm/tmu-gfm-dataset.csv" in msg
    assert get_source("tmu_gfm").file(nb.TMU_FILE).sha256 in msg


def _patched_file(tmp_path, monkeypatch, name: str, text: str) -> None:
    """Serve ``text`` in place of every verified file (to test the row checks behind the hash check)."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(nb, "fetch", lambda source, p: path)


def test_malformed_tmu_rows_name_the_row(tmp_path, monkeypatch):
    header = "source,output,grammer,fluency,meaning,system,ave_g,ave_f,ave_m\n"
    good = 'a b,a b,"3,4,3,4,3","3,4,3,4,3","3,4,4,4,3",lstm,3.4,3.4,3.6\n'
    _patched_file(tmp_path, monkeypatch, "t.csv", header + good + 'c,d,"3,4,3,4","3,4,3,4,3","3,4,4,4,3",smt,3.5,3.4,3.6\n')
    with pytest.raises(ValueError, match=r"row 1: column 'grammer' has 4 ratings, expected 5"):
        nb.load_tmu_gfm()
    _patched_file(tmp_path, monkeypatch, "t.csv", header + good + 'c,d,"3,4,3,4,9","3,4,3,4,3","3,4,4,4,3",smt,3.5,3.4,3.6\n')
    with pytest.raises(ValueError, match=r"row 1: column 'grammer' has ratings \[9\] outside \[0, 4\]"):
        nb.load_tmu_gfm()
    _patched_file(tmp_path, monkeypatch, "t.csv", header + 'c,d,"3,4,3,4,3","3,4,3,4,3","3,4,4,4,3",smt,3.0,3.4,3.6\n')
    with pytest.raises(ValueError, match=r"row 0: ave_g=3.0 is not the mean"):
        nb.load_tmu_gfm()


def test_malformed_complex_rows_name_the_row(tmp_path, monkeypatch):
    header = "id\tcorpus\tsentence\ttoken\tcomplexity\n"
    _patched_file(tmp_path, monkeypatch, "c.tsv", header + "x1\tbible\tA b.\tb\t0.2\nx2\tbible\tC d.\td\t1.5\n")
    with pytest.raises(ValueError, match=r"row 1: complexity 1.5 outside \[0, 1\]"):
        nb.load_complex("single")
    _patched_file(tmp_path, monkeypatch, "c.tsv", header + "x1\tbible\tA b.\tb\thard\n")
    with pytest.raises(ValueError, match=r"row 0: column 'complexity' is not a number: 'hard'"):
        nb.load_complex("single")


def test_complex_sentences_with_quotes_are_read_whole():
    """The files are unquoted TSV: a sentence with a lone '"' must not swallow the following rows."""
    df = nb.load_complex("single")
    assert df["sentence"].str.contains('"').any()
    assert not df["sentence"].str.contains("\t").any()

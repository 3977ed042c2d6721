"""Results are written atomically: a failed or interrupted write leaves the previous file, never a torn one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from judgelab.paths import atomic_write, replace_dir, write_csv, write_csvs


def _leftovers(d):
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


def test_write_csv_replaces_the_table_whole(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("old\n")
    os.chmod(path, 0o640)
    write_csv(pd.DataFrame({"a": [1.0, 2.123456789]}), path)
    assert path.read_text() == "a\n1\n2.12346\n"  # the one CSV format: six significant digits
    assert path.stat().st_mode & 0o777 == 0o640 and _leftovers(tmp_path) == []
    new = tmp_path / "sub" / "new.csv"
    assert write_csvs({"new.csv": pd.DataFrame({"b": [1]})}, tmp_path / "sub") == {"new.csv": new}
    assert new.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "pairwise.csv"
    path.write_text("the complete old table\n")

    def half_then_full_disk(self, fh, **kwargs):
        fh.write("a,b\n1,")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_full_disk)
    with pytest.raises(OSError, match="could not write table .*pairwise.csv"):
        write_csv(pd.DataFrame({"a": [1]}), path)
    assert path.read_text() == "the complete old table\n" and _leftovers(tmp_path) == []


def test_file_size_limit_mid_table_leaves_the_old_table(tmp_path):
    """A real short write: the process may not write more than 4 kB, the table is 200 kB (a full disk)."""
    path = tmp_path / "pairwise.csv"
    path.write_text("the complete old table\n")
    script = textwrap.dedent(f"""
        import resource, signal
        import pandas as pd
        from judgelab.paths import write_csv
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            write_csv(pd.DataFrame({{"x": range(40000)}}), {str(path)!r})
        except OSError as err:
            print("failed:", err)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "failed:" in res.stdout and "pairwise.csv" in res.stdout, res.stdout + res.stderr
    assert path.read_text() == "the complete old table\n" and _leftovers(tmp_path) == []


def test_atomic_write_and_replace_dir(tmp_path):
    target = tmp_path / "meta.json"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as fh:
            fh.write("{half")
            raise RuntimeError("killed")
    assert not target.exists() and _leftovers(tmp_path) == []
    old, new = tmp_path / "adapter", tmp_path / "adapter.new"
    old.mkdir()
    (old / "w").write_text("old")
    new.mkdir()
    (new / "w").write_text("new")
    replace_dir(new, old)
    assert (old / "w").read_text() == "new" and not new.exists() and _leftovers(tmp_path) == []

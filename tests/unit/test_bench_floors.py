"""The machine's floors a benchmark records (`bench.floors`): measured on a real file in the
directory it is given, and the file removed again."""
import pytest

from controller.bench import floors


def test_measures_a_real_sync_and_python_and_leaves_nothing(tmp_path):
    got = floors.measure(tmp_path, samples=5, idle_s=0.005)
    assert list(tmp_path.iterdir()) == []       # its file is gone
    for key in ("disk_sync_idle_ms", "disk_sync_back_to_back_ms", "python_idle_ms",
                "python_hot_ms"):
        assert 0 < got[key] < 1000, (key, got[key])
    assert got["python_idle_over_hot"] == got["python_idle_ms"] / got["python_hot_ms"]
    assert (got["samples"], got["idle_ms"], got["write_bytes"]) == (5, 5.0, 8192)
    assert [name for name, _ in floors.rows(got)] == [
        "disk_sync_idle_ms", "disk_sync_back_to_back_ms", "python_idle_ms", "python_hot_ms",
        "python_idle_over_hot"]


def test_syncs_a_file_that_was_written(tmp_path, monkeypatch):
    """Each sync follows a write into that file (not an empty flush)."""
    import os
    calls = []
    real_pwrite, real_sync = os.pwrite, os.fdatasync
    monkeypatch.setattr(floors.os, "pwrite", lambda fd, b, off: calls.append(("w", fd, len(b)))
                        or real_pwrite(fd, b, off))
    monkeypatch.setattr(floors.os, "fdatasync", lambda fd: calls.append(("s", fd))
                        or real_sync(fd))
    floors.measure(tmp_path, samples=3, idle_s=0.001)
    syncs = [i for i, c in enumerate(calls) if c[0] == "s"]
    assert len(syncs) == 6
    for i in syncs:
        assert calls[i - 1] == ("w", calls[i][1], floors.WRITE_BYTES)


@pytest.mark.parametrize("samples, idle_s", [(2, 0.01), (1001, 0.01), (5, 0.0), (5, 2.0)])
def test_refuses_out_of_range(tmp_path, samples, idle_s):
    with pytest.raises(ValueError):
        floors.measure(tmp_path, samples=samples, idle_s=idle_s)
    assert list(tmp_path.iterdir()) == []


def test_a_directory_that_cannot_hold_the_file(tmp_path):
    assert "error" in floors.measure_or_error(tmp_path / "missing")
    with pytest.raises(OSError):
        floors.measure(tmp_path / "missing", samples=3, idle_s=0.001)


def test_a_sync_that_fails_leaves_nothing_and_costs_the_run_only_its_floors(tmp_path,
                                                                             monkeypatch):
    def refuse(fd):
        raise OSError(22, "Invalid argument")
    monkeypatch.setattr(floors.os, "fdatasync", refuse)
    with pytest.raises(OSError):
        floors.measure(tmp_path, samples=3, idle_s=0.001)
    assert list(tmp_path.iterdir()) == []
    got = floors.measure_or_error(tmp_path)
    assert got == {"error": "OSError: [Errno 22] Invalid argument"}
    assert list(tmp_path.iterdir()) == []
    assert floors.rows(got) == [["not measured", got["error"]]]

"""The agent's file notifications: a replaced or rewritten posture file wakes it at once."""
import threading
import time

from controller import jsonfile
from controller.crs.filewatch import FileWatch


def test_a_replaced_file_wakes_the_watcher_and_silence_times_out(tmp_path):
    posture, other = tmp_path / "posture.json", tmp_path / "other.json"
    posture.write_text("{}")
    watch = FileWatch([posture])
    assert watch.notified
    assert watch.wait(0.05) is False                      # nothing happened
    other.write_text("{}")
    assert watch.wait(0.05) is False                      # not a watched file
    timer = threading.Timer(0.2, jsonfile.write_atomic, (posture, {"x": 1}))
    t0 = time.monotonic()
    timer.start()
    assert watch.wait(5.0) is True                        # atomic replace (rename)
    assert time.monotonic() - t0 < 2.0
    with open(posture, "a") as f:                          # rewritten in place
        f.write(" ")
    assert watch.wait(5.0) is True
    watch.close()


def test_without_a_folder_to_watch_it_polls(tmp_path):
    watch = FileWatch([tmp_path / "missing" / "posture.json"])
    assert not watch.notified
    t0 = time.monotonic()
    assert watch.wait(0.05) is False
    assert time.monotonic() - t0 >= 0.05

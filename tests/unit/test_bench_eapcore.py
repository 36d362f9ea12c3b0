"""The in-process EAP-PSK core benchmark (`crs bench auth`, "core per frame"): it times real
exchanges of our supplicant against the controller's core, and every one of them succeeds."""
from __future__ import annotations

import pytest

from controller.bench import eapcore


def test_every_exchange_authenticates_and_each_frame_is_timed():
    res = eapcore.measure(exchanges=4, evict_mib=1)
    assert res["all_succeeded"] is True
    # one first authentication, then three series of four exchanges, each admitting
    assert res["admitted"] == 1 + 3 * 4
    for series in ("reauth_warm_us", "reauth_cold_us", "first_warm_us"):
        assert list(res[series]) == list(eapcore.FRAMES)
        assert all(v > 0 for v in res[series].values())
        assert res[series.replace("_us", "_total_us")] == pytest.approx(
            sum(res[series].values()), abs=0.2)
    rows = eapcore.table(res)
    assert [r[0] for r in rows] == [*eapcore.FRAMES, "all four"]


def test_a_wrong_size_is_refused():
    with pytest.raises(ValueError):
        eapcore.measure(exchanges=1)
    for mib in (0, 65):
        with pytest.raises(ValueError):
            eapcore.measure(evict_mib=mib)

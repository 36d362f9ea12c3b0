"""SMOKE run of the RADIUS authentication benchmark (controller/bench/auth_radius.py): tiny
parameters, about 20 s; checks that it runs end to end and writes a well-formed results
file with both sides measured in the same run. No timing is asserted: a benchmark is not a
test."""
import shutil

import pytest

from controller import jsonfile
from controller.bench import auth_radius


@pytest.mark.skipif(not all(shutil.which(t) for t in ("hostapd", "wpa_supplicant",
                                                         "freeradius")),
                    reason="hostapd, wpa_supplicant and freeradius are needed")
def test_smoke_benchmark_writes_well_formed_auth_radius_json(tmp_path):
    res = auth_radius.run(str(tmp_path), runs=2, workdir=str(tmp_path / "work"))
    doc = jsonfile.read(tmp_path / "auth_radius.json")
    assert doc["benchmark"] == "auth_radius" and doc["machine"]["cores"] and doc["commit"]
    for side in ("ours", "reference"):
        s = doc[side]
        assert s["reauth_ms"]["n"] == 2 and s["failures"] == 0 and s["p50_ms"] > 0, side
        assert s["first_ms"] > 0
    assert doc["controller_counters"]["dot1x_success_radius_tls"] == 3
    assert doc["ratio"]["p50_ours_over_reference"] > 0 and res["ratio"] == doc["ratio"]
    assert "FreeRADIUS" in doc["versions"]["freeradius"]

"""The scheduler's account the auth benchmark reads for the controller's event loop, and
the breakdown it turns into per-exchange figures."""
import os
import time

from controller.bench import common
from controller.bench.auth import breakdown


def test_sched_counts_this_threads_cpu_and_no_more():
    before = common.sched(os.getpid())
    t0 = time.thread_time()
    x = 0
    while time.thread_time() - t0 < 0.05:      # 50 ms on the CPU
        x += 1
    time.sleep(0.05)                           # and 50 ms off it
    d = common.delta(common.sched(os.getpid()), before)
    assert 0.045e9 <= d["run_ns"] < 0.095e9
    assert d["voluntary_ctxt_switches"] >= 1   # the sleep
    assert d["minor_faults"] >= 0 and d["steal_ns"] >= 0 and d["wait_ns"] >= 0


def test_breakdown_per_exchange_from_sched_and_cpu_counters():
    res = {"ours": {"single": {"p50_ms": 2.0}},
           "controller_counters": {"eap_single": {
               "timed_eapol": 40, "time_eapol_core_us": 12_000, "time_eapol_send_us": 400,
               "cpu_eapol_core_us": 10_000, "cpu_eapol_send_us": 200}},
           "controller_sched": {"eap_single": {
               "exchanges": 10, "run_ns": 50_000_000, "wait_ns": 2_000_000,
               "nonvoluntary_ctxt_switches": 5, "steal_ns": 0}}}
    b = breakdown(res)
    assert b["per_message_core_us"] == 300 and b["per_message_core_cpu_us"] == 250
    assert b["per_message_send_cpu_us"] == 5
    assert b["loop_cpu_per_exchange_ms"] == 5.0
    assert b["loop_runqueue_wait_per_exchange_ms"] == 0.2
    assert b["loop_preempted_per_exchange"] == 0.5

"""bench/loadgen/open_loop, the open-loop client of bench/run, against a real
upstream (tests/upstream/upstream.py): it keeps its schedule, charges a
server's stall to every request the stall delayed (coordinated omission
corrected), reconnects when the server closes, and reports a dead server as
timeouts rather than as fast answers.

The binary is built next to remora: <build>/open_loop for REMORA_BIN
<build>/src/remora.
"""

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import REMORA_BIN
from helpers import free_port

OPEN_LOOP = Path(os.environ.get("OPEN_LOOP_BIN", REMORA_BIN.parent.parent / "open_loop"))


def open_loop(port, rate, duration, *extra, timeout=60):
    if not OPEN_LOOP.exists():
        pytest.fail("%s not built (bench/CMakeLists.txt builds it with remora)" % OPEN_LOOP)
    argv = [str(OPEN_LOOP), "--port", str(port), "--rate", str(rate),
            "--duration", str(duration), "--warmup", "0.2", "--connections", "16",
            "--drain", "2"] + [str(x) for x in extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_keeps_the_rate_and_answers_every_request(upstream, tmp_path):
    trace = tmp_path / "trace"
    j = open_loop(upstream.port, 400, 1.5, "--trace", trace)
    assert j["scheduled"] == 680  # 400/s over the 0.2-s warm-up and 1.5 s
    assert j["sent"] == j["completed"] == 680
    assert j["recorded"] == 600
    assert (j["errors"], j["timeouts"], j["non_2xx"], j["reconnects"]) == (0, 0, 0, 0)
    assert 360 <= j["achieved_rps"] <= 410
    assert sum(j["hist"][1::2]) == 600
    # One trace line per recorded request: due time (µs from the start), latency.
    lines = trace.read_text().splitlines()
    assert len(lines) == 600
    due = sorted(int(line.split()[0]) for line in lines)
    assert due[0] == 200_000 and due[-1] == 200_000 + 599 * 2500
    # The server saw every request, each a GET of /.
    requests = upstream.requests()
    assert len(requests) == 680
    assert {(r["method"], r["target"]) for r in requests} == {("GET", "/")}


def test_charges_a_server_stall_to_every_request_it_delays(upstream):
    """The upstream is stopped for 0.5 s in the middle of a 2-s run at 400/s:
    200 requests fall due while it cannot answer. Measured from their due
    times, their latencies spread evenly from ~0.5 s down to ~0: one in ten
    of all 800 is above ~250 ms. A closed-loop client would have sent only
    16 (one per connection) during the stall and recorded one slow sample
    each."""
    stall = threading.Timer(0.2 + 0.7, lambda: os.kill(upstream.proc.pid, signal.SIGSTOP))
    resume = threading.Timer(0.2 + 1.2, lambda: os.kill(upstream.proc.pid, signal.SIGCONT))
    stall.start()
    resume.start()
    try:
        j = open_loop(upstream.port, 400, 2.0)
    finally:
        stall.cancel()
        resume.cancel()
        os.kill(upstream.proc.pid, signal.SIGCONT)
    assert j["recorded"] == 800 and j["errors"] == 0 and j["timeouts"] == 0
    slow = sum(count for us, count in zip(j["hist"][::2], j["hist"][1::2]) if us >= 250_000)
    assert 60 <= slow <= 120, j["p90_us"]
    assert j["max_us"] >= 400_000
    assert j["p50_us"] < 100_000


def test_reconnects_when_the_server_closes_each_connection(upstream):
    j = open_loop(upstream.port, 200, 1.0, "--path", "/close")
    assert j["recorded"] == 200 and j["completed"] == 240
    assert (j["errors"], j["timeouts"], j["non_2xx"]) == (0, 0, 0)
    # Every answer closed its connection: each request after a connection's
    # first went out on a new one.
    assert j["reconnects"] >= 240 - 16


def test_reports_a_dead_server_as_timeouts():
    port = free_port()  # nothing listens there
    j = open_loop(port, 200, 0.5)
    assert j["completed"] == 0 and j["recorded"] == 0
    assert j["timeouts"] == j["scheduled"] == 140
    assert j["reconnects"] > 0

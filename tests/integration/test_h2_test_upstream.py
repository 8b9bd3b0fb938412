"""Self-test of tests/upstream/h2_upstream.py, the HTTP/2 peer the
integration tests trust: talk to it directly (no remora) with the raw frame
client of helpers.py (H2Conn). Runs with the rest of tests/integration.
"""

import hashlib
import selectors
import subprocess
import sys
import time

import pytest

from conftest import H2_UPSTREAM_PY
from helpers import H2_ERRORS, H2Conn, read_json_lines, wait_until


@pytest.fixture
def start(tmp_path):
    procs = []

    def run(*modes, extra=()):
        log = tmp_path / ("h2up-%d.log" % len(procs))
        cmd = [sys.executable, str(H2_UPSTREAM_PY), "--port", "0", "--name", "self",
               "--log", str(log)] + list(extra)
        for m in modes:
            cmd += ["--mode", m]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        procs.append(proc)
        with selectors.DefaultSelector() as sel:  # a bounded wait for "listening on"
            sel.register(proc.stdout, selectors.EVENT_READ)
            line = proc.stdout.readline().decode() if sel.select(10) else ""
        assert line.startswith("listening on "), line
        return int(line.split()[-1]), log

    yield run
    for proc in procs:
        proc.terminate()
        proc.wait(5)
        proc.stdout.close()


def events(log, kind=None):
    return [e for e in read_json_lines(log) if kind is None or e["event"] == kind]


def test_echo_body_trailers_and_log(start):
    port, log = start()
    body = b"x" * 70000  # more than the default 64 KiB window
    with H2Conn(port) as c:
        sid = c.request("POST", "/p?x=1", headers=[("x-a", "1"), ("x-a", "2")], end_stream=False)
        c.send_data(sid, body)
        c.send_headers(sid, [("x-checksum", "abc123")], end_stream=True)
        st = c.response(sid)
        get = c.response(c.request("GET", "/second"))
    assert st.status == 200 and st.header("content-type") == "application/json", st
    echo = st.json()
    assert echo["server"] == "self" and (echo["method"], echo["path"], echo["query"]) == \
        ("POST", "/p", "x=1")
    assert echo["headers"]["x-a"] == "1, 2"
    assert echo["body_bytes"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert echo["trailers"] == {"x-checksum": "abc123"}
    assert (echo["conn"], echo["stream"], echo["seq"]) == (1, 1, 1)
    assert get.status == 200 and (get.json()["stream"], get.json()["seq"]) == (3, 2)
    wait_until(lambda: events(log, "disconnect"), message="disconnect logged")
    kinds = [e["event"] for e in events(log)]
    assert kinds == ["connect", "request", "body", "response", "request", "body", "response",
                     "disconnect"], kinds
    req, done = events(log, "request")[0], events(log, "body")[0]
    assert (req["conn"], req["stream"], req["method"], req["target"]) == (1, 1, "POST", "/p?x=1")
    assert done["trailers"] == {"x-checksum": "abc123"} and done["body_bytes"] == len(body)
    assert events(log, "disconnect")[0]["closed_by"] == "peer"


def test_pings_are_logged_and_acked(start):
    port, log = start()
    with H2Conn(port) as c:
        for i in range(3):
            c.ping(b"ping%04d" % i)
        c.wait(lambda: c.pings_acked == 3, 5, "3 PING ACKs")
    pings = events(log, "ping")
    assert [(p["conn"], p["opaque"], p["acked"]) for p in pings] == \
        [(1, (b"ping%04d" % i).hex(), True) for i in range(3)]


def test_no_ping_ack(start):
    port, log = start("no_ping_ack")
    with H2Conn(port) as c:
        c.ping(b"pingpong")
        assert c.response(c.request("GET", "/after-ping")).status == 200
        c.pump(0.3)
        assert c.pings_acked == 0, c.log
    assert [p["acked"] for p in events(log, "ping")] == [False]


def test_goaway_second(start):
    port, log = start("goaway_second", extra=["--goaway-close-after", "1"])
    with H2Conn(port) as c:
        assert c.response(c.request("GET", "/one")).status == 200
        sid = c.request("GET", "/two")
        c.wait(lambda: c.goaway, 5, "GOAWAY")
        assert c.goaway[:2] == (1, 0), c.goaway  # last stream 1, NO_ERROR
        start_wait = time.monotonic()
        assert c.wait_closed(5)
        assert time.monotonic() - start_wait > 0.5
        assert c.streams[sid].headers is None and not c.streams[sid].done
    assert [(e["last_stream_id"], e["trigger_stream"]) for e in events(log, "goaway_sent")] == \
        [(1, 3)]
    assert events(log, "disconnect")[0]["closed_by"] == "server"
    # A new connection answers its first request again.
    with H2Conn(port) as c:
        assert c.response(c.request("GET", "/three")).json()["conn"] == 2


def test_refuse_first(start):
    port, log = start("refuse_first")
    with H2Conn(port) as c:
        first = c.response(c.request("POST", "/one", body=b"abc"))
        assert H2_ERRORS[first.reset] == "REFUSED_STREAM" and first.headers is None, first
        assert c.response(c.request("POST", "/one", body=b"abc")).status == 200
    with H2Conn(port) as c:
        assert c.response(c.request("GET", "/other-conn")).status == 200
    assert [e["stream"] for e in events(log, "refused")] == [1]


def test_delay(start):
    port, log = start("delay=300")
    with H2Conn(port) as c:
        t0 = time.monotonic()
        assert c.response(c.request("GET", "/slow")).status == 200
        assert time.monotonic() - t0 >= 0.3
        t0 = time.monotonic()
        assert c.response(c.request("GET", "/slower?delay=300")).status == 200
        assert time.monotonic() - t0 >= 0.6

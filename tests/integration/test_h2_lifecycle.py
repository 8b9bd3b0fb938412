"""SIGTERM and SIGHUP seen from HTTP/2 downstream connections.

SIGTERM sends GOAWAY (NO_ERROR) on every h2 connection and lets the streams
in flight finish; streams opened after the GOAWAY are refused. A reload
applies to the streams opened after it, on connections that were already
open, while a stream in flight across the reload finishes under the config
it started with. Frames are read with the raw client of helpers.py (H2Conn);
the load is h2load's.
"""

import copy
import re
import signal
import subprocess
import time

from conftest import simple_config
from helpers import H2_CODES, H2_ERRORS, H2Conn, http_get, metric, wait_until


def _config(up, tag="v1", drain_timeout="10s"):
    """Everything goes to `up`; the route stamps x-config: <tag> on the request."""
    config = simple_config(
        [{"name": "all", "match": {"prefix": "/"}, "cluster": "app",
          "request_headers": {"add": {"x-config": tag}}}],
        [{"name": "app", "endpoints": [up.addr]}])
    config["drain_timeout"] = drain_timeout
    return config


def _pointing_at(config, up, tag):
    new = copy.deepcopy(config)
    new["clusters"][0]["endpoints"] = [up.addr]
    new["route_tables"][0]["routes"][0]["request_headers"]["add"]["x-config"] = tag
    return new


def _arrived(up, target):
    return wait_until(lambda: [q for q in up.requests() if q["target"] == target], timeout=5,
                      message="%s reached the upstream" % target)


def _reloads(r, result):
    return metric(r.metrics(), "remora_config_reloads_total", result=result)


def _echo(st):
    """(server, x-config) of an echo response, after checking it is whole."""
    assert st.status == 200 and st.ended and st.reset is None, st
    length = st.header("content-length")
    if length is not None:
        assert int(length) == st.body_len, "body cut: %r" % st
    echo = st.json()
    return echo["server"], echo["headers"].get("x-config")


def _goaway_detail(c):
    last, code, debug = c.goaway
    return "GOAWAY last_stream_id=%d %s %r" % (last, H2_ERRORS.get(code, code), debug)


# ---------------------------------------------------------------- SIGTERM

def test_sigterm_sends_goaway_and_the_stream_in_flight_completes(procs):
    a = procs.upstream("a")
    r = procs.remora(_config(a, drain_timeout="10s"))
    with H2Conn(r.port(), timeout=15) as c:
        c.wait(lambda: c.settings_acks, 5, "remora's SETTINGS ack")
        # One stream answered before the drain: the connection is in use.
        first = c.response(c.request("GET", "/before"))
        assert first.status == 200, first
        slow = c.request("GET", "/slow?delay=2000")
        _arrived(a, "/slow?delay=2000")

        sent = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        c.wait(lambda: c.goaway, 3, "GOAWAY after SIGTERM")
        last, code, _ = c.goaway
        assert code == H2_CODES["NO_ERROR"], _goaway_detail(c)
        assert last >= slow, "the stream in flight is not covered by the %s" % _goaway_detail(c)
        assert not c.streams[slow].done, \
            "the stream in flight ended at the GOAWAY: %r" % c.streams[slow]
        assert http_get(r.admin + "/ready", timeout=2)[0] == 503

        # A stream opened after the GOAWAY: refused, or above last_stream_id.
        late = c.request("GET", "/after-goaway")
        st = c.response(slow, 10)
        server, tag = _echo(st)
        assert (server, tag) == ("a", "v1"), st
        assert st.json()["path"] == "/slow"

        # Then remora closes the connection: nothing is left on it.
        assert c.wait_closed(5), "connection still open after its last stream (%r)" % c.log[-10:]
        late_st = c.streams[late]
        if late_st.reset is not None:
            assert late_st.reset == H2_CODES["REFUSED_STREAM"], late_st
        else:
            assert late > c.goaway[0], \
                "stream %d (<= %s) was neither answered nor refused: %r" % (
                    late, _goaway_detail(c), late_st)
        assert late_st.headers is None, "a stream opened after GOAWAY was served: %r" % late_st
        # The GOAWAY is not followed by another one with an error.
        assert c.goaway[1] == H2_CODES["NO_ERROR"], _goaway_detail(c)

    code = r.proc.wait(10)
    r.stopped = True
    assert code == 0, code
    # It left once the stream was done, well before drain_timeout (10s).
    assert time.monotonic() - sent < 8
    assert not [q for q in a.requests() if q["target"] == "/after-goaway"]


def test_sigterm_goaway_on_an_idle_h2_connection_does_not_hold_the_drain(procs):
    a = procs.upstream("a")
    r = procs.remora(_config(a, drain_timeout="10s"))
    with H2Conn(r.port()) as c:
        assert c.response(c.request("GET", "/once")).status == 200
        sent = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        c.wait(lambda: c.goaway, 3, "GOAWAY after SIGTERM")
        assert c.goaway[1] == H2_CODES["NO_ERROR"], _goaway_detail(c)
        assert c.goaway[0] == 1, _goaway_detail(c)  # the last stream it processed
        assert c.wait_closed(3), "idle h2 connection not closed after GOAWAY"
        code = r.proc.wait(10)
        r.stopped = True
        assert code == 0
        assert time.monotonic() - sent < 5


def test_drain_timeout_bounds_a_hanging_h2_stream(procs):
    a = procs.upstream("a")
    r = procs.remora(_config(a, drain_timeout="1s"))
    with H2Conn(r.port(), timeout=10) as c:
        hung = c.request("GET", "/hang")
        _arrived(a, "/hang")
        sent = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        c.wait(lambda: c.goaway, 3, "GOAWAY after SIGTERM")
        assert c.goaway[1] == H2_CODES["NO_ERROR"], _goaway_detail(c)
        code = r.proc.wait(10)
        r.stopped = True
        assert code == 0
        assert time.monotonic() - sent < 5
        # The client is not left hanging: the connection is closed.
        assert c.wait_closed(3), "connection still open after remora exited"
        assert not c.streams[hung].ended or c.streams[hung].status != 200, c.streams[hung]


def test_drain_timeout_bounds_an_h2_upload_the_client_stopped_sending(procs):
    """The stream waits for body bytes that never come when the drain time
    runs out: remora still exits 0, promptly (under the sanitizers also
    without a leak: the waiting stream must not keep its connection alive)."""
    a = procs.upstream("a")
    r = procs.remora(_config(a, drain_timeout="1s"))
    with H2Conn(r.port(), timeout=10) as c:
        sid = c.request("POST", "/upload", headers=[("content-length", "100000")],
                        end_stream=False)
        c.send_frame(c.data_frame(sid, b"x" * 1000))
        time.sleep(0.3)  # the head and the first bytes reach the upstream; the rest never come
        sent = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        code = r.proc.wait(10)
        r.stopped = True
        assert code == 0, "exit %d after SIGTERM" % code
        assert time.monotonic() - sent < 5
        assert c.wait_closed(3), "connection still open after remora exited"


# ---------------------------------------------------------------- SIGHUP

def test_reload_applies_to_new_streams_on_an_open_connection(procs):
    a, b = procs.upstream("a"), procs.upstream("b")
    r = procs.remora(_config(a))
    with H2Conn(r.port(), timeout=15) as c:
        assert _echo(c.response(c.request("GET", "/before-reload"))) == ("a", "v1")
        slow = c.request("GET", "/slow?delay=2000")
        _arrived(a, "/slow?delay=2000")

        r.reload(_pointing_at(r.config, b, "v2"))
        wait_until(lambda: _reloads(r, "ok") == 1, timeout=5, message="reloads_total{ok} == 1")
        # New streams on the SAME connection see the new config (the workers
        # pick it up a moment after the reload is counted).
        seen = []

        def new_stream_sees_v2():
            got = _echo(c.response(c.request("GET", "/after-reload/%d" % len(seen))))
            seen.append(got)
            return got == ("b", "v2")

        wait_until(new_stream_sees_v2, timeout=5, interval=0.05,
                   message="a new stream on the open connection sees the new config")
        assert all(s in (("a", "v1"), ("b", "v2")) for s in seen), \
            "a stream saw a mix of the two configs: %r" % seen
        assert not c.streams[slow].done, \
            "the slow stream ended before its delay: %r" % c.streams[slow]

        # The stream in flight across the reload finishes under the old config.
        assert _echo(c.response(slow, 10)) == ("a", "v1")
        assert _echo(c.response(c.request("GET", "/later"))) == ("b", "v2")
        assert c.goaway is None and not c.closed, c.log[-10:]
    assert _reloads(r, "failed") == 0
    got = [q for q in b.requests() if q["target"] == "/later"]
    assert len(got) == 1 and got[0]["headers"].get("x-config") == "v2", got


def test_h2load_through_three_reloads(procs):
    """h2load: 4000 requests on 4 connections, 10 streams each, while the
    config is reloaded 3 times (the cluster alternates between two upstreams):
    every request succeeds and each reached exactly one upstream once."""
    a, b = procs.upstream("a"), procs.upstream("b")
    r = procs.remora(_config(a))
    port = r.port()
    n = 4000
    target = "/load?delay=25"  # 25 ms each, 40 streams in flight: the load lasts >= 2.5 s
    proc = subprocess.Popen(["h2load", "-n", str(n), "-c", "4", "-m", "10",
                             "http://127.0.0.1:%d%s" % (port, target)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: len([q for q in a.requests() if q["target"] == target]) >= 100,
                   timeout=10, message="h2load's requests reach the upstream")
        targets = [(b, "v2"), (a, "v3"), (b, "v4")]
        for i, (up, tag) in enumerate(targets, 1):
            r.reload(_pointing_at(r.config, up, tag))
            r.config = _pointing_at(r.config, up, tag)
            wait_until(lambda: _reloads(r, "ok") == i, timeout=5,
                       message="reloads_total{ok} == %d" % i)
            assert proc.poll() is None, \
                "h2load ended before reload %d was applied: the reloads were not under load" % i
            time.sleep(0.3)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out[-3000:]
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    assert m, out[-3000:]
    total, started, done, succeeded, failed, errored, timeout = map(int, m.groups())
    assert (done, succeeded, failed, errored, timeout) == (n, n, 0, 0, 0), m.group(0)
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    assert m and int(m.group(1)) == n, out[-3000:]
    assert _reloads(r, "ok") == 3 and _reloads(r, "failed") == 0
    # None lost, none doubled; both upstreams had a share (the reloads applied).
    on_a = [q for q in a.requests() if q["target"] == target]
    on_b = [q for q in b.requests() if q["target"] == target]
    assert len(on_a) + len(on_b) == n, (len(on_a), len(on_b))
    assert on_a and on_b, (len(on_a), len(on_b))
    tags = {q["headers"].get("x-config") for q in on_a + on_b}
    assert tags <= {"v1", "v2", "v3", "v4"} and len(tags) >= 3, tags
    assert {q["headers"].get("x-config") for q in on_b} <= {"v2", "v4"}
    assert {q["headers"].get("x-config") for q in on_a} <= {"v1", "v3"}

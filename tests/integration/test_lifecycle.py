"""SIGHUP reloads and SIGTERM drains, with requests in flight."""

import copy
import signal
import socket
import threading
import time

from conftest import simple_config
from helpers import RawConn, http_get, http_request, metric, request_bytes, wait_until


def _config(a):
    return simple_config([{"name": "all", "match": {"prefix": "/"}, "cluster": "a"}],
                         [{"name": "a", "endpoints": [a.addr]}])


def _with_new_route(config, b):
    new = copy.deepcopy(config)
    new["clusters"].append({"name": "b", "endpoints": [b.addr]})
    new["route_tables"][0]["routes"].insert(0, {"name": "new", "match": {"prefix": "/new"},
                                                "cluster": "b"})
    return new


class InFlight(threading.Thread):
    """A request run in the background; .result is the HttpResult or the exception."""

    def __init__(self, port, target, timeout=20):
        super().__init__(daemon=True)
        self.port, self.target, self.timeout = port, target, timeout
        self.result = None
        self.start()

    def run(self):
        try:
            self.result = http_request(self.port, "GET", self.target, timeout=self.timeout)
        except Exception as e:
            self.result = e


def _arrived(up, target):
    return wait_until(lambda: [q for q in up.requests() if q["target"] == target], timeout=5,
                      message="%s reached the upstream" % target)


def _reloads(r, result):
    return metric(r.metrics(), "remora_config_reloads_total", result=result)


def test_sighup_reload_applies_while_a_request_is_in_flight(procs):
    a, b = procs.upstream("a"), procs.upstream("b")
    r = procs.remora(_config(a))
    assert http_request(r.port(), "GET", "/new").json()["server"] == "a"
    slow = InFlight(r.port(), "/slow?delay=2000")
    _arrived(a, "/slow?delay=2000")
    r.reload(_with_new_route(r.config, b))
    wait_until(lambda: http_request(r.port(), "GET", "/new/x").json()["server"] == "b",
               timeout=5, message="the new route answers")
    slow.join(15)
    assert not isinstance(slow.result, Exception), slow.result
    assert slow.result.status == 200 and slow.result.json()["server"] == "a", slow.result
    assert _reloads(r, "ok") == 1
    assert _reloads(r, "failed") == 0
    assert http_request(r.port(), "GET", "/other").json()["server"] == "a"


def test_rejected_reload_keeps_the_old_config(procs):
    a, b = procs.upstream("a"), procs.upstream("b")
    r = procs.remora(_config(a))
    broken = _with_new_route(r.config, b)
    broken["route_tables"][0]["routes"][0]["retires"] = {"attempts": 2}
    r.reload(broken)
    wait_until(lambda: _reloads(r, "failed") == 1, timeout=5, message="reloads_total{failed} == 1")
    assert r.proc.poll() is None, "remora exited on a bad reload"
    assert http_get(r.admin + "/ready")[0] == 200
    res = http_request(r.port(), "GET", "/new/x")
    assert res.status == 200 and res.json()["server"] == "a", "new route applied from a rejected file"
    assert _reloads(r, "ok") == 0
    assert "retires" in r.log_path.read_text(errors="replace"), "the rejection reason is not logged"
    # The next good file applies.
    r.reload(_with_new_route(r.config, b))
    wait_until(lambda: _reloads(r, "ok") == 1, timeout=5, message="reloads_total{ok} == 1")
    assert http_request(r.port(), "GET", "/new/x").json()["server"] == "b"


def _refused_or_unserved(port):
    """True when a new connection is refused, or closed without being served."""
    try:
        with RawConn(port, timeout=2) as c:
            c.send(request_bytes("GET", "/after-drain"))
            c.read_final_response()
            return False
    except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError, EOFError):
        return True
    except socket.timeout:
        return False


def test_sigterm_drains_in_flight_then_exits_0(procs):
    a = procs.upstream("a")
    config = _config(a)
    config["drain_timeout"] = "10s"
    r = procs.remora(config)
    slow = InFlight(r.port(), "/slow?delay=3000")
    _arrived(a, "/slow?delay=3000")
    sent = time.monotonic()
    r.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: http_get(r.admin + "/ready", timeout=1)[0] == 503, timeout=2,
               message="/ready answers 503 while draining")
    wait_until(lambda: _refused_or_unserved(r.port()), timeout=2,
               message="new connections refused while draining")
    assert r.proc.poll() is None, "remora exited with a request in flight"
    slow.join(15)
    assert not isinstance(slow.result, Exception), slow.result
    assert slow.result.status == 200, slow.result
    code = r.proc.wait(10)
    assert code == 0
    # It left once the last request was done, not at the end of drain_timeout.
    assert time.monotonic() - sent < 8
    assert _refused_or_unserved(r.port())
    r.stopped = True


def test_drain_timeout_bounds_a_hanging_request(procs):
    a = procs.upstream("a")
    config = _config(a)
    config["drain_timeout"] = "1s"
    r = procs.remora(config)
    hung = InFlight(r.port(), "/hang", timeout=20)
    _arrived(a, "/hang")
    sent = time.monotonic()
    r.proc.send_signal(signal.SIGTERM)
    code = r.proc.wait(10)
    assert code == 0
    assert time.monotonic() - sent < 5
    r.stopped = True
    hung.join(5)
    assert hung.result is not None, "the client was left hanging after remora exited"


def test_idle_keep_alive_connection_does_not_hold_the_drain(procs):
    a = procs.upstream("a")
    config = _config(a)
    config["drain_timeout"] = "10s"
    r = procs.remora(config)
    with RawConn(r.port()) as idle:
        idle.send(request_bytes("GET", "/once"))
        assert idle.read_final_response().status == 200
        sent = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        code = r.proc.wait(10)
        r.stopped = True
        assert code == 0
        assert time.monotonic() - sent < 5
        assert idle.closed_by_peer(2)

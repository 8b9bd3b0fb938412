"""Fixtures for remora's integration tests: real processes on 127.0.0.1.

`upstreams` starts tests/upstream/upstream.py instances, `remora` writes a YAML
config into the test's directory and runs the real binary
(REMORA_BIN, default <repo>/build/src/remora) until its admin /ready answers.
Everything is stopped by PID at teardown; remora must then exit 0.
Logs of the processes a failed test used are attached to its report.
"""

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import (REPO, free_port, http_get, wait_until, parse_metrics,
                     read_json_lines)

REMORA_BIN = Path(os.environ.get("REMORA_BIN", REPO / "build" / "src" / "remora"))
UPSTREAM_PY = REPO / "tests" / "upstream" / "upstream.py"
H2_UPSTREAM_PY = REPO / "tests" / "upstream" / "h2_upstream.py"

# Process owners alive now; their logs are attached to a failed test's report.
_LIVE = []


def _tail(path, limit=12000):
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return "<%s>" % e
    text = data[-limit:].decode("utf-8", "replace")
    return ("...\n" if len(data) > limit else "") + text


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for owner in list(_LIVE):
            for label, path in owner.logs:
                report.sections.append(("log of " + label, _tail(path)))


def _stop(proc, timeout=20.0):
    """SIGTERM, wait, SIGKILL fallback. Returns (exit code, was killed)."""
    if proc.poll() is not None:
        return proc.returncode, False
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout), False
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10), True


class Upstream:
    def __init__(self, workdir, logs, name, delay=0, error_rate=0.0, port=0):
        self.name = name
        self.log_path = Path(workdir) / ("upstream-%s.log" % name)
        self.out_path = Path(workdir) / ("upstream-%s.out" % name)
        cmd = [sys.executable, str(UPSTREAM_PY), "--host", "127.0.0.1", "--port", str(port),
               "--name", name, "--log", str(self.log_path)]
        if delay:
            cmd += ["--delay", str(delay)]
        if error_rate:
            cmd += ["--error-rate", str(error_rate)]
        self._launch(cmd, logs, name)

    def _launch(self, cmd, logs, name):
        self.log_path.touch()
        self._out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._out)
        logs.append(("upstream " + name, self.log_path))
        logs.append(("upstream %s stderr" % name, self.out_path))
        line = self._readline(10.0)
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError("upstream %s did not start: %r\n%s" % (name, line, _tail(self.out_path)))
        self.port = int(line.split()[-1])
        self.addr = "127.0.0.1:%d" % self.port

    def _readline(self, timeout):
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
        return self.proc.stdout.readline().decode().strip()

    def events(self, kind=None):
        return [e for e in read_json_lines(self.log_path) if kind is None or e.get("event") == kind]

    def requests(self):
        """Requests whose head arrived, with the body fields merged in when complete."""
        events = read_json_lines(self.log_path)
        bodies = {e["id"]: e for e in events if e.get("event") in ("body", "aborted")}
        out = []
        for e in events:
            if e.get("event") == "request":
                r = dict(e)
                b = bodies.get(e["id"])
                if b:
                    r["complete"] = b["event"] == "body"
                    r["body_bytes"] = b.get("body_bytes")
                    r["body_sha256"] = b.get("body_sha256")
                    r["trailers"] = b.get("trailers")
                else:
                    r["complete"] = False
                out.append(r)
        return out

    def stop(self):
        _stop(self.proc, 5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._out.close()


class H2Upstream(Upstream):
    """tests/upstream/h2_upstream.py: an HTTP/2 (h2c) upstream on python3-h2.

    mode: None, or goaway_second / refuse_first / no_ping_ack (a list or a
    comma-separated string; they combine); delay: ms before each response's
    HEADERS. Its log has the events of upstream.py ("connect", "request",
    "body", "aborted", "disconnect") plus stream ids and h2 events ("ping",
    "goaway_sent", "refused", "response", ...): see the script's docstring."""

    def __init__(self, workdir, logs, name, mode=None, delay=0, port=0, goaway_close_after=3.0):
        self.name = name
        self.log_path = Path(workdir) / ("h2upstream-%s.log" % name)
        self.out_path = Path(workdir) / ("h2upstream-%s.out" % name)
        cmd = [sys.executable, str(H2_UPSTREAM_PY), "--host", "127.0.0.1", "--port", str(port),
               "--name", name, "--log", str(self.log_path),
               "--goaway-close-after", str(goaway_close_after)]
        modes = [mode] if isinstance(mode, str) else list(mode or ())
        for m in modes:
            cmd += ["--mode", m]
        if delay:
            cmd += ["--delay", str(delay)]
        self._launch(cmd, logs, "h2 " + name)

    def requests(self):
        """Requests whose HEADERS arrived, one per stream, with what became of
        them merged in: complete/body_bytes/body_sha256/trailers (END_STREAM
        received), answered (response HEADERS sent), refused (RST_STREAM
        REFUSED_STREAM sent), aborted (reset by remora or connection gone)."""
        events = read_json_lines(self.log_path)
        by_id = {}
        for e in events:
            if "id" in e and e.get("event") != "request":
                by_id.setdefault(e["id"], []).append(e)
        out = []
        for e in events:
            if e.get("event") != "request":
                continue
            r = dict(e)
            r.update(complete=False, answered=False, refused=False, aborted=False)
            for later in by_id.get(e["id"], ()):
                kind = later["event"]
                if kind == "body":
                    r["complete"] = True
                    r["body_bytes"] = later["body_bytes"]
                    r["body_sha256"] = later["body_sha256"]
                    r["trailers"] = later["trailers"]
                elif kind == "response":
                    r["answered"] = True
                elif kind == "refused":
                    r["refused"] = True
                elif kind == "aborted":
                    r["aborted"] = True
                    r.setdefault("body_bytes", later.get("body_bytes"))
            out.append(r)
        return out

    def connections(self):
        """Connection numbers the upstream accepted, in order."""
        return [e["conn"] for e in self.events("connect")]

    def pings(self, conn=None):
        """PINGs (not ACKs) received, on connection `conn` or on all."""
        return [e for e in self.events("ping") if conn is None or e["conn"] == conn]

    def disconnect(self, conn):
        """The "disconnect" event of connection `conn`, or None while it is open."""
        return next((e for e in self.events("disconnect") if e["conn"] == conn), None)


class Remora:
    def __init__(self, workdir, logs, config, name="remora", wait_ready=True):
        self.workdir = Path(workdir)
        self.config = self._complete(copy.deepcopy(config))
        self.config_path = self.workdir / ("%s.yaml" % name)
        self.log_path = self.workdir / ("%s.out" % name)
        self.write_config(self.config)
        if not REMORA_BIN.exists():
            pytest.fail("remora binary not found at %s (build it, or set REMORA_BIN)" % REMORA_BIN)
        self._out = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(REMORA_BIN), "run", "-c", str(self.config_path)],
                                     stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        logs.append((name + " stdout+stderr", self.log_path))
        self.stopped = False
        if wait_ready:
            self.wait_ready()

    @staticmethod
    def _complete(config):
        config.setdefault("admin", {}).setdefault("address", "127.0.0.1:%d" % free_port())
        config.setdefault("workers", 2)
        config.setdefault("drain_timeout", "2s")
        for listener in config.get("listeners", []):
            listener.setdefault("address", "127.0.0.1:%d" % free_port())
        return config

    def write_config(self, config):
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        os.replace(tmp, self.config_path)

    @property
    def admin(self):
        return "http://" + self.config["admin"]["address"]

    def port(self, listener=None):
        listeners = self.config["listeners"]
        entry = listeners[0] if listener is None else next(l for l in listeners if l["name"] == listener)
        return int(entry["address"].rsplit(":", 1)[1])

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("remora exited with %s before /ready answered:\n%s"
                            % (self.proc.returncode, _tail(self.log_path)))
            try:
                status, _, _ = http_get(self.admin + "/ready", timeout=1)
                if status == 200:
                    return
                last = status
            except OSError as e:
                last = e
            time.sleep(0.05)
        pytest.fail("remora /ready did not answer 200 within %ss (last: %r):\n%s"
                    % (timeout, last, _tail(self.log_path)))

    def metrics_text(self):
        status, _, body = http_get(self.admin + "/metrics", timeout=5)
        assert status == 200, "/metrics answered %s" % status
        return body.decode()

    def metrics(self):
        return parse_metrics(self.metrics_text())

    def reload(self, config):
        """Writes `config` over the file and sends SIGHUP (the caller checks the outcome)."""
        self.write_config(config)
        self.proc.send_signal(signal.SIGHUP)

    def vm_status(self, field):
        """A /proc/PID/status field in KiB (VmHWM, VmRSS)."""
        for line in Path("/proc/%d/status" % self.pid).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def stop(self, timeout=20.0):
        if self.stopped:
            return self.proc.returncode
        self.stopped = True
        code, killed = _stop(self.proc, timeout)
        self._out.close()
        assert not killed, "remora did not exit within %ss of SIGTERM (killed)" % timeout
        return code


class _Processes:
    """Owns the processes of one test (or one module) and stops them by PID."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.upstreams = []
        self.remoras = []
        self.logs = []
        _LIVE.append(self)

    def upstream(self, name="up", **kw):
        up = Upstream(self.workdir, self.logs, name, **kw)
        self.upstreams.append(up)
        return up

    def h2_upstream(self, name="h2up", mode=None, **kw):
        """An HTTP/2 upstream (tests/upstream/h2_upstream.py), see H2Upstream."""
        up = H2Upstream(self.workdir, self.logs, name, mode=mode, **kw)
        self.upstreams.append(up)
        return up

    def remora(self, config, name="remora", wait_ready=True):
        r = Remora(self.workdir, self.logs, config, name=name, wait_ready=False)
        self.remoras.append(r)
        if wait_ready:
            r.wait_ready()
        return r

    def close(self):
        errors = []
        for r in self.remoras:
            if r.stopped:
                continue
            try:
                code = r.stop()
                if code != 0:
                    errors.append("remora exited %s at teardown:\n%s" % (code, _tail(r.log_path)))
            except AssertionError as e:
                errors.append("%s\n%s" % (e, _tail(r.log_path)))
        for up in self.upstreams:
            up.stop()
        _LIVE.remove(self)
        if errors:
            pytest.fail("\n".join(errors))


@pytest.fixture
def procs(tmp_path):
    p = _Processes(tmp_path)
    yield p
    p.close()


@pytest.fixture(scope="module")
def module_procs(tmp_path_factory, request):
    p = _Processes(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]))
    yield p
    p.close()


@pytest.fixture
def upstream(procs):
    return procs.upstream("up")


def simple_config(routes, clusters, **extra):
    """One listener "main" with route table "main"."""
    config = {
        "listeners": [{"name": "main", "route_table": "main"}],
        "route_tables": [{"name": "main", "routes": routes}],
        "clusters": clusters,
    }
    config.update(extra)
    return config


def one_cluster_config(up, **extra):
    return simple_config([{"name": "all", "match": {"prefix": "/"}, "cluster": "app"}],
                         [{"name": "app", "endpoints": [up.addr]}], **extra)


@pytest.fixture
def proxied(procs, upstream):
    """remora in front of one upstream: everything goes to cluster "app"."""
    return procs.remora(one_cluster_config(upstream)), upstream


def pytest_configure(config):
    # Run in the plain build only: under ASan, RSS is mostly shadow memory.
    config.addinivalue_line("markers", "memory_bound: asserts remora's RSS stays under a bound")

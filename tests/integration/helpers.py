"""Small clients and parsers shared by the integration tests (stdlib only)."""

import hashlib
import http.client
import json
import re
import socket
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_given_ports = set()


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now (never the same twice)."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _given_ports:
            _given_ports.add(port)
            return port
    raise RuntimeError("no free port")


def wait_until(fn, timeout=5.0, interval=0.05, message="condition"):
    """Polls fn() until it returns a truthy value (returned) or fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
            if last:
                return last
        except (OSError, AssertionError, ValueError, KeyError) as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError("%s not met within %ss (last: %r)" % (message, timeout, last))
        time.sleep(interval)


def read_json_lines(path):
    out = []
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line being written right now
    return out


class HttpResult:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> value (repeats joined with ", ")
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<HTTP %s %r %r>" % (self.status, self.headers, self.body[:300])


def _collect_headers(pairs):
    out = {}
    for k, v in pairs:
        k = k.lower()
        out[k] = v if k not in out else out[k] + ", " + v
    return out


def http_request(port, method="GET", target="/", headers=None, body=None, timeout=10.0,
                 conn=None):
    """One request with http.client; pass `conn` to reuse a keep-alive connection."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return HttpResult(resp.status, _collect_headers(resp.getheaders()), data)
    finally:
        if own:
            conn.close()


def http_get(url, timeout=5.0):
    """GET an absolute http://127.0.0.1:PORT/path URL → (status, headers, body)."""
    m = re.match(r"http://([^/:]+):(\d+)(/.*)?$", url)
    conn = http.client.HTTPConnection(m.group(1), int(m.group(2)), timeout=timeout)
    try:
        conn.request("GET", m.group(3) or "/")
        resp = conn.getresponse()
        return resp.status, _collect_headers(resp.getheaders()), resp.read()
    finally:
        conn.close()


class Response:
    def __init__(self):
        self.status = None
        self.reason = ""
        self.version = ""
        self.headers = []
        self.body = b""
        self.body_len = 0
        self.sha256 = None
        self.trailers = []

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %s %s %r body=%r>" % (self.status, self.reason, self.headers, self.body[:300])


class RawConn:
    """A raw TCP client: send exact bytes, parse HTTP/1.1 responses by hand."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(256 * 1024)
        if not data:
            raise EOFError("connection closed by peer (buffered: %r)" % self.buf[:200])
        self.buf += data

    def read_until(self, delim, limit=1 << 20):
        while delim not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("no %r within %d bytes" % (delim, limit))
            self._fill()
        i = self.buf.index(delim) + len(delim)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n, sink=None):
        out = []
        while n > 0:
            if not self.buf:
                self._fill()
            piece, self.buf = self.buf[:n], self.buf[n:]
            n -= len(piece)
            if sink:
                sink(piece)
            else:
                out.append(piece)
        return b"".join(out)

    def read_response(self, method="GET", keep_body=True):
        """Reads one response (a 1xx too). The body is hashed as it arrives."""
        r = Response()
        head = self.read_until(b"\r\n\r\n").decode("latin-1")
        lines = head[:-4].split("\r\n")
        parts = lines[0].split(" ", 2)
        r.version = parts[0]
        r.status = int(parts[1])
        r.reason = parts[2] if len(parts) > 2 else ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            r.headers.append((name.strip(), value.strip()))
        h = hashlib.sha256()
        pieces = []

        def sink(data):
            h.update(data)
            r.body_len += len(data)
            if keep_body:
                pieces.append(data)

        if method == "HEAD" or r.status < 200 or r.status in (204, 304):
            pass
        elif "chunked" in (r.header("transfer-encoding") or "").lower():
            while True:
                size_line = self.read_until(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    break
                self.read_exact(size, sink)
                assert self.read_exact(2) == b"\r\n", "bad chunk framing"
            while True:
                line = self.read_until(b"\r\n")
                if line == b"\r\n":
                    break
                name, _, value = line[:-2].decode("latin-1").partition(":")
                r.trailers.append((name.strip(), value.strip()))
        elif r.header("content-length") is not None:
            self.read_exact(int(r.header("content-length")), sink)
        else:
            while True:
                if self.buf:
                    sink(self.buf)
                    self.buf = b""
                try:
                    self._fill()
                except EOFError:
                    break
        r.body = b"".join(pieces)
        r.sha256 = h.hexdigest()
        return r

    def read_final_response(self, method="GET", keep_body=True):
        while True:
            r = self.read_response(method, keep_body)
            if r.status >= 200 or r.status == 101:
                return r

    def closed_by_peer(self, timeout=5.0):
        """True when the peer closes (FIN or RST) within timeout; extra bytes are discarded."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return False


def request_bytes(method, target, headers=(), body=b"", host="test.local"):
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: " + host]
    lines += ["%s: %s" % (k, v) for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


_METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text → list of (name, {label: value}, float)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _METRIC_LINE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric(samples, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for n, l, v in samples:
        if n == name and all(l.get(k) == str(val) for k, val in labels.items()):
            total += v
    return total


def has_metric(samples, name, **labels):
    return any(n == name and all(l.get(k) == str(val) for k, val in labels.items())
               for n, l, v in samples)


def _load_upstream_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("remora_upstream", REPO / "tests" / "upstream" / "upstream.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_upstream_mod = _load_upstream_module()
pattern_sha256 = _upstream_mod.pattern_sha256  # sha256 of /download?bytes=N


def project_version():
    m = re.search(r"project\(remora VERSION ([0-9.]+)", (REPO / "CMakeLists.txt").read_text())
    return m.group(1)

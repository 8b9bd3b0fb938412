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


# ---------------------------------------------------------------- HTTP/2 (raw frames)
# Used by the test_h2*.py files: a client that speaks HTTP/2 frame by frame on a
# raw socket (hyperframe for framing, hpack for header blocks), so that a test
# can send what a well-behaved library would refuse to (floods, bad headers)
# and see exactly what comes back (END_STREAM on HEADERS, RST_STREAM and
# GOAWAY codes).

try:
    import hpack as _hpack
    from hyperframe import frame as _hf
except ImportError:  # python3-h2 (scripts/deps) brings both
    _hpack = _hf = None

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_ERRORS = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
             4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR",
             7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR",
             11: "ENHANCE_YOUR_CALM", 12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}
H2_CODES = {v: k for k, v in H2_ERRORS.items()}


class H2Stream:
    """What came back on one stream."""

    def __init__(self, sid, keep_body=True):
        self.id = sid
        self.keep_body = keep_body
        self.headers = None          # list of (name, value) of the first HEADERS
        self.headers_end_stream = False  # END_STREAM was on that HEADERS frame
        self.trailers = None
        self.body = bytearray()
        self.body_len = 0
        self.sha = hashlib.sha256()
        self.data_frames = 0
        self.ended = False           # END_STREAM received
        self.reset = None            # RST_STREAM error code received
        self.send_window = 65535

    @property
    def status(self):
        v = self.header(":status")
        return int(v) if v is not None else None

    def header(self, name, default=None):
        for k, v in self.headers or ():
            if k == name:
                return v
        return default

    def trailer(self, name, default=None):
        for k, v in self.trailers or ():
            if k == name:
                return v
        return default

    @property
    def done(self):
        return self.ended or self.reset is not None

    def json(self):
        return json.loads(bytes(self.body))

    def __repr__(self):
        return ("<H2Stream %d headers=%r end_on_headers=%s trailers=%r body=%d bytes %r "
                "ended=%s reset=%s>" % (self.id, self.headers, self.headers_end_stream,
                                         self.trailers, self.body_len, bytes(self.body[:200]),
                                         self.ended, H2_ERRORS.get(self.reset, self.reset)))


class H2Conn:
    """A raw HTTP/2 (h2c, prior knowledge) client connection.

    window: the client's initial stream window and connection window
    (received DATA is acknowledged at once when auto_window is on).
    Every wait is bounded by `timeout`; frames received are logged (last 2000)
    in self.log as (type, stream id, flags, detail) for error messages."""

    def __init__(self, port, timeout=10.0, window=16 * 1024 * 1024, preface=True,
                 settings=None, auto_ack=True, auto_ping=True, auto_window=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = bytearray()
        self.enc = _hpack.Encoder()
        self.dec = _hpack.Decoder()
        self.dec.max_header_list_size = 1 << 24
        self.next_id = 1
        self.streams = {}
        self.peer_settings = {}
        self.peer_initial_window = 65535
        self.conn_send_window = 65535
        self.settings_acks = 0
        self.pings_acked = 0
        self.goaway = None           # (last stream id, error code, debug data)
        self.closed = False
        self.log = []
        self.frames_received = 0
        self.auto_ack = auto_ack
        self.auto_ping = auto_ping
        self.auto_window = auto_window
        self._hblock = None          # (stream id, end_stream, fragments) being assembled
        self.reset_sent = set()
        if preface:
            s = _hf.SettingsFrame(0)
            s.settings = {_hf.SettingsFrame.INITIAL_WINDOW_SIZE: window,
                          _hf.SettingsFrame.ENABLE_PUSH: 0}
            s.settings.update(settings or {})
            out = H2_PREFACE + s.serialize()
            if window > 65535:
                out += _hf.WindowUpdateFrame(0, window_increment=window - 65535).serialize()
            self.send(out)

    # -- sending
    def send(self, data):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True
            raise

    def send_frame(self, frame):
        self.send(frame.serialize())

    def stream(self, sid, keep_body=True):
        if sid not in self.streams:
            st = H2Stream(sid, keep_body)
            st.send_window = self.peer_initial_window
            self.streams[sid] = st
        return self.streams[sid]

    def new_stream_id(self):
        sid = self.next_id
        self.next_id += 2
        return sid

    def header_block(self, headers):
        return self.enc.encode(list(headers), huffman=False)

    def headers_frames(self, sid, headers, end_stream=False, max_frame=16384):
        """HEADERS (+ CONTINUATION) frames carrying `headers` exactly as given."""
        block = self.header_block(headers)
        pieces = [block[i:i + max_frame] for i in range(0, len(block), max_frame)] or [b""]
        frames = []
        for i, piece in enumerate(pieces):
            f = _hf.HeadersFrame(sid) if i == 0 else _hf.ContinuationFrame(sid)
            f.data = piece
            if i == 0 and end_stream:
                f.flags.add("END_STREAM")
            if i == len(pieces) - 1:
                f.flags.add("END_HEADERS")
            frames.append(f)
        return frames

    def send_headers(self, sid, headers, end_stream=False):
        self.stream(sid)
        self.send(b"".join(f.serialize() for f in self.headers_frames(sid, headers, end_stream)))

    def request(self, method="GET", path="/", headers=(), body=None, authority="test.local",
                end_stream=None, keep_body=True, content_length=True):
        """Opens a stream; a body (bytes) follows in DATA frames, sent within the
        flow-control windows. end_stream=False leaves the request open for send_data()."""
        sid = self.new_stream_id()
        self.stream(sid, keep_body)
        hs = [(":method", method), (":scheme", "http"), (":authority", authority),
              (":path", path)] + list(headers)
        if body is not None and content_length:
            hs.append(("content-length", str(len(body))))
        if end_stream is None:
            end_stream = True
        self.send_headers(sid, hs, end_stream=end_stream and body is None)
        if body is not None:
            self.send_data(sid, body, end_stream=end_stream)
        return sid

    def data_frame(self, sid, data, end_stream=False):
        f = _hf.DataFrame(sid, data=data)
        if end_stream:
            f.flags.add("END_STREAM")
        return f

    def send_data(self, sid, data, end_stream=False, deadline=None):
        """Sends data as DATA frames when the peer's windows allow (waits for them)."""
        st = self.stream(sid)
        view = memoryview(data)
        deadline = deadline or time.monotonic() + self.timeout
        while True:
            n = min(len(view), 16384, self.conn_send_window, st.send_window)
            if n > 0 or len(view) == 0:
                last = n == len(view)
                self.send_frame(self.data_frame(sid, bytes(view[:n]), end_stream and last))
                self.conn_send_window -= n
                st.send_window -= n
                view = view[n:]
                if last:
                    return
                continue
            if st.done or self.closed or self.goaway:
                raise AssertionError("stream %d ended while sending: %r goaway=%r"
                                     % (sid, st, self.goaway))
            if time.monotonic() > deadline:
                raise AssertionError("no window to send on stream %d (conn %d, stream %d)"
                                     % (sid, self.conn_send_window, st.send_window))
            self.pump(0.5)

    def rst(self, sid, code="CANCEL"):
        self.reset_sent.add(sid)
        self.send_frame(_hf.RstStreamFrame(sid, error_code=H2_CODES.get(code, code)))

    def ping(self, opaque=b"12345678"):
        self.send_frame(_hf.PingFrame(0, opaque_data=opaque))

    # -- receiving
    def pump(self, timeout=0.0):
        """Reads what arrives within timeout (at least once) and handles the frames.
        Returns the number of frames handled; marks self.closed on EOF."""
        import select
        if self.closed:
            return 0
        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not r:
            return 0
        try:
            data = self.sock.recv(1 << 20)
        except (ConnectionResetError, socket.timeout, OSError):
            data = b""
        if not data:
            self.closed = True
            return 0
        self.buf += data
        return self._parse()

    def _parse(self):
        count = 0
        acks = []
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                break
            frame, _ = _hf.Frame.parse_frame_header(memoryview(bytes(self.buf[:9])))
            frame.parse_body(memoryview(bytes(self.buf[9:9 + length])))
            del self.buf[:9 + length]
            count += 1
            self.frames_received += 1
            acks += self._handle(frame)
        if acks:
            try:
                self.send(b"".join(f.serialize() for f in acks))
            except OSError:
                pass
        return count

    def _note(self, frame, detail=""):
        if len(self.log) >= 2000:
            del self.log[:1000]
        self.log.append((type(frame).__name__.replace("Frame", ""), frame.stream_id,
                         ",".join(sorted(frame.flags)), detail))

    def _handle(self, f):
        out = []
        if isinstance(f, _hf.SettingsFrame):
            self._note(f, repr(f.settings))
            if "ACK" in f.flags:
                self.settings_acks += 1
            else:
                self.peer_settings.update(f.settings)
                iw = f.settings.get(_hf.SettingsFrame.INITIAL_WINDOW_SIZE)
                if iw is not None:
                    for st in self.streams.values():
                        st.send_window += iw - self.peer_initial_window
                    self.peer_initial_window = iw
                if self.auto_ack:
                    ack = _hf.SettingsFrame(0)
                    ack.flags.add("ACK")
                    out.append(ack)
        elif isinstance(f, _hf.WindowUpdateFrame):
            if f.stream_id == 0:
                self.conn_send_window += f.window_increment
            elif f.stream_id in self.streams:
                self.streams[f.stream_id].send_window += f.window_increment
        elif isinstance(f, _hf.PingFrame):
            self._note(f)
            if "ACK" in f.flags:
                self.pings_acked += 1
            elif self.auto_ping:
                ack = _hf.PingFrame(0, opaque_data=f.opaque_data)
                ack.flags.add("ACK")
                out.append(ack)
        elif isinstance(f, _hf.GoAwayFrame):
            self.goaway = (f.last_stream_id, f.error_code, bytes(f.additional_data))
            self._note(f, "last=%d %s %r" % (f.last_stream_id, H2_ERRORS.get(f.error_code),
                                            bytes(f.additional_data)))
        elif isinstance(f, _hf.RstStreamFrame):
            self._note(f, H2_ERRORS.get(f.error_code, f.error_code))
            self.stream(f.stream_id).reset = f.error_code
        elif isinstance(f, (_hf.HeadersFrame, _hf.ContinuationFrame)):
            self._note(f)
            if isinstance(f, _hf.HeadersFrame):
                self._hblock = (f.stream_id, "END_STREAM" in f.flags, [bytes(f.data)])
            elif self._hblock:
                self._hblock[2].append(bytes(f.data))
            if "END_HEADERS" in f.flags and self._hblock:
                sid, end, frags = self._hblock
                self._hblock = None
                headers = self.dec.decode(b"".join(frags))
                st = self.stream(sid)
                if st.headers is None or (st.status or 0) < 200:
                    st.headers = headers
                    st.headers_end_stream = end
                else:
                    st.trailers = headers
                if end:
                    st.ended = True
        elif isinstance(f, _hf.DataFrame):
            st = self.stream(f.stream_id)
            data = bytes(f.data)
            st.data_frames += 1
            st.body_len += len(data)
            st.sha.update(data)
            if st.keep_body:
                st.body += data
            if "END_STREAM" in f.flags:
                st.ended = True
                self._note(f, "END_STREAM")
            if self.auto_window and f.flow_controlled_length:
                out.append(_hf.WindowUpdateFrame(0, window_increment=f.flow_controlled_length))
                if not st.ended and f.stream_id not in self.reset_sent:
                    out.append(_hf.WindowUpdateFrame(f.stream_id,
                                                     window_increment=f.flow_controlled_length))
        else:
            self._note(f)
        return out

    def wait(self, predicate, timeout=None, message="condition"):
        """Pumps until predicate() holds; fails on timeout. Returns predicate()'s value."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            v = predicate()
            if v:
                return v
            if self.closed:
                v = predicate()
                if v:
                    return v
                raise AssertionError("connection closed before %s (goaway=%r, last frames %r)"
                                     % (message, self.goaway, self.log[-10:]))
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s not met within the time (goaway=%r, last frames %r)"
                                     % (message, self.goaway, self.log[-10:]))
            self.pump(min(left, 0.5))

    def response(self, sid, timeout=None):
        """Waits for stream sid to end (END_STREAM or RST_STREAM) and returns it."""
        st = self.stream(sid)
        self.wait(lambda: st.done, timeout, "the end of stream %d" % sid)
        return st

    def wait_closed(self, timeout=5.0):
        """True if the peer closes the connection within timeout (frames are handled)."""
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self.pump(min(0.5, max(0.0, deadline - time.monotonic())))
        return self.closed

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def h2_get(port, path="/", headers=(), authority="test.local", timeout=10.0):
    """One GET on a fresh h2c connection → its H2Stream."""
    with H2Conn(port, timeout=timeout) as c:
        sid = c.request("GET", path, headers=headers, authority=authority)
        return c.response(sid)

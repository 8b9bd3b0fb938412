"""HTTP/2 abuse defences (issue #4 point 5, DESIGN §6), frame by frame on raw
sockets. Each test asserts the GOAWAY or RST_STREAM error code remora
answers with, that nothing of the offending stream reached the upstream,
that remora then still serves a second, normal client, and that the
defence was counted once in remora_h2_defence_total{listener, defence}
while the other defences' counters stayed put.
"""

import time

import pytest
from hyperframe import frame as hf

from helpers import H2_CODES, H2_ERRORS, H2Conn, metric


@pytest.fixture(scope="module")
def env(module_procs):
    up = module_procs.upstream("up")
    config = {
        "listeners": [{"name": "main", "route_table": "main"},
                      {"name": "h2", "route_table": "main", "protocol": "http2"}],
        "route_tables": [{"name": "main", "routes": [
            {"name": "all", "match": {"prefix": "/"}, "cluster": "app"}]}],
        "clusters": [{"name": "app", "endpoints": [up.addr]}],
    }
    r = module_procs.remora(config)
    return r, up


_second = [0]


def assert_serves_a_second_client(r, listener="main"):
    _second[0] += 1
    path = "/second-client/%d" % _second[0]
    with H2Conn(r.port(listener)) as c:
        st = c.response(c.request("GET", path))
    assert st.status == 200, "a normal client after the attack got %r" % st
    assert st.json()["path"] == path


def code_name(code):
    return H2_ERRORS.get(code, code)


# ---------------------------------------------------------------- metrics

DEFENCE = "remora_h2_defence_total"
DEFENCES = ("invalid_preface", "flood", "continuation_flood", "empty_frame_flood",
            "rapid_reset", "too_many_streams", "header_violation", "header_too_large",
            "protocol_error", "stream_idle_timeout", "idle_timeout")


def defence_counts(r, listener="main"):
    """defence → remora_h2_defence_total{listener, defence}, every defence."""
    samples = r.metrics()
    return {d: metric(samples, DEFENCE, listener=listener, defence=d) for d in DEFENCES}


def defence_deltas(r, before, listener="main"):
    """The counters that moved since `before` (defence → delta)."""
    now = defence_counts(r, listener)
    return {d: now[d] - before[d] for d in DEFENCES if now[d] != before[d]}


def assert_counted_once(r, before, defence, listener="main", settle=0.3):
    """remora_h2_defence_total{listener, defence} rose by exactly 1 since
    `before` and no other defence counter of the listener moved. Counters are
    bumped on the worker before (or as) the GOAWAY / RST_STREAM / 431 is
    written, so they are normally visible at once; the wait is bounded
    anyway, then `settle` seconds more catch a late second count."""
    deadline = time.monotonic() + 5
    deltas = defence_deltas(r, before, listener)
    while deltas.get(defence, 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
        deltas = defence_deltas(r, before, listener)
    time.sleep(settle)
    deltas = defence_deltas(r, before, listener)
    assert deltas == {defence: 1}, \
        "expected %s{listener=%r, defence=%r} +1 and nothing else, counters moved: %r" \
        % (DEFENCE, listener, defence, deltas)


def assert_not_counted(r, before, listener="main", settle=0.3):
    """No defence counter of the listener moved since `before`."""
    time.sleep(settle)
    deltas = defence_deltas(r, before, listener)
    assert deltas == {}, "%s moved for listener %r: %r" % (DEFENCE, listener, deltas)


def request_headers(path, method="GET"):
    return [(":method", method), (":scheme", "http"), (":authority", "test.local"),
            (":path", path)]


def wait_settled(c):
    """The SETTINGS exchange is done both ways."""
    c.wait(lambda: c.peer_settings and c.settings_acks, 5, "the SETTINGS exchange")


# ---------------------------------------------------------------- preface

def test_invalid_preface_on_http2_listener(env):
    r, up = env
    before = defence_counts(r, "h2")
    with H2Conn(r.port("h2"), preface=False) as c:
        c.send(b"GET /not-h2 HTTP/1.1\r\nHost: test.local\r\n\r\n")
        assert c.wait_closed(5), "remora kept a connection open after an invalid preface"
        if c.goaway is not None:
            assert code_name(c.goaway[1]) == "PROTOCOL_ERROR", c.goaway
        assert not c.buf.startswith(b"HTTP/1"), "an http2 listener answered in HTTP/1.1"
    assert not [q for q in up.requests() if q["target"] == "/not-h2"]
    assert_serves_a_second_client(r, "h2")
    assert_counted_once(r, before, "invalid_preface", "h2")


# ---------------------------------------------------------------- streams

def test_streams_beyond_the_concurrency_limit_end_the_connection(env):
    """remora advertises SETTINGS_MAX_CONCURRENT_STREAMS 100. A client that
    opens 110 after acknowledging that SETTINGS breaks the limit it agreed
    to: nghttp2 (remora's codec) answers with a connection error, GOAWAY
    PROTOCOL_ERROR, where RFC 9113 §5.1.2 asks for stream errors. That is a
    known deviation of nghttp2 (Envoy behaves the same); what must hold is
    that the limit is advertised, the flood is refused with a GOAWAY, and
    remora goes on serving other clients."""
    r, up = env
    before = defence_counts(r)
    with H2Conn(r.port(), timeout=15) as c:
        wait_settled(c)
        assert c.peer_settings.get(hf.SettingsFrame.MAX_CONCURRENT_STREAMS) == 100, c.peer_settings
        sids = [c.request("GET", "/concurrent/%d?delay=1500" % i) for i in range(110)]
        deadline = time.monotonic() + 10
        while c.goaway is None and not c.closed:
            assert time.monotonic() < deadline, "no GOAWAY for 110 concurrent streams"
            c.pump(0.5)
        assert c.goaway is not None, "connection closed without GOAWAY"
        assert code_name(c.goaway[1]) == "PROTOCOL_ERROR", c.goaway
        assert c.goaway[0] < sids[-1], c.goaway  # the excess streams were not processed
    assert_serves_a_second_client(r)
    assert_counted_once(r, before, "too_many_streams")


def _rapid_reset(c, max_streams, batch=100):
    """Opens streams and cancels each at once, until GOAWAY or the connection
    closes. Returns the number of streams opened."""
    opened = 0
    deadline = time.monotonic() + 20
    while opened < max_streams and time.monotonic() < deadline:
        out = []
        for _ in range(batch):
            sid = c.new_stream_id()
            c.stream(sid)
            out += [f.serialize() for f in c.headers_frames(
                sid, request_headers("/rapid-reset/%d" % sid), end_stream=True)]
            out.append(hf.RstStreamFrame(sid, error_code=H2_CODES["CANCEL"]).serialize())
        try:
            c.send(b"".join(out))
        except OSError:
            break
        opened += batch
        c.pump(0.01)
        if c.goaway or c.closed:
            break
    c.wait_closed(2)
    return opened


def _upstream_counts(up):
    return len(up.requests()), len(up.events("connect"))


def test_rapid_reset_flood_gets_goaway(env):
    """CVE-2023-44487: streams opened and cancelled at once, thousands of them.
    remora must send GOAWAY and must not forward them."""
    r, up = env
    before_requests, _ = _upstream_counts(up)
    before = defence_counts(r)
    with H2Conn(r.port()) as c:
        wait_settled(c)
        opened = _rapid_reset(c, 5000)
        assert c.goaway is not None, "no GOAWAY after %d streams opened and reset" % opened
        assert code_name(c.goaway[1]) in ("ENHANCE_YOUR_CALM", "INTERNAL_ERROR",
                                          "PROTOCOL_ERROR"), c.goaway
        assert c.wait_closed(5), "connection still open after GOAWAY"
    assert opened < 5000, "the flood ran its course: %d streams" % opened
    time.sleep(0.5)
    forwarded = len(up.requests()) - before_requests
    assert forwarded <= opened // 10, \
        "%d of %d reset streams were forwarded upstream" % (forwarded, opened)
    assert_serves_a_second_client(r)
    assert_counted_once(r, before, "rapid_reset")


def test_rapid_reset_flood_opens_few_upstream_connections(env):
    """The same flood must not make remora connect to the upstream once per
    reset stream either: that is the work the attack wants to cause."""
    r, up = env
    _, before_connects = _upstream_counts(up)
    before = defence_counts(r)
    with H2Conn(r.port()) as c:
        wait_settled(c)
        opened = _rapid_reset(c, 5000)
    time.sleep(0.5)
    connects = len(up.events("connect")) - before_connects
    assert connects <= opened // 10, \
        "%d upstream connections opened for %d streams reset at once" % (connects, opened)
    assert_serves_a_second_client(r)
    assert_counted_once(r, before, "rapid_reset")


def test_rapid_reset_below_the_rate_limit_burst_gets_goaway(env):
    """DESIGN §6: besides nghttp2's rate limit (burst 1000, 33/s), GOAWAY when
    >= 50 % of the last 500 streams were reset early. 600 streams, all reset
    at once, are under the burst but over that ratio."""
    r, up = env
    before = defence_counts(r)
    with H2Conn(r.port()) as c:
        wait_settled(c)
        opened = _rapid_reset(c, 600)
        assert c.goaway is not None, \
            "no GOAWAY after %d of the last %d streams were reset early" % (opened, opened)
        assert code_name(c.goaway[1]) in ("ENHANCE_YOUR_CALM", "INTERNAL_ERROR",
                                          "PROTOCOL_ERROR"), c.goaway
    assert_serves_a_second_client(r)
    assert_counted_once(r, before, "rapid_reset")


# ---------------------------------------------------------------- floods

def test_continuation_flood_is_a_connection_error(env):
    """HEADERS without END_HEADERS, then thousands of CONTINUATION frames
    (CVE-2024-27316 family): remora allows 8 per header block, then must end
    the connection with GOAWAY (a connection error, RFC 9113 §5.4.1)."""
    r, up = env
    before = defence_counts(r)
    with H2Conn(r.port()) as c:
        wait_settled(c)
        sid = c.new_stream_id()
        first = hf.HeadersFrame(sid, data=c.header_block(request_headers("/continuation-flood")))
        out = [first.serialize()]  # no END_HEADERS
        for i in range(2000):
            out.append(hf.ContinuationFrame(sid, data=c.header_block(
                [("x-flood-%d" % i, "v")])).serialize())
        try:
            c.send(b"".join(out))
        except OSError:
            pass
        assert c.wait_closed(5), "connection still open after 2000 CONTINUATION frames"
        assert c.goaway is not None, \
            "connection closed without GOAWAY (frames received: %r)" % c.log[-5:]
        assert code_name(c.goaway[1]) in ("ENHANCE_YOUR_CALM", "PROTOCOL_ERROR"), c.goaway
    assert not [q for q in up.requests() if q["target"] == "/continuation-flood"]
    assert_serves_a_second_client(r)
    assert_counted_once(r, before, "continuation_flood")


def _flood(c, frame_bytes, count, chunk=5000):
    sent = 0
    try:
        while sent < count:
            n = min(chunk, count - sent)
            c.send(frame_bytes * n)
            sent += n
    except OSError:
        pass
    return sent


def _answers_or_calm_goaway(c, acked, count, what):
    """After a flood: either every frame was answered and the connection
    serves a request, or remora closed it with GOAWAY ENHANCE_YOUR_CALM.
    True in the second case."""
    deadline = time.monotonic() + 10
    while acked() < count and not c.closed and time.monotonic() < deadline:
        c.pump(0.2)
    if c.closed or c.goaway is not None:
        assert c.goaway is not None, \
            "closed without GOAWAY after a %s flood (%d of %d answered, last frames %r)" \
            % (what, acked(), count, c.log[-3:])
        assert code_name(c.goaway[1]) == "ENHANCE_YOUR_CALM", c.goaway
        assert c.wait_closed(5)
        return True
    assert acked() == count, "%d of %d %s frames answered" % (acked(), count, what)
    st = c.response(c.request("GET", "/after-%s-flood" % what))
    assert st.status == 200, st
    return False


def _assert_flood_counted(r, before, refused, what):
    """A flood refused with GOAWAY counts once as "flood"; one that was
    answered in full counts nothing."""
    if refused:
        assert_counted_once(r, before, "flood")
    else:
        assert_not_counted(r, before)


def test_settings_flood(env):
    r, up = env
    before = defence_counts(r)
    with H2Conn(r.port()) as c:
        wait_settled(c)
        s = hf.SettingsFrame(0)
        s.settings = {hf.SettingsFrame.HEADER_TABLE_SIZE: 4096}
        count = 20000
        acks0 = c.settings_acks
        _flood(c, s.serialize(), count)
        refused = _answers_or_calm_goaway(c, lambda: c.settings_acks - acks0, count, "SETTINGS")
    assert_serves_a_second_client(r)
    _assert_flood_counted(r, before, refused, "SETTINGS")


def test_ping_flood(env):
    r, up = env
    before = defence_counts(r)
    with H2Conn(r.port()) as c:
        wait_settled(c)
        count = 20000
        _flood(c, hf.PingFrame(0, opaque_data=b"flooding").serialize(), count)
        refused = _answers_or_calm_goaway(c, lambda: c.pings_acked, count, "PING")
    assert_serves_a_second_client(r)
    _assert_flood_counted(r, before, refused, "PING")


def test_ping_flood_from_a_client_that_does_not_read(env):
    """A client that reads the ACKs keeps up with remora (test_ping_flood
    usually ends with every PING answered); one that never reads makes
    remora's queue of PING ACKs grow past nghttp2's outbound limit (1000):
    the connection must end, counted once as "flood"."""
    r, up = env
    before = defence_counts(r)
    frame = hf.PingFrame(0, opaque_data=b"flooding").serialize()
    with H2Conn(r.port(), timeout=5) as c:
        wait_settled(c)
        sent, limit = 0, 2_000_000
        deadline = time.monotonic() + 20
        try:
            while sent < limit and time.monotonic() < deadline:
                c.send(frame * 5000)
                sent += 5000
        except OSError:
            pass  # remora closed the connection (EPIPE/ECONNRESET) or stopped reading
        assert c.wait_closed(10), "connection still open after %d PINGs never read" % sent
        if c.goaway is not None:
            assert code_name(c.goaway[1]) == "ENHANCE_YOUR_CALM", c.goaway
    assert_serves_a_second_client(r)
    assert_counted_once(r, before, "flood")


@pytest.mark.memory_bound
def test_control_frame_floods_do_not_grow_memory(procs):
    """Three rounds of 50 000 SETTINGS and 50 000 PINGs from a client that
    does not read: remora's peak RSS grows by less than 16 MiB."""
    up = procs.upstream("up")
    r = procs.remora({
        "listeners": [{"name": "main", "route_table": "main"}],
        "route_tables": [{"name": "main", "routes": [{"match": {"prefix": "/"},
                                                      "cluster": "app"}]}],
        "clusters": [{"name": "app", "endpoints": [up.addr]}],
    })
    assert_serves_a_second_client(r)
    before = r.vm_status("VmHWM")
    s = hf.SettingsFrame(0)
    s.settings = {hf.SettingsFrame.HEADER_TABLE_SIZE: 4096}
    ping = hf.PingFrame(0, opaque_data=b"flooding").serialize()
    for _ in range(3):
        for frame in (s.serialize(), ping):
            c = H2Conn(r.port(), timeout=3)
            try:
                _flood(c, frame, 50000)
            except OSError:
                pass  # remora stopped reading: the send timed out
            finally:
                c.close()
    assert_serves_a_second_client(r)
    grown = r.vm_status("VmHWM") - before
    assert grown < 16 * 1024, "VmHWM grew by %d KiB during control-frame floods" % grown


# ---------------------------------------------------------------- headers

MALFORMED = {
    "missing :path": [(":method", "GET"), (":scheme", "http"), (":authority", "test.local")],
    "uppercase name": [("X-Upper-Case", "1")],
    "connection: keep-alive": [("connection", "keep-alive")],
    "te: gzip": [("te", "gzip")],
    "keep-alive": [("keep-alive", "timeout=5")],
    "proxy-connection": [("proxy-connection", "keep-alive")],
    "transfer-encoding": [("transfer-encoding", "chunked")],
    "upgrade": [("upgrade", "websocket")],
    "pseudo after regular": "pseudo-after",
    "unknown pseudo": [(":protocol-x", "1")],
    ":status in a request": [(":status", "200")],
    "duplicate :path": [(":path", "/other")],
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_headers_are_stream_errors(env, case):
    r, up = env
    marker = "malformed-%d" % list(MALFORMED).index(case)
    path = "/" + marker
    extra = MALFORMED[case]
    if case == "missing :path":
        headers = extra + [("x-marker", marker)]
    elif extra == "pseudo-after":
        headers = [(":method", "GET"), (":scheme", "http"), ("x-marker", marker),
                   (":authority", "test.local"), (":path", path)]
    else:
        headers = request_headers(path) + [("x-marker", marker)] + extra
    before = defence_counts(r)
    with H2Conn(r.port()) as c:
        wait_settled(c)
        sid = c.new_stream_id()
        c.send_headers(sid, headers, end_stream=True)
        st = c.response(sid, 5)
        assert st.headers is None and code_name(st.reset) == "PROTOCOL_ERROR", \
            "%s: expected RST_STREAM PROTOCOL_ERROR, got %r" % (case, st)
        assert c.goaway is None, c.goaway
        # A stream error: the connection itself goes on.
        assert c.response(c.request("GET", "/after-" + marker)).status == 200
    time.sleep(0.2)
    leaked = [q for q in up.requests()
              if q["target"] == path or q["headers"].get("x-marker") == marker]
    assert not leaked, "a malformed request was forwarded: %r" % leaked
    assert_serves_a_second_client(r)
    assert_counted_once(r, before, "header_violation")


LARGE = {
    "70 fields of 1000 bytes": [("x-big-%02d" % i, "a" * 1000) for i in range(70)],
    "one 61 KiB field": [("x-big", "a" * (61 * 1024))],
    "101 fields": [("x-many-%03d" % i, "a") for i in range(101)],
    "cookies adding up to 70 KiB": [("cookie", "c%02d=%s" % (i, "b" * 1000)) for i in range(70)],
}


@pytest.mark.parametrize("case", list(LARGE))
def test_header_list_over_the_limit_is_431(env, case):
    """DESIGN §6: 60 KiB / 100 fields (after cookie reassembly) → 431, or a
    stream reset; never forwarded, and the connection goes on."""
    r, up = env
    path = "/large-headers/%d" % list(LARGE).index(case)
    before = defence_counts(r)
    with H2Conn(r.port()) as c:
        wait_settled(c)
        st = c.response(c.request("GET", path, headers=LARGE[case]), 5)
        assert st.status == 431 or st.reset is not None, st
        assert c.goaway is None, c.goaway
        assert c.response(c.request("GET", path + "/after")).status == 200
    assert not [q for q in up.requests() if q["target"] == path]
    assert_serves_a_second_client(r)
    assert_counted_once(r, before, "header_too_large")


def test_header_list_at_the_limit_is_forwarded(env):
    """The control: 100 fields and ~55 KiB are accepted."""
    r, up = env
    before = defence_counts(r)
    with H2Conn(r.port()) as c:
        fields = [("x-ok-%03d" % i, "a" * 550) for i in range(100)]
        st = c.response(c.request("GET", "/at-the-limit", headers=fields), 5)
    assert st.status == 200, st
    assert st.json()["headers"]["x-ok-099"] == "a" * 550
    assert_not_counted(r, before)


# ---------------------------------------------------------------- configured limits

def test_configured_stream_limit_and_reset_budget(procs):
    """listeners[].limits sets the defences: 10 concurrent streams are
    advertised and enforced, and a reset budget of 20 (burst) at 1/s ends a
    connection after about 20 cancelled streams, long before the default."""
    up = procs.upstream("up")
    r = procs.remora({
        "listeners": [{"name": "main", "route_table": "main",
                       "limits": {"max_concurrent_streams": 10, "stream_reset_burst": 20,
                                  "stream_resets_per_second": 1}}],
        "route_tables": [{"name": "main", "routes": [
            {"name": "all", "match": {"prefix": "/"}, "cluster": "app"}]}],
        "clusters": [{"name": "app", "endpoints": [up.addr]}],
    })
    before = defence_counts(r)
    with H2Conn(r.port(), timeout=15) as c:
        wait_settled(c)
        assert c.peer_settings.get(hf.SettingsFrame.MAX_CONCURRENT_STREAMS) == 10, c.peer_settings
        sids = [c.request("GET", "/limited/%d?delay=1500" % i) for i in range(12)]
        deadline = time.monotonic() + 10
        while c.goaway is None and not c.closed:
            assert time.monotonic() < deadline, "no GOAWAY for 12 streams over a limit of 10"
            c.pump(0.5)
        assert c.goaway is not None and code_name(c.goaway[1]) == "PROTOCOL_ERROR", c.goaway
        assert c.goaway[0] < sids[-1], c.goaway
    assert_counted_once(r, before, "too_many_streams")

    before = defence_counts(r)
    with H2Conn(r.port()) as c:
        wait_settled(c)
        opened = _rapid_reset(c, 500, batch=5)
        # nghttp2's reset rate limit answers INTERNAL_ERROR; remora's own
        # reset-ratio rule ENHANCE_YOUR_CALM.
        assert c.goaway is not None, "no GOAWAY after %d streams reset" % opened
        assert code_name(c.goaway[1]) in ("INTERNAL_ERROR", "ENHANCE_YOUR_CALM"), c.goaway
    # The default budget (burst 1000) would have let all 500 through.
    assert opened <= 100, "%d streams reset before the GOAWAY" % opened
    assert_serves_a_second_client(r)
    assert_counted_once(r, before, "rapid_reset")

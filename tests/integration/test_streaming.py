"""Bodies stream through remora: large uploads and downloads, with bounded memory."""

import hashlib
import json
import os
import struct
import subprocess
import threading
import time

import pytest

from conftest import one_cluster_config
from helpers import RawConn, http_request, pattern_sha256, request_bytes

MiB = 1 << 20
GiB = 1 << 30
# Peak resident memory allowed to remora while 1 GiB goes through it.
MAX_HWM_KIB = 64 * 1024


def _blocks(total, block=MiB):
    """Deterministic, block-distinct payload, generated on the fly."""
    base = os.urandom(block)
    sent = 0
    i = 0
    while sent < total:
        n = min(block, total - sent)
        data = struct.pack(">Q", i) + base[8:n] if n >= 8 else base[:n]
        yield data
        sent += n
        i += 1


@pytest.mark.memory_bound
def test_1gib_upload_streams_with_bounded_memory(proxied):
    r, up = proxied
    h = hashlib.sha256()
    with RawConn(r.port(), timeout=60) as c:
        c.send(request_bytes("PUT", "/upload", [("Content-Length", str(GiB))]))
        for data in _blocks(GiB):
            h.update(data)
            c.send(data)
        resp = c.read_final_response()
    assert resp.status == 200, resp
    echo = resp.json()
    assert echo["body_bytes"] == GiB
    assert echo["body_sha256"] == h.hexdigest()
    hwm = r.vm_status("VmHWM")
    assert hwm < MAX_HWM_KIB, "remora peak RSS %d KiB >= %d KiB" % (hwm, MAX_HWM_KIB)


def test_sized_upload_that_stalls_mid_body_is_cut_off_at_the_stream_idle_timeout(procs, upstream):
    """A large Content-Length body goes socket to socket in the kernel
    (splice); when the client stops sending halfway, remora still ends the
    connection at the listener's stream_idle_timeout, the upstream never gets
    a complete request, and the next client is served."""
    config = one_cluster_config(upstream)
    config["listeners"][0]["limits"] = {"stream_idle_timeout": "500ms"}
    r = procs.remora(config)
    with RawConn(r.port(), timeout=10) as c:
        c.send(request_bytes("PUT", "/stalled", [("Content-Length", str(8 * MiB))]))
        c.send(b"x" * (2 * MiB))
        start = time.monotonic()
        with pytest.raises((EOFError, ConnectionResetError)):
            c._fill()  # no answer: the connection ends
        elapsed = time.monotonic() - start
    assert 0.4 <= elapsed <= 5, "closed after %.2f s (stream_idle_timeout 500ms)" % elapsed
    stalled = [q for q in upstream.requests() if q["target"] == "/stalled"]
    assert stalled and not stalled[0]["complete"], stalled
    res = http_request(r.port(), "PUT", "/after", body=b"y" * (3 * MiB))
    assert res.status == 200 and res.json()["body_bytes"] == 3 * MiB, res


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_64mib_download(proxied, chunked):
    r, up = proxied
    n = 64 * MiB
    with RawConn(r.port(), timeout=60) as c:
        c.send(request_bytes("GET", "/download?bytes=%d%s" % (n, "&chunked=1" if chunked else "")))
        resp = c.read_final_response(keep_body=False)
    assert resp.status == 200, resp
    assert resp.body_len == n
    assert resp.sha256 == pattern_sha256(n)
    assert resp.header("x-body-sha256") == pattern_sha256(n)


def test_64mib_upload_with_curl_chunked(proxied, tmp_path):
    r, up = proxied
    n = 64 * MiB
    h = hashlib.sha256()
    err_path = tmp_path / "curl.err"
    with open(err_path, "wb") as err:
        curl = subprocess.Popen(["curl", "-sS", "--max-time", "60", "-T", "-",
                                 "http://127.0.0.1:%d/curl-upload" % r.port()],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
    feed_error = []

    def feed():
        try:
            for data in _blocks(n):
                h.update(data)
                curl.stdin.write(data)
        except Exception as e:  # reported below
            feed_error.append(e)
        finally:
            curl.stdin.close()

    feeder = threading.Thread(target=feed)
    feeder.start()
    out = curl.stdout.read()
    curl.stdout.close()
    code = curl.wait(90)
    feeder.join(10)
    assert code == 0 and not feed_error, (code, feed_error, err_path.read_text())
    echo = json.loads(out)
    # curl -T - sends chunked: remora must stream it on, not turn it into a sized body.
    assert echo["headers"].get("transfer-encoding") == "chunked", echo["headers"]
    assert echo["body_bytes"] == n
    assert echo["body_sha256"] == h.hexdigest()


@pytest.mark.memory_bound
def test_download_backpressure_keeps_memory_bounded(proxied):
    """A client that stops reading must not make remora buffer the response."""
    r, up = proxied
    n = 256 * MiB
    with RawConn(r.port(), timeout=60) as c:
        c.sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 64 * 1024)
        c.send(request_bytes("GET", "/download?bytes=%d" % n))
        time.sleep(3)  # not reading: the upstream must be held back, not buffered
        rss_while_stalled = r.vm_status("VmRSS")
        resp = c.read_final_response(keep_body=False)
    assert resp.status == 200 and resp.body_len == n, resp
    assert resp.sha256 == pattern_sha256(n)
    assert rss_while_stalled < MAX_HWM_KIB, rss_while_stalled
    hwm = r.vm_status("VmHWM")
    assert hwm < MAX_HWM_KIB, "remora peak RSS %d KiB" % hwm


def test_response_head_is_not_held_back_by_a_slow_body(proxied):
    r, up = proxied
    with RawConn(r.port(), timeout=20) as c:
        start = time.monotonic()
        c.send(request_bytes("GET", "/slow-body?bytes=20&ms=3000"))
        c.read_until(b"\r\n\r\n")
        head_after = time.monotonic() - start
        c.read_exact(20)
        body_after = time.monotonic() - start
    # The upstream sends its head at once and the body over 3 s: a proxy that
    # streams passes the head on long before the body is complete.
    assert body_after > 2.5, body_after
    assert head_after < 1.5, "head arrived after %.2fs" % head_after


def test_response_trailers_are_forwarded(proxied):
    r, up = proxied
    with RawConn(r.port()) as c:
        c.send(request_bytes("GET", "/trailers", [("TE", "trailers")]))
        resp = c.read_final_response()
    assert resp.status == 200, resp
    trailers = {k.lower(): v for k, v in resp.trailers}
    assert trailers.get("x-checksum") == hashlib.sha256(resp.body).hexdigest(), resp.trailers

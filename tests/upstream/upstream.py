#!/usr/bin/env python3
"""A small, real HTTP/1.1 upstream for remora's integration tests, demo and bench.

Python 3 stdlib only (asyncio on raw streams), so that it can also misbehave on
purpose. Bodies are never held whole: request bodies are hashed as they arrive
(a 1 GiB upload works) and generated response bodies are written block by
block with the writer's flow control.

Behaviour by path (query parameters combine):
  any path            200 application/json echo of the request (see below)
  ?delay=MS           wait before answering (added to --delay)
  ?status=N           answer with status N (no body for 1xx/204/304)
  ?fail=N             the first N requests to this path (per upstream process)
                      answer ?fail_status (default 503); later ones as usual
  ?retry_after=S      add Retry-After: S to a failing (?fail / ?status) answer
  /status/N           same as ?status=N
  /download?bytes=N   N bytes of deterministic content, header x-body-sha256;
                      &chunked=1 sends it chunked
  /trailers           chunked body followed by a trailer (x-checksum)
  /reset              read the request, close the socket without answering
                      (&rst=1: abortive close, RST)
  /garbage            answer an invalid status line "HTTP/1.1 abc"
  /hang               never answer (until the peer closes)
  /slow-body?bytes=N&ms=M   head at once, then the body spread over M ms
  /ws                 Upgrade: websocket → 101, then echo every byte back
  /close              answer with Connection: close and close the socket
                      (&silent=1: answer as keep-alive, close 50 ms later)
  HEAD                head only
  /healthz            the echo, with the status the health control sets
                      (200 until changed)
  /__health?status=N&delay=MS&hang=0|1
                      the health control (any method; each given parameter
                      changes the state, the others stay): what /healthz
                      answers from now on: status N, after MS ms, or never
                      (hang=1: until the peer closes). Answers the state as
                      JSON {"status","delay","hang"}.
Expect: 100-continue gets "100 Continue" before the body is read.

The echo body is JSON: server, method, path, query, target, headers (lower-case
names; repeated fields joined with ", "), body_bytes, body_sha256, trailers,
conn (connection id), peer_port, seq (request number on the connection).

--log FILE writes JSON lines: {"event":"connect"} per accepted connection,
{"event":"request"} as soon as a head arrives (method, target, headers,
raw_headers, conn, peer_port, seq, id), then {"event":"body"} with body_bytes,
body_sha256 and trailers once the body is complete (or {"event":"aborted"} if
the peer went away first), {"event":"bad_request"} for a head that does not
parse, and {"event":"disconnect"} when a connection ends (either side).
"""

import argparse
import asyncio
import base64
import hashlib
import json
import random
import socket
import struct
import sys
import time
import urllib.parse

BLOCK = 64 * 1024
_MAX_HEAD = 1024 * 1024
_REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created",
    202: "Accepted", 204: "No Content", 301: "Moved Permanently", 302: "Found",
    304: "Not Modified", 400: "Bad Request", 404: "Not Found",
    426: "Upgrade Required", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _base_block() -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < BLOCK:
        out += hashlib.sha256(b"remora-upstream-%d" % counter).digest()
        counter += 1
    return bytes(out[:BLOCK])


_BASE = _base_block()


def pattern_block(index: int) -> bytes:
    """Block `index` of the deterministic content: every 64 KiB block differs
    (its index is stamped at its start), so a dropped or repeated block changes
    the hash."""
    return struct.pack(">Q", index) + _BASE[8:]


def pattern_chunks(n: int):
    """Yields the first n bytes of the deterministic content, block by block."""
    index = 0
    left = n
    while left > 0:
        block = pattern_block(index)
        if left < BLOCK:
            block = block[:left]
        yield block
        left -= len(block)
        index += 1


_sha_cache = {}


def pattern_sha256(n: int) -> str:
    if n not in _sha_cache:
        h = hashlib.sha256()
        for block in pattern_chunks(n):
            h.update(block)
        _sha_cache[n] = h.hexdigest()
    return _sha_cache[n]


class BadRequest(Exception):
    pass


class Request:
    def __init__(self, method, target, version, raw_headers):
        self.method = method
        self.target = target
        self.version = version
        self.raw_headers = raw_headers
        self.headers = {}
        for name, value in raw_headers:
            key = name.lower()
            self.headers[key] = value if key not in self.headers else self.headers[key] + ", " + value
        parts = urllib.parse.urlsplit(target)
        self.path = parts.path if parts.path else target
        self.query_string = parts.query
        self.query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        self.body_bytes = 0
        self.body_sha = hashlib.sha256()
        self.trailers = {}

    def tokens(self, name):
        return [t.strip().lower() for t in self.headers.get(name, "").split(",") if t.strip()]

    def wants_close(self):
        conn = self.tokens("connection")
        if "close" in conn:
            return True
        return self.version == "HTTP/1.0" and "keep-alive" not in conn


def parse_head(data: bytes) -> Request:
    text = data.decode("latin-1")
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("bad request line %r" % lines[0][:200])
    raw = []
    for line in lines[1:]:
        if line == "":
            continue
        if line[0] in " \t":
            raise BadRequest("obs-fold")
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest("bad header line %r" % line[:200])
        raw.append((name, value.strip(" \t")))
    return Request(parts[0], parts[1], parts[2], raw)


class Server:
    def __init__(self, args):
        self.args = args
        self.name = args.name
        self.next_conn = 0
        self.next_id = 0
        self.log_file = open(args.log, "a", buffering=1) if args.log else None
        self.active = 0
        self.seen = {}  # path -> requests so far (for ?fail=N)
        self.health = {"status": 200, "delay": 0.0, "hang": False}  # what /healthz does

    def log(self, record):
        if self.log_file:
            record.setdefault("time", time.time())
            self.log_file.write(json.dumps(record, sort_keys=True) + "\n")
            self.log_file.flush()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.next_conn += 1
        conn = self.next_conn
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.log({"event": "connect", "conn": conn, "peer_port": peer[1]})
        seq = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as e:
                    if e.partial:
                        self.log({"event": "bad_request", "conn": conn, "reason": "eof in head",
                                  "data": e.partial[:4096].decode("latin-1")})
                    return
                except asyncio.LimitOverrunError:
                    self.log({"event": "bad_request", "conn": conn, "reason": "head too large"})
                    await self.simple(writer, 431, close=True)
                    return
                seq += 1
                try:
                    req = parse_head(head[:-4])
                except BadRequest as e:
                    self.log({"event": "bad_request", "conn": conn, "reason": str(e),
                              "data": head[:4096].decode("latin-1")})
                    await self.simple(writer, 400, close=True)
                    return
                self.next_id += 1
                req.id = self.next_id
                req.conn = conn
                req.peer_port = peer[1]
                req.seq = seq
                self.log({"event": "request", "id": req.id, "conn": conn, "peer_port": peer[1],
                          "seq": seq, "method": req.method, "target": req.target,
                          "version": req.version, "headers": req.headers,
                          "raw_headers": req.raw_headers})
                self.active += 1
                try:
                    keep = await self.serve(req, reader, writer)
                finally:
                    self.active -= 1
                if not keep:
                    return
        except (ConnectionError, BrokenPipeError, asyncio.IncompleteReadError, BadRequest) as e:
            self.log({"event": "conn_error", "conn": conn, "error": repr(e)})
        finally:
            self.log({"event": "disconnect", "conn": conn, "requests": seq})
            try:
                writer.close()
            except Exception:
                pass

    async def read_body(self, req, reader, writer):
        """Reads (and hashes) the request body. Returns False if the peer went away."""
        te = req.tokens("transfer-encoding")
        cl = req.headers.get("content-length")
        has_body = bool(te) or (cl is not None and cl.strip() != "0")
        if has_body and "100-continue" in req.tokens("expect"):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        try:
            if te:
                if te[-1] != "chunked":
                    raise BadRequest("transfer-encoding %r" % te)
                await self.read_chunked(req, reader)
            elif cl is not None:
                n = int(cl.split(",")[0])
                while n > 0:
                    data = await reader.read(min(n, 256 * 1024))
                    if not data:
                        raise asyncio.IncompleteReadError(b"", n)
                    req.body_sha.update(data)
                    req.body_bytes += len(data)
                    n -= len(data)
        except (asyncio.IncompleteReadError, ConnectionError, BadRequest, ValueError) as e:
            self.log({"event": "aborted", "id": req.id, "conn": req.conn,
                      "body_bytes": req.body_bytes, "error": repr(e)})
            return False
        self.log({"event": "body", "id": req.id, "conn": req.conn, "body_bytes": req.body_bytes,
                  "body_sha256": req.body_sha.hexdigest(), "trailers": req.trailers})
        return True

    async def read_chunked(self, req, reader):
        while True:
            line = await reader.readuntil(b"\r\n")
            size_text = line[:-2].split(b";")[0].strip()
            if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
                raise BadRequest("bad chunk size %r" % line[:100])
            size = int(size_text, 16)
            if size == 0:
                break
            while size > 0:
                data = await reader.read(min(size, 256 * 1024))
                if not data:
                    raise asyncio.IncompleteReadError(b"", size)
                req.body_sha.update(data)
                req.body_bytes += len(data)
                size -= len(data)
            if await reader.readexactly(2) != b"\r\n":
                raise BadRequest("missing CRLF after chunk")
        while True:
            line = await reader.readuntil(b"\r\n")
            if line == b"\r\n":
                return
            name, _, value = line[:-2].decode("latin-1").partition(":")
            req.trailers[name.strip().lower()] = value.strip()

    def head_bytes(self, status, headers, reason=None):
        reason = reason if reason is not None else _REASONS.get(status, "Status")
        out = ["HTTP/1.1 %d %s" % (status, reason)]
        for k, v in headers:
            out.append("%s: %s" % (k, v))
        return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")

    async def simple(self, writer, status, close=False):
        body = b'{"error":%d}' % status
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if close:
            headers.append(("Connection", "close"))
        writer.write(self.head_bytes(status, headers) + body)
        await writer.drain()

    async def serve(self, req, reader, writer) -> bool:
        """Answers one request. Returns True to keep the connection open."""
        path = req.path
        q = req.query
        if path == "/ws":
            return await self.websocket(req, reader, writer)
        if not await self.read_body(req, reader, writer):
            return False
        if path == "/__health":
            return await self.health_control(req, writer)
        delay_ms = self.args.delay + float(q.get("delay", 0) or 0)
        if path == "/healthz":
            delay_ms += self.health["delay"]
        if path == "/hang" or (path == "/healthz" and self.health["hang"]):
            await reader.read()  # returns at EOF
            return False
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000.0)
        if path == "/reset":
            if q.get("rst") == "1":
                writer.transport.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            return False
        if path == "/garbage":
            writer.write(b"HTTP/1.1 abc\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            return False
        close = req.wants_close()
        head_only = req.method == "HEAD"
        base = [("x-upstream", self.name), ("x-upstream-conn", str(req.conn))]
        if close:
            base.append(("Connection", "close"))

        if path == "/download":
            n = int(q.get("bytes", "0"))
            chunked = q.get("chunked") == "1"
            headers = base + [("Content-Type", "application/octet-stream"),
                              ("x-body-sha256", pattern_sha256(n))]
            headers.append(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(n)))
            writer.write(self.head_bytes(200, headers))
            if not head_only:
                for block in pattern_chunks(n):
                    writer.write(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
                    await writer.drain()
                if chunked:
                    writer.write(b"0\r\n\r\n")
            await writer.drain()
            return not close

        if path == "/trailers":
            body = self.echo_body(req)
            checksum = hashlib.sha256(body).hexdigest()
            headers = base + [("Content-Type", "application/json"),
                              ("Transfer-Encoding", "chunked"), ("Trailer", "x-checksum")]
            writer.write(self.head_bytes(200, headers))
            if not head_only:
                half = len(body) // 2
                for piece in (body[:half], body[half:]):
                    writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                writer.write(b"0\r\nx-checksum: %s\r\n\r\n" % checksum.encode())
            await writer.drain()
            return not close

        if path == "/slow-body":
            n = int(q.get("bytes", "10"))
            ms = float(q.get("ms", "1000"))
            pieces = max(1, min(n, 10))
            headers = base + [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(n)), ("x-body-sha256", pattern_sha256(n))]
            writer.write(self.head_bytes(200, headers))
            await writer.drain()
            if not head_only:
                body = b"".join(pattern_chunks(n))
                step = -(-n // pieces)
                for i in range(0, n, step):
                    await asyncio.sleep(ms / 1000.0 / pieces)
                    writer.write(body[i:i + step])
                    await writer.drain()
            return not close

        status = self.health["status"] if path == "/healthz" else 200
        if path.startswith("/status/"):
            status = int(path[len("/status/"):])
        if "status" in q:
            status = int(q["status"])
        if self.args.error_rate > 0 and random.random() < self.args.error_rate:
            status = 503
        if "fail" in q:
            n = self.seen[path] = self.seen.get(path, 0) + 1
            if n <= int(q["fail"]):
                status = int(q.get("fail_status", "503"))
        if status >= 400 and "retry_after" in q:
            base.append(("Retry-After", q["retry_after"]))
        silent_close = path == "/close" and q.get("silent") == "1"
        if path == "/close" and not silent_close and not close:
            close = True
            base.append(("Connection", "close"))
        body = self.echo_body(req)
        headers = base + [("Content-Type", "application/json")]
        no_body = status < 200 or status in (204, 304)
        if not no_body:
            headers.append(("Content-Length", str(len(body))))
        writer.write(self.head_bytes(status, headers))
        if not no_body and not head_only:
            writer.write(body)
        await writer.drain()
        if silent_close:
            await asyncio.sleep(0.05)
            return False
        return not close

    async def health_control(self, req, writer) -> bool:
        q = req.query
        if "status" in q:
            self.health["status"] = int(q["status"])
        if "delay" in q:
            self.health["delay"] = float(q["delay"] or 0)
        if "hang" in q:
            self.health["hang"] = q["hang"] == "1"
        self.log({"event": "health_control", "id": req.id, "conn": req.conn,
                  "health": dict(self.health)})
        body = json.dumps(self.health, sort_keys=True).encode()
        close = req.wants_close()
        headers = [("x-upstream", self.name), ("Content-Type", "application/json"),
                   ("Content-Length", str(len(body)))]
        if close:
            headers.append(("Connection", "close"))
        writer.write(self.head_bytes(200, headers) + body)
        await writer.drain()
        return not close

    def echo_body(self, req) -> bytes:
        return json.dumps({
            "server": self.name, "method": req.method, "path": req.path,
            "query": req.query_string, "target": req.target, "headers": req.headers,
            "body_bytes": req.body_bytes, "body_sha256": req.body_sha.hexdigest(),
            "trailers": req.trailers, "conn": req.conn, "peer_port": req.peer_port,
            "seq": req.seq,
        }, sort_keys=True).encode()

    async def websocket(self, req, reader, writer) -> bool:
        if "websocket" not in req.tokens("upgrade") or "upgrade" not in req.tokens("connection"):
            await self.read_body(req, reader, writer)
            body = self.echo_body(req)
            writer.write(self.head_bytes(426, [("Content-Type", "application/json"),
                                               ("Content-Length", str(len(body))),
                                               ("x-upstream", self.name)]) + body)
            await writer.drain()
            return not req.wants_close()
        self.log({"event": "body", "id": req.id, "conn": req.conn, "body_bytes": 0,
                  "body_sha256": req.body_sha.hexdigest(), "trailers": {}})
        headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("x-upstream", self.name)]
        key = req.headers.get("sec-websocket-key")
        if key:
            accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
            headers.append(("Sec-WebSocket-Accept", accept))
        writer.write(self.head_bytes(101, headers))
        await writer.drain()
        echoed = 0
        while True:
            data = await reader.read(64 * 1024)
            if not data:
                break
            echoed += len(data)
            writer.write(data)
            await writer.drain()
        self.log({"event": "tunnel_closed", "id": req.id, "conn": req.conn, "echoed": echoed})
        return False


async def main_async(args):
    server = Server(args)
    srv = await asyncio.start_server(server.handle, host=args.host, port=args.port,
                                     limit=_MAX_HEAD, backlog=1024, reuse_address=True)
    port = srv.sockets[0].getsockname()[1]
    print("listening on %d" % port, flush=True)
    async with srv:
        await srv.serve_forever()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0, help="0 = pick one and print it")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--name", default="upstream", help="echoed back as \"server\"")
    p.add_argument("--delay", type=float, default=0, help="ms before every answer")
    p.add_argument("--error-rate", type=float, default=0, help="fraction answered 503")
    p.add_argument("--log", help="JSON lines file, one per event")
    args = p.parse_args(argv)
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""A real HTTP/2 upstream (h2c, prior knowledge) for remora's integration tests.

Built on python3-h2 (the h2 state machine) with asyncio; it can misbehave on
purpose in the ways an HTTP/2 server legitimately may: refuse streams, go
away, ignore PINGs, answer slowly.

Every request is answered 200, content-type application/json, with a JSON
body describing it: server, method, path, query, target, authority, scheme,
headers (lower-case names; repeated fields joined with ", "), body_bytes,
body_sha256, trailers (the request's trailing HEADERS, {} if none), conn
(connection number, from 1), stream (stream id), seq (request number on the
connection, from 1).  Response headers: x-upstream (--name), x-upstream-conn,
x-upstream-stream.  The answer is sent once the request stream has ended
(END_STREAM received), after the delay if any.

Modes (--mode, repeatable or comma-separated; they combine):
  goaway_second   on each connection the first request is answered; when the
                  second request's HEADERS arrive, GOAWAY(NO_ERROR,
                  last_stream_id = the first request's stream id) is sent and
                  that request (and every later one) is never answered. The
                  connection stays open --goaway-close-after seconds (default
                  3), then is closed.
  refuse_first    on the first connection only, the first request's stream is
                  answered RST_STREAM(REFUSED_STREAM) as soon as its HEADERS
                  arrive. Everything else is answered normally.
  no_ping_ack     PINGs are never acknowledged. How: incoming bytes are split
                  into frames here before python3-h2 sees them (9-byte frame
                  header, length prefix), and a PING without the ACK flag is
                  logged and dropped instead of being passed to h2 — h2 always
                  acknowledges a PING it processes and has no option to turn
                  that off. A PING carries no state h2 needs, so nothing else
                  changes.
  delay=MS        wait MS milliseconds before sending each response's HEADERS
                  (same as --delay MS).
  grpc_status=S   every request is answered with a trailers-only gRPC answer
                  (:status 200, content-type application/grpc, grpc-status S):
                  an upstream whose every call fails (UNAVAILABLE = 14, ...).
A request's ?delay=MS query parameter adds to the delay of that request only.
?grpc_fail=N[&grpc_status=S]: the first N requests to that path (per process)
get a trailers-only gRPC answer with grpc-status S (default 14, UNAVAILABLE).
?fail=N[&fail_status=S][&retry_after=R]: the first N requests to that path (per
process) are answered HTTP status S (default 503) with a short text body (and
Retry-After: R); later ones as usual.

stdout: "listening on PORT" once serving (as upstream.py; --port 0 picks one).

--log FILE writes JSON lines (a "time" field on each):
  {"event":"connect","conn","peer_port"}
  {"event":"request","id","conn","stream","seq","method","path","target","query",
   "authority","scheme","headers","raw_headers"}     when a request's HEADERS arrive
  {"event":"body","id","conn","stream","body_bytes","body_sha256","trailers"}
                                                     when its END_STREAM arrives
  {"event":"aborted","id","conn","stream","reason","error_code"?}
                                                     reset by the peer, or the
                                                     connection ended first
  {"event":"response","id","conn","stream","status"} response HEADERS sent
  {"event":"refused","id","conn","stream"}           RST_STREAM(REFUSED_STREAM) sent
  {"event":"goaway_sent","conn","last_stream_id","error_code","trigger_stream"}
  {"event":"ping","conn","opaque","acked"}           a PING (not an ACK) received;
                                                     acked: whether it is answered
  {"event":"ping_ack","conn","opaque"}               a PING ACK received
  {"event":"rst_received","conn","stream","error_code"}
  {"event":"goaway_received","conn","last_stream_id","error_code","debug"}
  {"event":"protocol_error","conn","error"}          h2 refused the peer's bytes
  {"event":"disconnect","conn","closed_by","requests","pings"}
                                                     closed_by: "peer" (EOF/reset
                                                     from the client) or "server"
Error codes are logged by name (NO_ERROR, CANCEL, ...).
"""

import argparse
import asyncio
import hashlib
import json
import sys
import time
import urllib.parse

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_PING = 0x6
FLAG_ACK = 0x1
LOCAL_WINDOW = 16 * 1024 * 1024


def code_name(code):
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return int(code)


def parse_modes(values):
    modes, delay = set(), 0.0
    for value in values or ():
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            if item.startswith("delay="):
                delay = float(item[len("delay="):])
            elif item.startswith("grpc_status="):
                int(item[len("grpc_status="):])  # a number, or refused below
                modes.add(item)
            elif item in ("goaway_second", "refuse_first", "no_ping_ack"):
                modes.add(item)
            else:
                raise SystemExit("unknown mode %r" % item)
    return modes, delay


class Req:
    def __init__(self, rid, conn, stream, seq, headers):
        self.id = rid
        self.conn = conn
        self.stream = stream
        self.seq = seq
        self.raw_headers = [(k, v) for k, v in headers]
        self.pseudo = {k: v for k, v in headers if k.startswith(":")}
        self.headers = {}
        for k, v in headers:
            if k.startswith(":"):
                continue
            k = k.lower()
            self.headers[k] = v if k not in self.headers else self.headers[k] + ", " + v
        self.method = self.pseudo.get(":method", "")
        self.target = self.pseudo.get(":path", "")
        parts = urllib.parse.urlsplit(self.target)
        self.path = parts.path or self.target
        self.query = parts.query
        self.query_args = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        self.authority = self.pseudo.get(":authority", "")
        self.scheme = self.pseudo.get(":scheme", "")
        self.body_bytes = 0
        self.sha = hashlib.sha256()
        self.trailers = {}
        self.ended = False      # END_STREAM received
        self.closed = False     # reset (either way) or the connection ended
        self.answer = True      # False: refused / beyond GOAWAY


class Server:
    def __init__(self, args):
        self.args = args
        self.name = args.name
        self.modes, mode_delay = parse_modes(args.mode)
        self.delay_ms = args.delay + mode_delay
        self.always_grpc_status = None  # mode grpc_status=S
        for m in self.modes:
            if m.startswith("grpc_status="):
                self.always_grpc_status = m[len("grpc_status="):]
        self.next_conn = 0
        self.next_id = 0
        self.log_file = open(args.log, "a", buffering=1) if args.log else None
        self.seen = {}  # path -> requests so far (for ?grpc_fail=N)

    def log(self, record):
        if self.log_file:
            record.setdefault("time", time.time())
            self.log_file.write(json.dumps(record, sort_keys=True) + "\n")
            self.log_file.flush()


class H2Protocol(asyncio.Protocol):
    def __init__(self, server):
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8"))
        self.transport = None
        self.conn = 0
        self.reqs = {}          # stream id -> Req
        self.seq = 0
        self.pings = 0
        self.inbuf = bytearray()
        self.preface_done = False
        self.goaway_last = None  # last_stream_id of the GOAWAY sent, if any
        self.first_stream = None
        self.pending = {}        # stream id -> [bytes left to send, end_stream]
        self.closed = False
        self.closed_by = None
        self.tasks = set()

    # -- connection
    def connection_made(self, transport):
        self.transport = transport
        srv = self.server
        srv.next_conn += 1
        self.conn = srv.next_conn
        peer = transport.get_extra_info("peername") or ("?", 0)
        srv.log({"event": "connect", "conn": self.conn, "peer_port": peer[1]})
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: LOCAL_WINDOW,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 20,
        })
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(LOCAL_WINDOW)
        self.flush()

    def connection_lost(self, exc):
        if self.closed_by is None:
            self.closed_by = "peer"
        self.closed = True
        for req in self.reqs.values():
            if not req.ended and not req.closed:
                req.closed = True
                self.server.log({"event": "aborted", "id": req.id, "conn": self.conn,
                                 "stream": req.stream, "reason": "connection closed",
                                 "body_bytes": req.body_bytes})
        for t in list(self.tasks):
            t.cancel()
        self.server.log({"event": "disconnect", "conn": self.conn, "closed_by": self.closed_by,
                         "requests": self.seq, "pings": self.pings})

    def close(self):
        if not self.closed and self.transport:
            if self.closed_by is None:
                self.closed_by = "server"
            self.transport.close()

    def flush(self):
        data = self.h2.data_to_send()
        if data and self.transport and not self.transport.is_closing():
            self.transport.write(data)

    # -- input: split into frames so that PINGs can be seen (and dropped) first
    def data_received(self, data):
        self.inbuf += data
        feed = bytearray()
        if not self.preface_done:
            if len(self.inbuf) < len(PREFACE):
                if not PREFACE.startswith(bytes(self.inbuf)):
                    self.feed(bytes(self.inbuf))  # not h2: let h2 refuse it
                    self.inbuf.clear()
                return
            feed += self.inbuf[:len(PREFACE)]
            del self.inbuf[:len(PREFACE)]
            self.preface_done = True
        while len(self.inbuf) >= 9:
            length = int.from_bytes(self.inbuf[:3], "big")
            if len(self.inbuf) < 9 + length:
                break
            frame = bytes(self.inbuf[:9 + length])
            del self.inbuf[:9 + length]
            ftype, flags = frame[3], frame[4]
            if ftype == FRAME_PING and not flags & FLAG_ACK:
                self.pings += 1
                drop = "no_ping_ack" in self.server.modes
                self.server.log({"event": "ping", "conn": self.conn, "opaque": frame[9:].hex(),
                                 "acked": not drop})
                if drop:
                    continue
            feed += frame
        if feed:
            self.feed(bytes(feed))

    def feed(self, data):
        if self.closed:
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self.server.log({"event": "protocol_error", "conn": self.conn, "error": repr(e)})
            self.flush()
            self.close()
            return
        for ev in events:
            self.handle(ev)
        self.flush()

    def handle(self, ev):
        srv = self.server
        if isinstance(ev, h2.events.RequestReceived):
            self.on_request(ev)
        elif isinstance(ev, h2.events.DataReceived):
            req = self.reqs.get(ev.stream_id)
            if req:
                req.body_bytes += len(ev.data)
                req.sha.update(ev.data)
            if ev.flow_controlled_length:
                try:
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                    pass  # the stream is gone; the connection window is reopened below
            if ev.stream_ended:
                self.on_end(ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            req = self.reqs.get(ev.stream_id)
            if req:
                for k, v in ev.headers:
                    req.trailers[k.lower()] = v
            if ev.stream_ended:
                self.on_end(ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.on_end(ev.stream_id)
        elif isinstance(ev, h2.events.StreamReset):
            req = self.reqs.get(ev.stream_id)
            if ev.remote_reset:
                srv.log({"event": "rst_received", "conn": self.conn, "stream": ev.stream_id,
                         "error_code": code_name(ev.error_code)})
            if req and not req.closed:
                req.closed = True
                if not req.ended:
                    srv.log({"event": "aborted", "id": req.id, "conn": self.conn,
                             "stream": req.stream, "reason": "stream reset",
                             "error_code": code_name(ev.error_code),
                             "body_bytes": req.body_bytes})
            self.pending.pop(ev.stream_id, None)
        elif isinstance(ev, h2.events.WindowUpdated):
            self.send_pending()
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            self.send_pending()
        elif isinstance(ev, h2.events.PingAckReceived):
            srv.log({"event": "ping_ack", "conn": self.conn, "opaque": ev.ping_data.hex()})
        elif isinstance(ev, h2.events.ConnectionTerminated):
            srv.log({"event": "goaway_received", "conn": self.conn,
                     "last_stream_id": ev.last_stream_id,
                     "error_code": code_name(ev.error_code),
                     "debug": (ev.additional_data or b"").decode("latin-1")})

    # -- requests
    def on_request(self, ev):
        srv = self.server
        srv.next_id += 1
        self.seq += 1
        req = Req(srv.next_id, self.conn, ev.stream_id, self.seq, ev.headers)
        self.reqs[ev.stream_id] = req
        srv.log({"event": "request", "id": req.id, "conn": self.conn, "stream": req.stream,
                 "seq": req.seq, "method": req.method, "path": req.path, "target": req.target,
                 "query": req.query, "authority": req.authority, "scheme": req.scheme,
                 "headers": req.headers, "raw_headers": req.raw_headers})
        if self.goaway_last is not None and req.stream > self.goaway_last:
            req.answer = False  # after our GOAWAY: never answered
        elif "refuse_first" in srv.modes and self.conn == 1 and self.seq == 1:
            req.answer = False
            req.closed = True
            self.h2.reset_stream(req.stream, h2.errors.ErrorCodes.REFUSED_STREAM)
            srv.log({"event": "refused", "id": req.id, "conn": self.conn, "stream": req.stream})
        elif "goaway_second" in srv.modes and self.seq == 2:
            req.answer = False
            last = self.first_stream or 0
            self.flush()  # whatever h2 has queued goes first: frames stay whole
            self.goaway_last = last
            self.transport.write(GoAwayFrame(0, last_stream_id=last, error_code=0).serialize())
            srv.log({"event": "goaway_sent", "conn": self.conn, "last_stream_id": last,
                     "error_code": "NO_ERROR", "trigger_stream": req.stream})
            self.loop.call_later(srv.args.goaway_close_after, self.close)
        if self.first_stream is None:
            self.first_stream = req.stream
        if ev.stream_ended:
            self.on_end(ev.stream_id)

    def on_end(self, sid):
        req = self.reqs.get(sid)
        if not req or req.ended:
            return
        req.ended = True
        self.server.log({"event": "body", "id": req.id, "conn": self.conn, "stream": sid,
                         "body_bytes": req.body_bytes, "body_sha256": req.sha.hexdigest(),
                         "trailers": req.trailers})
        if req.answer and not req.closed:
            t = self.loop.create_task(self.respond(req))
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)

    async def respond(self, req):
        delay = self.server.delay_ms + float(req.query_args.get("delay", 0) or 0)
        if delay > 0:
            await asyncio.sleep(delay / 1000.0)
        if req.closed or self.closed:
            return
        code = self.server.always_grpc_status
        if code is None and "grpc_fail" in req.query_args:
            n = self.server.seen[req.path] = self.server.seen.get(req.path, 0) + 1
            if n <= int(req.query_args["grpc_fail"]):
                code = req.query_args.get("grpc_status", "14")
        if code is None and "fail" in req.query_args:
            n = self.server.seen[req.path] = self.server.seen.get(req.path, 0) + 1
            if n <= int(req.query_args["fail"]):
                status = req.query_args.get("fail_status", "503")
                headers = [(":status", status), ("content-type", "text/plain"),
                           ("x-upstream", self.server.name)]
                if "retry_after" in req.query_args:
                    headers.append(("retry-after", req.query_args["retry_after"]))
                self.h2.send_headers(req.stream, headers)
                self.h2.send_data(req.stream, b"failing on purpose\n", end_stream=True)
                self.server.log({"event": "response", "id": req.id, "conn": self.conn,
                                 "stream": req.stream, "status": int(status)})
                self.flush()
                return
        if code is not None:
            self.h2.send_headers(req.stream, [(":status", "200"),
                                              ("content-type", "application/grpc"),
                                              ("grpc-status", code),
                                              ("grpc-message", "try again")],
                                 end_stream=True)
            self.server.log({"event": "response", "id": req.id, "conn": self.conn,
                             "stream": req.stream, "status": 200, "grpc_status": code})
            self.flush()
            return
        body = json.dumps({
            "server": self.server.name, "method": req.method, "path": req.path,
            "query": req.query, "target": req.target, "authority": req.authority,
            "scheme": req.scheme, "headers": req.headers, "body_bytes": req.body_bytes,
            "body_sha256": req.sha.hexdigest(), "trailers": req.trailers, "conn": req.conn,
            "stream": req.stream, "seq": req.seq,
        }, sort_keys=True).encode()
        headers = [(":status", "200"), ("content-type", "application/json"),
                   ("content-length", str(len(body))), ("x-upstream", self.server.name),
                   ("x-upstream-conn", str(req.conn)), ("x-upstream-stream", str(req.stream))]
        try:
            self.h2.send_headers(req.stream, headers)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as e:
            self.server.log({"event": "send_failed", "id": req.id, "conn": self.conn,
                             "stream": req.stream, "error": repr(e)})
            return
        self.server.log({"event": "response", "id": req.id, "conn": self.conn,
                         "stream": req.stream, "status": 200})
        self.pending[req.stream] = [body, True]
        self.send_pending()
        self.flush()

    def send_pending(self):
        for sid in list(self.pending):
            data, end = self.pending[sid]
            try:
                while True:
                    n = min(len(data), self.h2.local_flow_control_window(sid),
                            self.h2.max_outbound_frame_size)
                    if n <= 0 and data:
                        break
                    piece, data = data[:n], data[n:]
                    self.h2.send_data(sid, piece, end_stream=end and not data)
                    if not data:
                        break
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
                self.pending.pop(sid, None)
                continue
            if data:
                self.pending[sid][0] = data
            else:
                self.pending.pop(sid, None)
        self.flush()


async def main_async(args):
    server = Server(args)
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: H2Protocol(server), host=args.host, port=args.port,
                                   backlog=1024, reuse_address=True)
    port = srv.sockets[0].getsockname()[1]
    print("listening on %d" % port, flush=True)
    async with srv:
        await srv.serve_forever()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0, help="0 = pick one and print it")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--name", default="h2upstream", help="echoed back as \"server\"")
    p.add_argument("--mode", action="append", default=[],
                   help="goaway_second, refuse_first, no_ping_ack, delay=MS (comma-separated "
                        "or repeated)")
    p.add_argument("--delay", type=float, default=0, help="ms before every response's HEADERS")
    p.add_argument("--goaway-close-after", type=float, default=3.0,
                   help="goaway_second: seconds between the GOAWAY and closing the connection")
    p.add_argument("--log", help="JSON lines file, one per event")
    args = p.parse_args(argv)
    parse_modes(args.mode)  # refuse unknown modes before printing the address
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())

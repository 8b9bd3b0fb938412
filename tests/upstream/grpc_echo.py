#!/usr/bin/env python3
"""A real gRPC server (Debian's python3-grpcio) for remora's tests: service
test.Echo with one method of each kind, on raw bytes (no generated stubs).

  Unary         echoes "echo:" + request; "fail" aborts with NOT_FOUND;
                sets trailing metadata x-trace and x-custom-bin
  ClientStream  answers the total number of bytes received
  ServerStream  sends N messages "m0".."mN-1" for a request "N"
  Bidi          answers every message upper-cased
  Slow          sleeps the request's number of milliseconds, then echoes
  Whoami        answers the server's name (argv[2], else its port)
  SetHealth     request "SERVICE=STATUS" (e.g. "=2", "test.Echo=1"): what
                grpc.health.v1.Health/Check answers for SERVICE from now on
  HealthLog     JSON list of the health checks received so far:
                {"service", "user_agent", "time"}

and grpc.health.v1.Health/Check (hand-encoded: HealthCheckRequest
{string service = 1}, HealthCheckResponse {ServingStatus status = 1}, with
SERVING = 1, NOT_SERVING = 2): "" and "test.Echo" are SERVING until
SetHealth changes them; any other service is NOT_FOUND, as the gRPC health
protocol says.

Usage: grpc_echo.py PORT [NAME] (prints "ready" when serving).
"""
import json
import sys
import threading
import time
from concurrent import futures

import grpc


def unary(request, context):
    context.set_trailing_metadata((("x-custom-bin", b"\x00\x01"), ("x-trace", "t1")))
    if request == b"fail":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    return b"echo:" + request


def client_stream(requests, context):
    return str(sum(len(m) for m in requests)).encode()


def server_stream(request, context):
    for i in range(int(request)):
        yield b"m%d" % i


def bidi(requests, context):
    for m in requests:
        yield m.upper()


def slow(request, context):
    time.sleep(int(request) / 1000)
    return request


NAME = sys.argv[2] if len(sys.argv) > 2 else sys.argv[1]
_health_lock = threading.Lock()
_health = {"": 1, "test.Echo": 1}  # service -> ServingStatus
_health_log = []


def _varint(data, i):
    value, shift = 0, 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def _requested_service(message):
    """HealthCheckRequest.service (field 1, length-delimited); "" when absent."""
    i = 0
    while i < len(message):
        key, i = _varint(message, i)
        field, wire = key >> 3, key & 7
        if wire == 2:
            n, i = _varint(message, i)
            if field == 1:
                return message[i:i + n].decode()
            i += n
        elif wire == 0:
            _, i = _varint(message, i)
        else:
            break
    return ""


def health_check(request, context):
    service = _requested_service(request)
    agent = dict(context.invocation_metadata()).get("user-agent", "")
    with _health_lock:
        _health_log.append({"service": service, "user_agent": agent, "time": time.time()})
        status = _health.get(service)
    if status is None:
        context.abort(grpc.StatusCode.NOT_FOUND, "unknown service %r" % service)
    return bytes([0x08, status])  # field 1, varint


def set_health(request, context):
    service, _, status = request.decode().partition("=")
    with _health_lock:
        _health[service] = int(status)
    return b"ok"


def health_log(request, context):
    with _health_lock:
        return json.dumps(_health_log).encode()


def whoami(request, context):
    return NAME.encode()


def main():
    health = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(health_check),
    })
    handler = grpc.method_handlers_generic_handler("test.Echo", {
        "Whoami": grpc.unary_unary_rpc_method_handler(whoami),
        "SetHealth": grpc.unary_unary_rpc_method_handler(set_health),
        "HealthLog": grpc.unary_unary_rpc_method_handler(health_log),
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler, health))
    server.add_insecure_port("127.0.0.1:%s" % sys.argv[1])
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()

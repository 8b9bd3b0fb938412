#!/usr/bin/env python3
"""A real gRPC server (Debian's python3-grpcio) for remora's tests: service
test.Echo with one method of each kind, on raw bytes (no generated stubs).

  Unary         echoes "echo:" + request; "fail" aborts with NOT_FOUND;
                sets trailing metadata x-trace and x-custom-bin
  ClientStream  answers the total number of bytes received
  ServerStream  sends N messages "m0".."mN-1" for a request "N"
  Bidi          answers every message upper-cased
  Slow          sleeps the request's number of milliseconds, then echoes

Usage: grpc_echo.py PORT (prints "ready" when serving).
"""
import sys
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


def main():
    handler = grpc.method_handlers_generic_handler("test.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port("127.0.0.1:%s" % sys.argv[1])
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()

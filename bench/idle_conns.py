#!/usr/bin/python3
"""Opens N keep-alive connections to a proxy, sends one GET on each, reads the
answer, and keeps every connection open and idle. Prints one JSON line
{"opened": .., "failed": .., "seconds": ..} when they are all up, then waits
for a line (or EOF) on stdin before closing them all and exiting.

Used by bench/harness.py to measure a proxy's memory per idle keep-alive
connection: (RSS with the connections - RSS before) / opened.

    idle_conns.py --port 8080 [--host 127.0.0.1] [--count 10000] [--parallel 256]
"""
import argparse
import asyncio
import json
import resource
import sys
import time


async def open_one(host, port, request, sem, conns, errors):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
                elif name.strip().lower() == b"transfer-encoding":
                    raise ValueError("chunked answer: not expected from the origin")
            if length:
                await asyncio.wait_for(reader.readexactly(length), 10)
            if status != 200:
                raise ValueError(f"status {status}")
            conns.append(writer)
        except Exception as e:  # noqa: BLE001 - every failure is counted, the first is shown
            errors.append(repr(e))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--parallel", type=int, default=256)
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    request = (f"GET / HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
               "User-Agent: remora-bench-idle\r\n\r\n").encode()
    sem = asyncio.Semaphore(args.parallel)
    conns, errors = [], []
    start = time.monotonic()
    await asyncio.gather(*(open_one(args.host, args.port, request, sem, conns, errors)
                           for _ in range(args.count)))
    print(json.dumps({"opened": len(conns), "failed": len(errors),
                      "first_error": errors[0] if errors else None,
                      "seconds": round(time.monotonic() - start, 3)}), flush=True)
    # Hold them until told to let go (or until the harness goes away).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for w in conns:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())

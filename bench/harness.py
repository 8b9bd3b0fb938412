#!/usr/bin/python3
"""The benchmark harness behind bench/run: remora against the direct path and
peer proxies (HAProxy, nginx, h2o), in one run. See bench/README.md.

bench/run builds everything first and then runs this with Debian's python3
(/usr/bin/python3, for python3-matplotlib).
"""
import argparse
import datetime
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
sys.dont_write_bytecode = True
import report  # noqa: E402  (bench/report.py)

TARGETS = ["direct", "remora", "haproxy", "nginx", "h2o"]
PROXIES = TARGETS[1:]
PROXY_CPU = "0"  # the proxy under test
LOAD_CPU = "1"   # load generator and origin
CLK_TCK = os.sysconf("SC_CLK_TCK")
SMALL_BODY = ("remora bench origin: a small fixed body of one hundred bytes" + "." * 99)[:99] + "\n"
assert len(SMALL_BODY) == 100
IDLE_CONNECTIONS = 10_000
MAX_CONNECTIONS = 12_000   # per proxy, above IDLE_CONNECTIONS

NOT_IMPLEMENTED = "n/a (not implemented)"


# --------------------------------------------------------------- scenarios
# kind: wrk (HTTP/1.1, closed loop), h2load (h2c, closed loop), idle, open.
# `port` names the listener of a target; `na` gives the reason a target has
# no such path.
SCENARIOS = [
    dict(id="h1_get", title="HTTP/1.1 small GET (wrk, 64 conns)", kind="wrk", port="h1",
         path="/", body=0, connections=64),
    dict(id="h2c_get", title="h2c small GET (h2load, 16 conns x 10 streams)", kind="h2load",
         port="h2c", path="/", connections=16, streams=10),
    dict(id="h1_post_16k", title="HTTP/1.1 POST 16 KiB (wrk, 64 conns)", kind="wrk", port="h1",
         path="/upload", body=16 * 1024, connections=64),
    dict(id="h1_post_1m", title="HTTP/1.1 POST 1 MiB (wrk, 16 conns)", kind="wrk", port="h1",
         path="/upload", body=1024 * 1024, connections=16),
    dict(id="grpc_unary", title="gRPC unary over h2c (h2load, 16 conns x 10 streams)",
         kind="h2load", port="grpc", path="/bench.Echo/Call", connections=16, streams=10,
         grpc=True,
         na={"h2o": "n/a (h2o 2.2 proxies over HTTP/1.1 and drops the grpc-status trailer)"}),
    dict(id="h1_to_h2", title="HTTP/1.1 downstream -> h2c upstream (wrk, 64 conns)", kind="wrk",
         port="h1h2", path="/", body=0, connections=64,
         na={"h2o": "n/a (h2o 2.2 has no HTTP/2 upstream)"}),
    dict(id="idle_10k", title=f"{IDLE_CONNECTIONS} idle keep-alive connections", kind="idle",
         port="h1", na={"direct": "n/a (no proxy)"}),
    dict(id="open_25", title="open loop at 25% of remora's max rps (64 conns)", kind="open",
         port="h1", fraction=0.25, connections=64),
    dict(id="open_75", title="open loop at 75% of remora's max rps (64 conns)", kind="open",
         port="h1", fraction=0.75, connections=64),
]


def tls_scenarios():
    """TLS hook: the mTLS issue adds its scenarios here (TLS and mTLS h1/h2
    to each target, with certificates made in the run's temp dir). Each entry
    has the shape of SCENARIOS' entries; the listeners they need go into the
    templates under bench/conf/ and into ports_for()."""
    return []


# ------------------------------------------------------------------ helpers
def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def port_is_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def pick_port_base(preferred):
    for base in range(preferred, preferred + 2000, 100):
        if all(port_is_free(base + i) for i in range(50)):
            return base
    raise SystemExit("bench: no free block of 50 ports on 127.0.0.1")


def ports_for(base):
    return {
        "origin": {"h1": base, "h2c": base + 1},
        "direct": {"h1": base, "h2c": base + 1, "grpc": base + 1, "h1h2": base},
        # one `auto` listener: HTTP/1.1, and h2c by its preface (proxied to the h1 origin)
        "remora": {"h1": base + 10, "h2c": base + 10, "grpc": base + 11, "h1h2": base + 12,
                   "admin": base + 19},
        "haproxy": {"h1": base + 20, "h2c": base + 21, "grpc": base + 21, "h1h2": base + 22},
        "nginx": {"h1": base + 30, "h2c": base + 31, "grpc": base + 31, "h1h2": base + 32},
        "h2o": {"h1": base + 40, "h2c": base + 40},
    }


def render(template, out_path, values):
    with open(os.path.join(BENCH, "conf", template)) as f:
        text = f.read()

    def sub(m):
        if m.group(1) not in values:
            raise KeyError(f"{template}: no value for @{m.group(1)}@")
        return str(values[m.group(1)])

    with open(out_path, "w") as f:
        f.write(re.sub(r"@([A-Z][A-Z0-9_]*)@", sub, text))
    return out_path


def all_descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def status_kib(pids, key):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


def core_ticks():
    """{cpu index: (busy, softirq, total)} in clock ticks, from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                v = [int(x) for x in vals[:8]]  # user nice system idle iowait irq softirq steal
                out[int(name[3:])] = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7], v[6], sum(v))
    return out


def core_usage(deltas, proxy_ticks, load_ticks):
    """From each core's ticks over a figure ({cpu: (busy, softirq, total)},
    summed over its slices): per core busy %, and on each core the share
    outside the accounting of what this run started: other processes on the
    machine (a busy machine shows here), and on the proxy core also the
    kernel's softirq work done while the proxy was not the running task (the
    kernel charges a tick to whatever task it interrupts: softirq run in the
    proxy's context is the proxy's, softirq run while the core idled is no
    process's)."""
    usage = {}
    for cpu, (busy, softirq, total) in deltas.items():
        total = max(1, total)
        usage[f"cpu{cpu}_busy_pct"] = round(100 * busy / total, 1)
        if str(cpu) == PROXY_CPU:
            usage["proxy_core_busy_s"] = busy / CLK_TCK
            usage["proxy_core_other_pct"] = round(100 * (busy - proxy_ticks) / total, 1)
            usage["proxy_core_softirq_pct"] = round(100 * softirq / total, 1)
        if str(cpu) == LOAD_CPU:
            usage["load_core_other_pct"] = round(100 * (busy - load_ticks) / total, 1)
    return usage


def children_ticks():
    """CPU of the finished children (the load generators), in clock ticks."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * CLK_TCK


def reset_peak_rss(pids):
    """Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so each scenario
    gets its own peak. Returns False where the kernel refuses."""
    ok = True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


class Proc:
    """A process this run started; stopped by its PID (and its children's)."""
    live = []

    def __init__(self, name, argv, cpu, logdir, stdin=subprocess.DEVNULL, stdout=None):
        self.name = name
        self.log_path = os.path.join(logdir, f"{name}.log")
        self.log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            ["taskset", "-c", cpu] + argv, stdin=stdin,
            stdout=stdout if stdout is not None else self.log, stderr=self.log,
            start_new_session=True)
        Proc.live.append(self)

    @property
    def pid(self):
        return self.popen.pid

    def pids(self):
        return all_descendants(self.pid) if self.popen.poll() is None else []

    def alive(self):
        return self.popen.poll() is None

    def stop(self, timeout=5.0):
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        for pid in pids:  # anything left, children included
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(2)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()
        if self in Proc.live:
            Proc.live.remove(self)

    def tail(self, n=5):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:]).strip()
        except OSError:
            return ""

    @classmethod
    def stop_all(cls):
        for p in list(reversed(cls.live)):
            p.stop(timeout=2)


def wait_ports(ports, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            if proc is not None and not proc.alive():
                return f"exited: {proc.tail()}"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    return f"port {port} not listening after {timeout:.0f}s"
                time.sleep(0.05)
    return None


def http_get(port, path="/"):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def run_tool(argv, timeout, env=None):
    """A load generator on the load core; its stdout."""
    r = subprocess.run(["taskset", "-c", LOAD_CPU] + argv, capture_output=True, text=True,
                       timeout=timeout, env=env)
    return r.returncode, r.stdout, r.stderr


# ------------------------------------------------------------------ the run
class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.join(ROOT, args.build_dir)
        self.remora_bin = os.path.join(self.build, "src", "remora")
        self.open_loop_bin = os.path.join(self.build, "open_loop")
        self.tmp = tempfile.mkdtemp(prefix="remora-bench-")
        self.base = pick_port_base(args.port_base)
        self.ports = ports_for(self.base)
        self.scenarios = [s for s in SCENARIOS + tls_scenarios()
                          if not args.scenarios or s["id"] in args.scenarios]
        self.targets = [t for t in TARGETS if not args.targets or t in args.targets]
        # results[scenario][target] = [one dict per round]
        self.results = {s["id"]: {t: [] for t in self.targets} for s in self.scenarios}
        self.slice_seconds = args.duration / args.slices
        self.rounds_meta = []
        self.origin = None
        self.hwm_reset_ok = True

    # --- files
    def values(self, target=None):
        p = self.ports.get(target, {})
        return {
            "DIR": self.tmp, "NOFILE": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
            "MAXCONN": MAX_CONNECTIONS, "BODY": SMALL_BODY.replace("\n", "\\n"),
            "ORIGIN_H1": self.ports["origin"]["h1"], "ORIGIN_H2C": self.ports["origin"]["h2c"],
            "PORT_H1": p.get("h1", 0), "PORT_H2C": p.get("h2c", 0),
            "PORT_H1H2": p.get("h1h2", 0), "PORT_ADMIN": p.get("admin", 0),
            "PORT_GRPC": p.get("grpc", 0),
        }

    def prepare(self):
        for d in ("www", "origin-tmp", "nginx-tmp"):
            os.makedirs(os.path.join(self.tmp, d), exist_ok=True)
        os.chmod(self.tmp, 0o755)  # h2o drops to nobody when started as root
        with open(os.path.join(self.tmp, "www", "small.txt"), "w") as f:
            f.write(SMALL_BODY)
        with open(os.path.join(self.tmp, "www", "grpc-reply.bin"), "wb") as f:
            f.write(b"\0\0\0\0\0")  # gRPC frame: uncompressed, empty message
        # The gRPC request: an 11-byte message in a 5-byte gRPC frame header.
        with open(os.path.join(self.tmp, "grpc-request.bin"), "wb") as f:
            f.write(b"\0\0\0\0\x0b" + b"\x0a\x09remora-go")
        for size in (16 * 1024, 1024 * 1024):
            with open(os.path.join(self.tmp, f"body-{size}.bin"), "wb") as f:
                f.write(b"x" * size)

    def start_origin(self):
        conf = render("origin-nginx.conf", os.path.join(self.tmp, "origin-nginx.conf"),
                      self.values())
        self.origin = Proc("origin", ["nginx", "-c", conf, "-p", self.tmp], LOAD_CPU, self.tmp)
        err = wait_ports(self.ports["origin"].values(), self.origin)
        if err:
            raise SystemExit(f"bench: the origin did not start: {err}")
        reply = http_get(self.ports["origin"]["h1"])
        if not reply.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"bench: the origin answers {reply[:80]!r}")

    def start_target(self, target):
        """The proxy, pinned to PROXY_CPU; None for direct. Returns (proc, error)."""
        if target == "direct":
            return None, None
        v = self.values(target)
        if target == "remora":
            conf = render("remora.yaml", os.path.join(self.tmp, "remora.yaml"), v)
            argv = [self.remora_bin, "run", "-c", conf]
        elif target == "nginx":
            conf = render("nginx.conf", os.path.join(self.tmp, "nginx.conf"), v)
            argv = ["nginx", "-c", conf, "-p", self.tmp]
        elif target == "haproxy":
            conf = render("haproxy.cfg", os.path.join(self.tmp, "haproxy.cfg"), v)
            argv = ["haproxy", "-f", conf, "-db"]
        elif target == "h2o":
            conf = render("h2o.conf", os.path.join(self.tmp, "h2o.conf"), v)
            argv = ["h2o", "-c", conf]
        proc = Proc(target, argv, PROXY_CPU, self.tmp)
        ports = [port for name, port in self.ports[target].items() if name != "admin"]
        err = wait_ports(sorted(set(ports)), proc)
        if not err:
            try:
                reply = http_get(self.ports[target]["h1"])
                if not reply.startswith(b"HTTP/1.1 200"):
                    err = f"answers {reply[:60]!r}"
            except OSError as e:
                err = f"GET / failed: {e}"
        if err:
            proc.stop()
            return None, err
        return proc, None

    # --- one measurement
    def measure(self, scenario, target, proc, rate=None, warm=True, first=True):
        """One slice of a figure: `slice_seconds` of the scenario's load on the
        target. Returns its raw counts (requests, window, CPU ticks, latency
        histogram); combine() makes the figure of a target's slices. `first`:
        the target's first slice of this scenario (peak RSS is reset then)."""
        na = scenario.get("na", {}).get(target)
        if na:
            return {"na": na}
        port = self.ports[target].get(scenario["port"])
        if port is None:
            return {"na": "n/a"}
        pids = proc.pids() if proc else []
        if proc is not None and not pids:
            return {"error": f"{target} is not running: {proc.tail()}"}
        kind = scenario["kind"]
        if kind == "idle":
            return self.measure_idle(port, pids)
        # Warm-up: the same load, not counted (fills pools, caches, branch
        # predictors), before a target's first slice. Quick runs warm up only
        # a freshly started target.
        if (kind in ("wrk", "h2load") and first and self.args.warmup > 0
                and (warm or not self.args.quick)):
            self.load(scenario, port, self.args.warmup, warm=True)
        if pids and first and not reset_peak_rss(pids):
            self.hwm_reset_ok = False
        origin_pids = self.origin.pids()
        ticks0, cores0 = cpu_ticks(pids), core_ticks()
        load0 = cpu_ticks(origin_pids) + children_ticks()
        if kind == "open":
            out = self.open_loop(port, rate, scenario["connections"], first)
        else:
            out = self.load(scenario, port, self.slice_seconds)
        ticks1, cores1 = cpu_ticks(pids), core_ticks()
        load1 = cpu_ticks(origin_pids) + children_ticks()
        out["cores"] = {cpu: tuple(a - b for a, b in zip(cores1[cpu], cores0[cpu]))
                        for cpu in cores1 if cpu in cores0}
        out["load_ticks"] = load1 - load0
        if pids:
            alive = [p for p in pids if os.path.exists(f"/proc/{p}")]
            out["proxy_ticks"] = ticks1 - ticks0
            out["peak_rss_kib"] = status_kib(alive, "VmHWM")
            out["peak_rss_kib_per_process"] = {str(p): status_kib([p], "VmHWM") for p in alive}
            if proc is not None and not proc.alive():
                out["error"] = f"{target} exited during the run: {proc.tail()}"
        return out

    def load(self, scenario, port, seconds, warm=False):
        kind = scenario["kind"]
        timeout = seconds + 30
        if kind == "wrk":
            env = dict(os.environ, BENCH_BODY_BYTES=str(scenario.get("body", 0)),
                       BENCH_PATH=scenario["path"])
            argv = ["wrk", "-t1", f"-c{scenario['connections']}", f"-d{max(1, round(seconds))}s",
                    "--timeout", "5s", "-s", os.path.join(BENCH, "lua", "wrk.lua"),
                    f"http://127.0.0.1:{port}{scenario['path']}"]
            rc, out, err = run_tool(argv, timeout, env)
            if warm:
                return None
            m = re.search(r"^BENCH_JSON (\{.*\})$", out, re.M)
            if rc != 0 or not m:
                return {"error": f"wrk failed (rc {rc}): {(err or out)[-300:]}"}
            j = json.loads(m.group(1))
            flat = j["hist"]
            errors = sum(j[k] for k in ("err_connect", "err_read", "err_write", "err_status",
                                        "err_timeout"))
            return {"requests": j["requests"], "window_s": j["duration_us"] / 1e6,
                    "hist": dict(zip(flat[::2], flat[1::2])), "errors": errors,
                    "error_detail": {k: j[k] for k in j if k.startswith("err_") and j[k]}}
        # h2load: percentiles from its per-request log (it prints only mean/sd).
        logfile = os.path.join(self.tmp, "h2load-requests.log")
        argv = ["h2load", "-t1", f"-c{scenario['connections']}", f"-m{scenario['streams']}",
                "-D", f"{int(seconds * 1000)}ms", "-T", "5"]
        if scenario.get("grpc"):
            argv += ["-d", os.path.join(self.tmp, "grpc-request.bin"),
                     "-H", "content-type: application/grpc", "-H", "te: trailers"]
        if not warm:
            argv += [f"--log-file={logfile}"]
        argv.append(f"http://127.0.0.1:{port}{scenario['path']}")
        rc, out, err = run_tool(argv, timeout)
        if warm:
            return None
        m = re.search(r"finished in ([\d.]+)(ms|s), ([\d.]+) req/s", out)
        r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
        st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        if rc != 0 or not m or not r:
            return {"error": f"h2load failed (rc {rc}): {(err or out)[-300:]}"}
        hist = {}
        try:
            with open(logfile) as f:
                for line in f:
                    parts = line.split("\t")
                    if len(parts) >= 3:
                        us = int(parts[2])
                        hist[us] = hist.get(us, 0) + 1
            os.unlink(logfile)
        except OSError:
            pass
        # Requests still in flight when the duration ended are neither done
        # nor failed: not errors.
        succeeded = int(r.group(4))
        errors = int(r.group(5)) + int(r.group(7))
        if st:
            errors += int(st.group(3)) + int(st.group(4))
        window = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
        return {"requests": succeeded, "window_s": window, "hist": hist, "errors": errors}

    def open_loop(self, port, rate, connections, first):
        """One open-loop slice. The first slice of a target warms it up (at
        the same rate, not recorded); later ones only let the schedule settle."""
        warmup = min(self.args.warmup, 0.5) if self.args.quick else self.args.warmup
        if not first:
            warmup = min(warmup, 0.25)
        argv = [self.open_loop_bin, "--port", str(port), "--rate", f"{rate:.0f}",
                "--duration", str(self.slice_seconds), "--warmup", str(warmup),
                "--connections", str(connections), "--drain", "2"]
        rc, out, err = run_tool(argv, self.slice_seconds + warmup + 30)
        try:
            j = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"error": f"open_loop failed (rc {rc}): {(err or out)[-300:]}"}
        flat = j["hist"]
        # `completed` includes the warm-up's answers, as the CPU ticks do;
        # `recorded` are the measured window's, the rate achieved.
        return {"requests": j["completed"], "recorded": j["recorded"], "window_s": j["window_s"],
                "target_rps": rate, "hist": dict(zip(flat[::2], flat[1::2])),
                "errors": j["errors"] + j["timeouts"] + j["non_2xx"],
                "error_detail": {k: j[k] for k in ("errors", "timeouts", "non_2xx") if j[k]}}

    def measure_idle(self, port, pids):
        time.sleep(0.3)
        before = status_kib(pids, "VmRSS")
        client = subprocess.Popen(
            ["taskset", "-c", LOAD_CPU, sys.executable, os.path.join(BENCH, "idle_conns.py"),
             "--port", str(port), "--count", str(self.args.idle_connections)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            line = client.stdout.readline()
            j = json.loads(line) if line.strip() else {"opened": 0, "failed": -1}
            time.sleep(0.5)  # let the proxy finish its bookkeeping
            with_conns = status_kib(pids, "VmRSS")
            client.stdin.write("\n")
            client.stdin.flush()
            client.wait(20)
        except (ValueError, subprocess.TimeoutExpired) as e:
            client.kill()
            client.wait()
            return {"error": f"idle client failed: {e}"}
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
        time.sleep(0.5)  # closes reach the proxy before the next scenario
        opened = j.get("opened", 0)
        res = {"connections": opened, "errors": j.get("failed", 0),
               "rss_before_kib": before, "rss_with_kib": with_conns,
               "open_seconds": j.get("seconds")}
        if j.get("first_error"):
            res["error_detail"] = {"first": j["first_error"]}
        res["bytes_per_conn"] = ((with_conns - before) * 1024 / opened) if opened else None
        return res

    # --- rounds
    def run(self):
        self.prepare()
        log(f"temp dir {self.tmp}, ports {self.base}..{self.base + 49}")
        self.start_origin()
        closed = [s for s in self.scenarios if s["kind"] != "open"]
        opened = [s for s in self.scenarios if s["kind"] == "open"]
        for rnd in range(self.args.rounds):
            k = rnd % len(self.targets)
            order = self.targets[k:] + self.targets[:k]
            with open("/proc/loadavg") as f:
                load = f.read().split()[0]
            self.rounds_meta.append({"round": rnd + 1, "order": order, "loadavg_start": load})
            log(f"round {rnd + 1}/{self.args.rounds}: order {' '.join(order)} (loadavg {load})")
            self.pass_(rnd, order, closed, None)
            if opened:
                rate = self.max_rate(rnd)
                self.rounds_meta[-1]["open_loop_base_rps"] = rate
                self.pass_(rnd, order, opened, rate)
        self.origin.stop()

    def max_rate(self, rnd):
        """remora's HTTP/1.1 small-GET rps in this round (else the median of
        what was measured), the base of the open-loop rates."""
        cells = self.results.get("h1_get", {})
        def rps(t):
            rows = cells.get(t, [])
            return rows[rnd].get("rps") if len(rows) > rnd else None
        r = rps("remora")
        if not r:
            vals = [v for v in (rps(t) for t in PROXIES) if v]
            r = statistics.median(vals) if vals else self.args.fallback_rate
            log(f"  no remora h1_get figure this round: open-loop base {r:.0f} rps")
        return r

    def pass_(self, rnd, order, scenarios, base_rate):
        """One pass over `scenarios`: every target started (each pinned to the
        proxy core, idle while another is measured), then each scenario
        measured on every target in slices: `--slices` slices per target of
        duration/slices seconds each, the targets taking turns (this round's
        order, reversed on every other slice), and a target's slices summed
        into its figure. This machine's speed drifts by tens of percent over
        tens of seconds (other tenants of the host); taking turns every few
        seconds puts the same drift into every target's figure, so the
        ratios within a round cancel it."""
        started = {}
        for target in order:
            needed = [s for s in scenarios if not s.get("na", {}).get(target)]
            started[target] = self.start_target(target) if needed else (None, None)
            if started[target][1]:
                log(f"  {target}: did not start: {started[target][1]}")
        warmed = set()  # targets measured once since they started
        try:
            for s in scenarios:
                slices = 1 if s["kind"] == "idle" else self.args.slices
                parts = {t: [] for t in order}
                for i in range(slices):
                    for target in (order if i % 2 == 0 else order[::-1]):
                        if parts[target] and not measured(parts[target][-1]):
                            continue  # n/a, or failed: no more slices
                        proc, err = started[target]
                        if err and not s.get("na", {}).get(target):
                            res = {"error": f"{target} did not start: {err}"}
                        else:
                            rate = base_rate * s["fraction"] if base_rate else None
                            try:
                                res = self.measure(s, target, proc, rate,
                                                   warm=target not in warmed, first=i == 0)
                                if "na" not in res:
                                    warmed.add(target)
                            except subprocess.TimeoutExpired as e:
                                res = {"error": f"timed out: {e}"}
                        parts[target].append(res)
                for target in order:
                    res = combine(parts[target])
                    res["round"] = rnd + 1
                    self.results[s["id"]][target].append(res)
                    log(f"  {target:8} {s['id']:12} {report.one_line(res)}")
        finally:
            for proc, _ in started.values():
                if proc:
                    proc.stop()

    # --- microbenchmarks
    def micro(self):
        exe = os.path.join(self.build, "bench", "remora_microbench")
        if not os.path.exists(exe):
            return {"skipped": "not built: configure with -DREMORA_BENCH=ON "
                               "(the top-level CMakeLists.txt must add_subdirectory(bench))"}
        out = os.path.join(self.tmp, "micro.json")
        min_time = "0.05" if self.args.quick else "0.3"
        log("microbenchmarks (pinned to the proxy core)")
        r = subprocess.run(["taskset", "-c", PROXY_CPU, exe, "--benchmark_format=console",
                            f"--benchmark_out={out}", "--benchmark_out_format=json",
                            f"--benchmark_min_time={min_time}"],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            return {"error": (r.stderr or r.stdout)[-500:]}
        with open(out) as f:
            return json.load(f)


def measured(part):
    return "na" not in part and "error" not in part


def combine(parts):
    """A target's figure from its slices: counts, CPU ticks and latency
    histograms summed, then turned into rates, CPU per request and
    percentiles."""
    if len(parts) == 1 and "hist" not in parts[0]:
        return parts[0]  # n/a, an error before any load, or the idle scenario
    failed = next((p for p in parts if "error" in p), None)
    done = [p for p in parts if "hist" in p]
    if not done:
        return failed
    requests = sum(p["requests"] for p in done)
    window = sum(p["window_s"] for p in done)
    answered = sum(p.get("recorded", p["requests"]) for p in done)
    hist = {}
    for p in done:
        for us, count in p["hist"].items():
            hist[us] = hist.get(us, 0) + count
    out = {"requests": requests, "rps": answered / window if window else 0,
           "errors": sum(p["errors"] for p in done), "slices": len(done)}
    if "target_rps" in done[0]:
        out["target_rps"] = done[0]["target_rps"]
    detail = {}
    for p in done:
        for k, v in p.get("error_detail", {}).items():
            detail[k] = detail.get(k, 0) + v
    if detail:
        out["error_detail"] = detail
    out.update(percentiles(hist))
    # One slow slice sets a figure's p99 (a machine stall, README): each
    # slice's own p99 shows whether it did.
    out["slice_p99_us"] = [percentiles(p["hist"])["p99_us"] for p in done]
    cores = {}
    for p in done:
        for cpu, delta in p["cores"].items():
            cores[cpu] = tuple(a + b for a, b in zip(cores.get(cpu, (0, 0, 0)), delta))
    proxy_ticks = sum(p.get("proxy_ticks", 0) for p in done)
    out.update(core_usage(cores, proxy_ticks, sum(p["load_ticks"] for p in done)))
    if "proxy_ticks" in done[0]:
        out["proxy_cpu_s"] = proxy_ticks / CLK_TCK
        out["cpu_us_per_req"] = (out["proxy_cpu_s"] * 1e6 / requests) if requests else None
        # The whole proxy core's busy time: the proxy's own accounting plus
        # the kernel's work on its core that no process was charged for.
        out["core_us_per_req"] = (out["proxy_core_busy_s"] * 1e6 / requests) if requests else None
        out["peak_rss_kib"] = max(p["peak_rss_kib"] for p in done)
        out["peak_rss_kib_per_process"] = done[-1]["peak_rss_kib_per_process"]
        # Each slice on its own, to show the drift the slicing evens out.
        out["slice_cpu_us_per_req"] = [
            round(p["proxy_ticks"] * 1e6 / CLK_TCK / p["requests"], 2) if p["requests"] else None
            for p in done]
    if failed:
        out["error"] = failed["error"]
    return out


def percentiles(hist):
    """p50 ... max of a {µs: count} histogram."""
    if not hist:
        return {"p50_us": None, "p90_us": None, "p99_us": None, "p999_us": None, "max_us": None}
    values = sorted(hist)
    total = sum(hist.values())

    def pct(p):
        rank = min(total - 1, int(p / 100 * total))  # 0-based, as a sorted list's index
        seen = 0
        for us in values:
            seen += hist[us]
            if seen > rank:
                return us
        return values[-1]

    return {"p50_us": pct(50), "p90_us": pct(90), "p99_us": pct(99), "p999_us": pct(99.9),
            "max_us": values[-1]}


def tool_versions(remora_bin):
    def first(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            text = (r.stdout + r.stderr).strip().splitlines()
            return text[0] if text else ""
        except (OSError, subprocess.TimeoutExpired):
            return "missing"
    return {"remora": first([remora_bin, "version"]), "nginx": first(["nginx", "-v"]),
            "haproxy": first(["haproxy", "-v"]), "h2o": first(["h2o", "--version"]),
            "wrk": first(["wrk", "-v"]), "h2load": first(["h2load", "--version"]),
            "kernel": os.uname().release}


def git(*args):
    try:
        return subprocess.run(["git", "-C", ROOT] + list(args), capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except OSError:
        return ""


def main():
    ap = argparse.ArgumentParser(description="remora benchmark harness (see bench/README.md)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--duration", type=float, help="seconds of load per measurement")
    ap.add_argument("--warmup", type=float, help="seconds of warm-up load before each")
    ap.add_argument("--slices", type=int,
                    help="turns the targets take within a figure (duration split between them)")
    ap.add_argument("--targets", nargs="*", choices=TARGETS)
    ap.add_argument("--scenarios", nargs="*")
    ap.add_argument("--idle-connections", type=int, default=IDLE_CONNECTIONS)
    ap.add_argument("--build-dir", default="build-release")
    ap.add_argument("--port-base", type=int, default=int(os.environ.get("REMORA_BENCH_PORT", 28100)))
    ap.add_argument("--fallback-rate", type=float, default=20000)
    ap.add_argument("--out-dir", default=os.path.join(BENCH, "results"))
    ap.add_argument("--no-micro", action="store_true")
    args = ap.parse_args()
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.duration is None:
        args.duration = 2 if args.quick else 6
    if args.warmup is None:
        args.warmup = 1
    if args.slices is None:
        args.slices = 1 if args.quick else 6
    if args.scenarios:
        unknown = set(args.scenarios) - {s["id"] for s in SCENARIOS + tls_scenarios()}
        if unknown:
            ap.error(f"unknown scenarios: {' '.join(sorted(unknown))}")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.idle_connections + 1000:
        log(f"open-file limit {hard} is low for {args.idle_connections} idle connections")

    def on_signal(signum, _frame):
        Proc.stop_all()
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    started = time.monotonic()
    # The revision measured is the one built before the run: a commit or an
    # edit made while it runs must not be credited with its figures.
    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    bench = Bench(args)
    try:
        bench.run()
        micro = {"skipped": "--no-micro"} if args.no_micro else bench.micro()
    finally:
        Proc.stop_all()
    now = datetime.datetime.now()
    meta = {
        "date": now.isoformat(timespec="seconds"), "revision": rev, "dirty": dirty,
        "mode": "quick" if args.quick else "full", "rounds": args.rounds,
        "duration_s": args.duration, "warmup_s": args.warmup, "slices": args.slices,
        "idle_connections": args.idle_connections, "cpus": os.cpu_count(),
        "proxy_cpu": PROXY_CPU, "load_cpu": LOAD_CPU, "versions": tool_versions(bench.remora_bin),
        "peak_rss_reset_per_scenario": bench.hwm_reset_ok, "rounds_detail": bench.rounds_meta,
        "wall_seconds": None,
    }
    meta["wall_seconds"] = round(time.monotonic() - started, 1)
    os.makedirs(args.out_dir, exist_ok=True)
    # <date>-<rev>: the full run's files (the last one is committed);
    # quick runs get a -quick suffix (ignored by git, see results/.gitignore).
    stem = os.path.join(args.out_dir,
                        f"{now.strftime('%Y-%m-%d')}-{rev}{'-quick' if args.quick else ''}")
    doc = report.build(meta, bench.scenarios, bench.targets, bench.results, micro)
    md = report.markdown(doc)
    with open(stem + ".json", "w") as f:
        json.dump(doc, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(md)
    chart = report.chart(doc, stem + ".png")
    print(md)
    log(f"wrote {stem}.md, {stem}.json" + (f", {chart}" if chart else " (no chart)"))
    shutil.rmtree(bench.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

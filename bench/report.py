"""Turns the harness's raw per-round results into the summary (medians over
rounds, per-round ratios), the Markdown table and the PNG chart."""
import statistics

METRICS = ["rps", "p50_us", "p90_us", "p99_us", "p999_us", "cpu_us_per_req", "core_us_per_req",
           "peak_rss_kib"]
IDLE_METRICS = ["connections", "rss_before_kib", "rss_with_kib", "bytes_per_conn"]
COLORS = {"direct": "#7f7f7f", "remora": "#d62728", "haproxy": "#1f77b4", "nginx": "#2ca02c",
          "h2o": "#9467bd"}


def ok(cell):
    return cell is not None and "na" not in cell and "error" not in cell


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def one_line(res):
    if "na" in res:
        return res["na"]
    if "error" in res and "rps" not in res and "connections" not in res:
        return "ERROR " + res["error"][:160].replace("\n", " ")
    if "connections" in res:
        b = res.get("bytes_per_conn")
        return (f"{res['connections']} conns, {fmt_bytes(b)}/conn, errors {res.get('errors')}")
    text = (f"{res.get('rps', 0):9.0f} rps  p50 {fmt_us(res.get('p50_us'))}  "
            f"p99 {fmt_us(res.get('p99_us'))}  cpu {fmt_num(res.get('cpu_us_per_req'), 2)} us/req  "
            f"rss {fmt_kib(res.get('peak_rss_kib'))}  errors {res.get('errors')}")
    if "error" in res:
        text += "  ERROR " + res["error"][:120]
    return text


# ------------------------------------------------------------------ summary
def build(meta, scenarios, targets, results, micro):
    summary, ratios = {}, {}
    for s in scenarios:
        sid = s["id"]
        summary[sid], ratios[sid] = {}, {}
        keys = IDLE_METRICS if s["kind"] == "idle" else METRICS
        for t in targets:
            rows = results[sid][t]
            na = next((r["na"] for r in rows if "na" in r), None)
            if na:
                summary[sid][t] = {"na": na}
                continue
            good = [r for r in rows if ok(r)]
            cell = {k: med([r.get(k) for r in good]) for k in keys}
            cell["errors"] = sum((r.get("errors") or 0) for r in rows)
            cell["rounds_ok"] = len(good)
            cell["rounds"] = len(rows)
            failures = [r["error"] for r in rows if "error" in r]
            if failures:
                cell["failures"] = failures
            if s["kind"] == "open":
                cell["target_rps"] = med([r.get("target_rps") for r in rows])
            summary[sid][t] = cell
        # Per-round ratios of every target against every other (and direct).
        if s["kind"] == "idle":
            continue
        for t in targets:
            ratios[sid][t] = {}
            for u in targets:
                if u == t:
                    continue
                per = {"rps": [], "cpu_us_per_req": [], "core_us_per_req": [], "p99_us": [],
                       "added_p99_us": []}
                for a, b in zip(results[sid][t], results[sid][u]):
                    if not (ok(a) and ok(b)):
                        continue
                    per["rps"].append(div(a.get("rps"), b.get("rps")))
                    for key in ("cpu_us_per_req", "core_us_per_req"):
                        per[key].append(div(a.get(key), b.get(key)))
                    per["p99_us"].append(div(a.get("p99_us"), b.get("p99_us")))
                    if a.get("p99_us") is not None and b.get("p99_us") is not None:
                        per["added_p99_us"].append(a["p99_us"] - b["p99_us"])
                if per["rps"]:
                    ratios[sid][t][u] = {k: {"rounds": v, "median": med(v)} for k, v in per.items()}
    return {"meta": meta, "targets": targets,
            "scenarios": [{k: s[k] for k in ("id", "title", "kind")} for s in scenarios],
            "summary": summary, "ratios": ratios, "raw": results, "micro": micro}


def div(a, b):
    return a / b if a is not None and b else None


# --------------------------------------------------------------- formatting
def fmt_us(v):
    if v is None:
        return "-"
    if v >= 10_000:
        return f"{v / 1000:.1f} ms"
    if v >= 1000:
        return f"{v / 1000:.2f} ms"
    return f"{v:.0f} µs"


def fmt_num(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def fmt_kib(v):
    return "-" if v is None else f"{v / 1024:.1f} MiB"


def fmt_bytes(v):
    if v is None:
        return "-"
    return f"{v / 1024:.1f} KiB" if abs(v) >= 1024 else f"{v:.0f} B"


def fmt_ratio(v):
    return "-" if v is None else f"{v:.2f}×"


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---:" if i else "---" for i in range(len(headers))) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def markdown(doc):
    meta, summary, ratios = doc["meta"], doc["summary"], doc["ratios"]
    targets = doc["targets"]
    v = meta["versions"]
    lines = [
        f"# remora benchmark — {meta['date']} — {meta['revision']}"
        f"{' (uncommitted changes)' if meta['dirty'] else ''} — {meta['mode']}",
        "",
        f"{meta['rounds']} round(s), {meta['duration_s']:g} s of load per figure"
        + (f" in {meta['slices']} slices (the targets take turns, one slice each; a figure "
           "sums its target's slices)" if meta.get("slices", 1) > 1 else "")
        + " after "
        + (f"{meta['warmup_s']:g} s of warm-up of each freshly started target (0.5 s before each "
           "open-loop figure)" if meta["mode"] == "quick" else
           f"{meta['warmup_s']:g} s of warm-up each")
        + f"; each proxy pinned to CPU {meta['proxy_cpu']} "
        f"with one worker, load generator and origin on CPU {meta['load_cpu']} "
        f"({meta['cpus']} CPUs). Medians over rounds. Wall time {meta['wall_seconds']:g} s.",
        "",
        f"Versions: {v['remora']}; {v['nginx']}; {v['haproxy']}; {v['h2o']}; {v['wrk']}; "
        f"{v['h2load']}; Linux {v['kernel']}.",
        "",
        "Rounds: " + "; ".join(
            f"{r['round']}: {' → '.join(r['order'])} (loadavg {r['loadavg_start']}"
            + (f", open-loop base {r['open_loop_base_rps']:.0f} rps" if r.get("open_loop_base_rps")
               else "") + ")"
            for r in meta["rounds_detail"]),
        "",
        interference(doc),
        "",
        "CPU µs/req = the proxy's utime+stime (/proc/PID/stat, all its processes) over the "
        "measured window ÷ requests completed. Core µs/req = the busy time of the proxy's "
        "core (/proc/stat) ÷ requests: the proxy's own time plus the kernel's work on that core "
        "that no process was charged for (softirq run while the proxy was not the running "
        "task: network processing of its own traffic). Peak RSS = VmHWM summed over the proxy's "
        "processes, " + ("reset before each scenario." if meta["peak_rss_reset_per_scenario"]
                         else "since the proxy started (the reset was refused).")
        + " See bench/README.md.",
        "",
    ]
    for s in doc["scenarios"]:
        sid = s["id"]
        lines += [f"## {s['title']}", ""]
        if s["kind"] == "idle":
            rows = []
            for t in targets:
                c = summary[sid][t]
                if "na" in c:
                    rows.append([t, c["na"], "", "", "", ""])
                    continue
                rows.append([t, fmt_num(c["connections"], 0), fmt_kib(c["rss_before_kib"]),
                             fmt_kib(c["rss_with_kib"]), fmt_bytes(c["bytes_per_conn"]),
                             errors_text(c)])
            lines += [table(["target", "connections", "RSS before", "RSS with them",
                             "per connection", "errors"], rows), ""]
            continue
        direct = summary[sid].get("direct", {})
        rows = []
        for t in targets:
            c = summary[sid][t]
            if "na" in c:
                rows.append([t, c["na"]] + [""] * 10)
                continue
            added = None
            if ok(direct) and c.get("p99_us") is not None and direct.get("p99_us") is not None:
                added = med(ratios[sid].get(t, {}).get("direct", {}).get("added_p99_us", {})
                            .get("rounds", []))
            x_direct = ratios[sid].get(t, {}).get("direct", {}).get("rps", {}).get("median")
            rows.append([t, fmt_num(c["rps"], 0), fmt_ratio(x_direct) if t != "direct" else "",
                         fmt_us(c["p50_us"]), fmt_us(c["p90_us"]), fmt_us(c["p99_us"]),
                         fmt_us(c["p999_us"]),
                         ("+" + fmt_us(added) if added is not None and added >= 0
                          else ("−" + fmt_us(-added) if added is not None else "")),
                         fmt_num(c["cpu_us_per_req"], 2), fmt_num(c.get("core_us_per_req"), 2),
                         fmt_kib(c["peak_rss_kib"]),
                         errors_text(c)])
        title = "rps (achieved)" if s["kind"] == "open" else "rps"
        if s["kind"] == "open":
            tr = next((c.get("target_rps") for c in summary[sid].values() if c.get("target_rps")),
                      None)
            if tr:
                lines += [f"Target rate {tr:.0f} rps; latency from each request's intended "
                          "send time (coordinated omission corrected).", ""]
        lines += [table(["target", title, "× direct", "p50", "p90", "p99", "p99.9",
                         "p99 added vs direct", "CPU µs/req", "core µs/req", "peak RSS",
                         "errors"], rows), ""]

    lines += targets_markdown(doc)

    # remora against each peer, round by round.
    lines += ["## remora against each peer, per round", "",
              "Ratios remora ÷ peer for each round (median last): rps higher is better, "
              "CPU µs/req, core µs/req and p99 lower is better.", ""]
    rows = []
    for s in doc["scenarios"]:
        sid = s["id"]
        for u, r in ratios.get(sid, {}).get("remora", {}).items():
            def cell(key):
                d = r[key]
                vals = " / ".join(fmt_num(x, 2) for x in d["rounds"] if x is not None)
                return f"{vals} → **{fmt_num(d['median'], 2)}**" if len(d["rounds"]) > 1 \
                    else fmt_num(d["median"], 2)
            rows.append([sid, u, cell("rps"), cell("cpu_us_per_req"), cell("core_us_per_req"),
                         cell("p99_us")])
    if rows:
        lines += [table(["scenario", "vs", "rps ratio", "CPU/req ratio", "core/req ratio",
                         "p99 ratio"], rows), ""]
    else:
        lines += ["(no remora figures)", ""]

    lines += micro_markdown(doc["micro"])
    notes = []
    for s in doc["scenarios"]:
        for t in targets:
            for f in summary[s["id"]][t].get("failures", []):
                notes.append(f"- {s['id']} / {t}: {f}")
    if notes:
        lines += ["## Failures", ""] + notes + [""]
    return "\n".join(lines)


def targets_markdown(doc):
    """remora against the best peer of each figure, as the targets ask: CPU
    per request no higher, requests/s no lower, added p99 no higher. The
    ratios are medians of the per-round ratios against that peer, which
    cancel what the machine's speed does between rounds."""
    summary, ratios = doc["summary"], doc["ratios"]
    rows = []
    for s in doc["scenarios"]:
        sid = s["id"]
        if s["kind"] == "idle" or not ok(summary[sid].get("remora")):
            continue
        me = summary[sid]["remora"]
        peers = {t: c for t, c in summary[sid].items()
                 if t not in ("remora", "direct") and ok(c) and c.get("cpu_us_per_req")}
        if not peers:
            continue
        vs = ratios[sid]["remora"]

        def ratio(peer, key):
            return vs.get(peer, {}).get(key, {}).get("median")

        def added(t):
            return med(ratios[sid].get(t, {}).get("direct", {}).get("added_p99_us", {})
                       .get("rounds", []))

        cpu_peer = min(peers, key=lambda t: peers[t]["cpu_us_per_req"])
        rps_peer = max(peers, key=lambda t: peers[t]["rps"])
        cpu, rps = ratio(cpu_peer, "cpu_us_per_req"), ratio(rps_peer, "rps")
        if s["kind"] == "open":  # every target that keeps up achieves the same rate
            rate = me.get("target_rps") or 0
            rps_ok = me["rps"] >= min(peers[rps_peer]["rps"], 0.99 * rate)
        else:
            rps_ok = rps is not None and rps >= 1.0
        p99 = {t: added(t) for t in peers}
        p99 = {t: v for t, v in p99.items() if v is not None}
        mine = added("remora")
        p99_text = ""
        if p99 and mine is not None:
            p99_peer = min(p99, key=p99.get)
            p99_text = (f"{verdict(mine <= p99[p99_peer])}: {fmt_signed_us(mine)} vs "
                        f"{fmt_signed_us(p99[p99_peer])} ({p99_peer})")
        rows.append([sid,
                     f"{verdict(cpu is not None and cpu <= 1.0)}: {fmt_ratio(cpu)} {cpu_peer}",
                     f"{verdict(rps_ok)}: {fmt_ratio(rps)} {rps_peer}", p99_text])
    if not rows:
        return []
    return ["## Targets: remora against the best peer", "",
            "Best peer per figure (lowest CPU µs/req, highest rps, lowest added p99 over "
            "direct); ratios are remora ÷ that peer, the median of the per-round ratios. "
            "The targets: CPU ratio ≤ 1, rps ratio ≥ 1 (open loop: the rate achieved), added "
            "p99 no more than the peer's.", "",
            table(["scenario", "CPU µs/req", "rps", "p99 added vs direct"], rows), ""]


def verdict(good):
    return "meets" if good else "**misses**"


def fmt_signed_us(v):
    return ("+" + fmt_us(v)) if v >= 0 else ("−" + fmt_us(-v))


INTERFERENCE_PCT = 5.0


def interference(doc):
    """How much CPU went outside the accounting of what this run started, on
    the proxy core and on the load core: a run on a busy machine shows here,
    and the figures it may have spoiled are listed (on the proxy core this
    also counts the kernel's softirq work for the proxy's traffic while it
    was not running; core µs/req includes it)."""
    proxy, load, spoiled = [], [], []
    for sid, per_target in doc["raw"].items():
        for t, rows in per_target.items():
            for r in rows:
                p = r.get("proxy_core_other_pct") if t != "direct" else None
                q = r.get("load_core_other_pct")
                if p is not None:
                    proxy.append(p)
                if q is not None:
                    load.append(q)
                worst = max(p or 0, q or 0)
                if worst > INTERFERENCE_PCT:
                    spoiled.append(f"{sid}/{t} (round {r.get('round')}: {worst:.0f} %)")
    if not load:
        return ""
    text = ("CPU outside the accounting of what this run started, during the measurements "
            "(other processes; on the proxy core also softirq work while the proxy was not "
            "running, which the core µs/req column counts): proxy core median "
            f"{med(proxy) or 0:.1f} % (max {max(proxy or [0]):.1f} %), load core median "
            f"{med(load):.1f} % (max {max(load):.1f} %).")
    if spoiled:
        text += (f" **Above {INTERFERENCE_PCT:g} % (figures less trustworthy): "
                 + ", ".join(spoiled) + ".**")
    return text


def errors_text(c):
    e = c.get("errors") or 0
    text = str(e)
    if c.get("rounds_ok", 0) < c.get("rounds", 0):
        text += f" ({c['rounds'] - c['rounds_ok']} round(s) failed)"
    return text


def micro_markdown(micro):
    lines = ["## Microbenchmarks (Google Benchmark, no network, proxy core)", ""]
    if not micro or "benchmarks" not in micro:
        reason = (micro or {}).get("skipped") or (micro or {}).get("error") or "not run"
        return lines + [f"Not run: {reason}", ""]
    rows = []
    for b in micro["benchmarks"]:
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "BigO":
                rows.append([b["name"], f"≈ {b.get('real_coefficient', 0):,.2f} "
                             f"{b.get('time_unit', 'ns')} × {b.get('big_o', '?')}", "", "",
                             "fitted growth with the number of routes"])
            continue
        unit = b.get("time_unit", "ns")
        extra = []
        if "items_per_second" in b:
            extra.append(f"{b['items_per_second']:,.0f} ops/s")
        if "bytes_per_second" in b:
            extra.append(f"{b['bytes_per_second'] / 2**20:,.0f} MiB/s")
        if b.get("label"):  # e.g. the h2 rows' header sizes, raw -> HPACK
            extra.append(b["label"])
        rows.append([b["name"], f"{b['real_time']:,.1f} {unit}", f"{b['cpu_time']:,.1f} {unit}",
                     f"{b['iterations']:,}", ", ".join(extra)])
    lines += [table(["benchmark", "time", "CPU", "iterations", "throughput"], rows), ""]
    if not any(b["name"].startswith("BM_H2") for b in micro["benchmarks"]):
        lines += ["HTTP/2 headers (HPACK, h2 translation): not in this microbenchmark binary.", ""]
    return lines


# -------------------------------------------------------------------- chart
def short_title(title):
    return title.split(" (")[0]


def chart(doc, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    summary, targets = doc["summary"], doc["targets"]
    load = [s for s in doc["scenarios"] if s["kind"] != "idle"]
    idle = [s for s in doc["scenarios"] if s["kind"] == "idle"]
    panels = []
    for s in load:
        panels += [(s, "rps"), (s, "p99_us"), (s, "cpu_us_per_req")]
    for s in idle:
        panels.append((s, "bytes_per_conn"))
    ncols = 6
    nrows = (len(panels) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.9 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (s, key) in zip(axes.flat, panels):
        vals, labels, colors = [], [], []
        for t in targets:
            c = summary[s["id"]][t]
            labels.append(t)
            colors.append(COLORS.get(t, "#333333"))
            v = None if "na" in c else c.get(key)
            if v is not None and key == "p99_us":
                v = v / 1000.0
            if v is not None and key == "bytes_per_conn":
                v = v / 1024.0
            vals.append(v)
        xs = range(len(labels))
        ax.bar(xs, [v or 0 for v in vals], color=colors)
        top = max([v for v in vals if v is not None] or [1])
        for x, v, t in zip(xs, vals, labels):
            if v is None:
                text = "n/a" if "na" in summary[s["id"]][t] else "-"
            elif key == "rps" or v >= 100:
                text = f"{v:,.0f}"
            else:
                text = f"{v:.2f}" if v < 10 else f"{v:.1f}"
            ax.text(x, (v or 0) + top * 0.02, text, ha="center", va="bottom", fontsize=7)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylim(0, top * 1.18)
        unit = {"rps": "requests/s", "p99_us": "p99 latency (ms)",
                "cpu_us_per_req": "proxy CPU µs per request",
                "bytes_per_conn": "KiB per idle connection"}[key]
        ax.set_title(f"{short_title(s['title'])}\n{unit}", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    m = doc["meta"]
    fig.suptitle(f"remora benchmark {m['date']} {m['revision']} ({m['mode']}, "
                 f"{m['rounds']} round(s), medians)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

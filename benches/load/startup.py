#!/usr/bin/env python3
"""Startup to ready, and idle memory, of scopegate with a given policy.

    startup.py SCOPEGATE WORKDIR POLICY REPEATS NAME

Each repeat writes a config on two free loopback ports, starts `SCOPEGATE run`, and polls the
admin listener's /readyz every millisecond from the moment of exec until it answers 200.
Then, after two idle seconds, it reads VmRSS and VmHWM from /proc/PID/status, and stops the
process with SIGTERM. Prints one JSON object: startup_ms, rss_kib, hwm_kib (one per repeat).
"""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

READY_TIMEOUT_S = 120


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def readyz(port: int) -> bool:
    """True once /readyz answers 200; False while nothing listens or it answers otherwise."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])  # kB
    return out


def one_start(scopegate: str, work: Path, policy: Path, name: str) -> tuple[float, dict]:
    listen, admin = free_ports(2)
    config = work / f"startup-{name}.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{listen}\n"
        f"admin_listen: 127.0.0.1:{admin}\n"
        f"policy_file: {policy}\n"
        "upstreams: { default: http://127.0.0.1:9 }\n"
        "log: { level: error }\n"
    )
    started = time.perf_counter()
    proc = subprocess.Popen(
        [scopegate, "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not readyz(admin):
            if proc.poll() is not None:
                sys.exit(f"scopegate exited with {proc.returncode} before it was ready")
            if time.perf_counter() - started > READY_TIMEOUT_S:
                sys.exit(f"scopegate not ready after {READY_TIMEOUT_S} s")
            time.sleep(0.001)
        ready_ms = (time.perf_counter() - started) * 1e3
        time.sleep(2)
        mem = proc_status(proc.pid)
        return ready_ms, mem
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    # A SIGTERM from run.sh's cleanup must still stop our child: make it unwind `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    scopegate, work, policy, repeats, name = sys.argv[1:6]
    result = {"startup_ms": [], "rss_kib": [], "hwm_kib": []}
    for _ in range(int(repeats)):
        ms, mem = one_start(scopegate, Path(work), Path(policy).resolve(), name)
        result["startup_ms"].append(round(ms, 1))
        result["rss_kib"].append(mem.get("VmRSS", 0))
        result["hwm_kib"].append(mem.get("VmHWM", 0))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""SIGTERM in the middle of load (faults.sh sigterm).

    drain.py PID PORT ADMIN_PORT [SLOW=20]

Opens SLOW requests to /slow/... (the upstream answers after 2 s), each on its own
connection, and fast requests (GET /open, a new connection each) at 50/s. After 1 s, with
the slow ones in flight, sends SIGTERM to PID, keeps polling /readyz every 50 ms, and goes on
opening fast requests for 3 s. Prints one JSON line: per phase (before / after the signal)
what the requests got: 200 with the upstream's body, connection refused, or anything else
(a failure: reset, timeout, a partial or wrong answer); /readyz statuses seen after the signal.
"""
import http.client
import json
import os
import signal
import sys
import threading
import time

pid, port, admin_port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
slow_n = int(sys.argv[4]) if len(sys.argv) > 4 else 20
results = []  # (kind, started, outcome)
lock = threading.Lock()
signalled = None


def request(kind, path):
    started = time.monotonic()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", path, headers={"connection": "close"})
        r = c.getresponse()
        body = r.read()
        outcome = "200 ok" if (r.status, body) == (200, b"ok") else f"wrong answer {r.status} {body[:40]!r}"
    except ConnectionRefusedError:
        outcome = "refused"
    except Exception as e:  # noqa: BLE001: anything else is a failure, named
        outcome = f"failed: {type(e).__name__}: {e}"[:80]
    with lock:
        results.append((kind, started, outcome))


def readyz(statuses, stop):
    while not stop.is_set():
        try:
            c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=1)
            c.request("GET", "/readyz")
            statuses.append(c.getresponse().status)
            c.close()
        except OSError:
            statuses.append("down")
        time.sleep(0.05)


threads = []
start = time.monotonic()
for i in range(slow_n):
    t = threading.Thread(target=request, args=("slow", f"/slow/{i}"))
    t.start()
    threads.append(t)
statuses, stop = [], threading.Event()
i = 0
while time.monotonic() - start < 4:
    if signalled is None and time.monotonic() - start >= 1:
        os.kill(pid, signal.SIGTERM)
        signalled = time.monotonic()
        poller = threading.Thread(target=readyz, args=(statuses, stop))
        poller.start()
    t = threading.Thread(target=request, args=("fast", f"/open?{i}"))
    t.start()
    threads.append(t)
    i += 1
    time.sleep(0.02)
for t in threads:
    t.join()
stop.set()
poller.join()

summary = {}
for kind, started, outcome in results:
    phase = "before" if started < signalled else "after"
    key = f"{kind} {phase}"
    summary.setdefault(key, {})
    summary[key][outcome] = summary[key].get(outcome, 0) + 1
late_answers = [round((s - signalled) * 1000, 1) for k, s, o in results if s >= signalled and o == "200 ok"]
print(json.dumps({"requests": summary, "answered_after_signal_ms": late_answers[:20],
                  "readyz_after_signal": {str(k): statuses.count(k) for k in sorted(set(statuses), key=str)},
                  "failures": sum(1 for _, _, o in results if o.startswith(("failed", "wrong")))}))

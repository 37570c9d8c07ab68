#!/usr/bin/env python3
"""N policy reloads, one after another, as fast as the proxy takes them (faults.sh reloads).

    reloads.py POLICY_FILE ADMIN_PORT N [DEADLINE_SECONDS]

Each round rewrites the policy's `# revision` comment (a temporary file renamed over the
policy, as an editor saves) and waits until /policy shows a new generation, then starts the
next. Prints one JSON line: reloads made, reloads seen, seconds, the slowest wait.
"""
import http.client
import json
import os
import re
import sys
import time

path, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + (float(sys.argv[4]) if len(sys.argv) > 4 else 300)
admin = http.client.HTTPConnection("127.0.0.1", port, timeout=5)


def generation():
    admin.request("GET", "/policy")
    return json.loads(admin.getresponse().read())["generation"]


text = open(path).read()
start = time.monotonic()
made = seen = 0
slowest = 0.0
for i in range(n):
    if time.monotonic() > deadline:
        break
    before = generation()
    tmp = os.path.join(os.path.dirname(path), ".policy.yaml.tmp")
    with open(tmp, "w") as f:
        f.write(re.sub(r"^# revision .*$", f"# revision burst-{i}", text, count=1, flags=re.M))
    os.rename(tmp, path)
    made += 1
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5:
        if generation() > before:
            seen += 1
            break
        time.sleep(0.002)
    slowest = max(slowest, time.monotonic() - t0)
print(json.dumps({"made": made, "seen": seen, "seconds": round(time.monotonic() - start, 1),
                  "slowest_ms": round(slowest * 1000, 1)}))

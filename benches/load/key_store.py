#!/usr/bin/env python3
"""Helpers of key_store.sh (issue 17), standard library only.

    key_store.py gen N DIR          DIR/import.json (N keys as `keys import` reads them),
                                    DIR/miss.txt (20,000 of them, one per line), DIR/hit.txt
    key_store.py revoke REDIS_PORT N PROXY_PORT...
                                    N revocations, each timed from its PUBLISH to the moment
                                    every proxy refuses the key; prints one JSON line
"""

import hashlib
import http.client
import json
import os
import random
import socket
import statistics
import sys
import time


def key(i):
    return f"sk_live_bench_{i:07d}"


def sha(k):
    return hashlib.sha256(k.encode()).hexdigest()


def gen(n, out):
    with open(os.path.join(out, "import.json"), "w") as f:
        f.write('{"api_keys":[\n')
        for i in range(n):
            entry = {"id": f"bench-{i}", "sha256": sha(key(i)), "scopes": ["bots:read"],
                     "resources": {"bots": ["*"]}}
            f.write(("," if i else "") + json.dumps(entry, separators=(",", ":")) + "\n")
        f.write("]}\n")
    sample = random.Random(17).sample(range(1, n), min(20_000, n - 1))
    with open(os.path.join(out, "miss.txt"), "w") as f:
        f.writelines(key(i) + "\n" for i in sample)
    with open(os.path.join(out, "hit.txt"), "w") as f:
        f.write(key(0) + "\n")


class Resp:
    """Just enough RESP to send a command and read its one reply."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")

    def cmd(self, *args):
        out = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.s.sendall(b"".join(out))
        return self.read()

    def read(self):
        line = self.f.readline()
        kind, rest = line[:1], line[1:-2]
        if kind in (b"+", b":"):
            return rest
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if kind == b"*":
            return [self.read() for _ in range(int(rest))]
        raise RuntimeError(f"unexpected reply {line!r}")


def status(conn, k):
    conn.request("GET", "/v1/bots/b", headers={"Authorization": f"Bearer {k}"})
    r = conn.getresponse()
    r.read()
    return r.status


def revoke(redis_port, n, proxy_ports):
    redis = Resp(redis_port)
    proxies = [http.client.HTTPConnection("127.0.0.1", p) for p in proxy_ports]
    delays = []
    for i in range(n):
        k = f"sk_live_rev_{i:04d}"
        h = sha(k)
        redis.cmd("HSET", f"scopegate:key:{h}", "id", f"rev-{i}", "scopes", "bots:read",
                  "resources", '{"bots":["*"]}', "disabled", "false")
        redis.cmd("PUBLISH", "scopegate:key-events", h)
        # Every replica holds the key in its cache before it is revoked.
        for c in proxies:
            deadline = time.monotonic() + 2
            while status(c, k) != 200:
                assert time.monotonic() < deadline, "a put key was not accepted"
        redis.cmd("HSET", f"scopegate:key:{h}", "disabled", "true")
        t0 = time.monotonic()
        redis.cmd("PUBLISH", "scopegate:key-events", h)
        pending = list(range(len(proxies)))
        while pending:
            for j in list(pending):
                if status(proxies[j], k) == 401:
                    delays.append((time.monotonic() - t0) * 1000)
                    pending.remove(j)
            assert time.monotonic() - t0 < 5, "a revocation did not land within 5 s"
    delays.sort()
    q = statistics.quantiles(delays, n=100, method="inclusive")
    print(json.dumps({"revocations": n, "replicas": len(proxies), "samples": len(delays),
                      "p50_ms": round(q[49], 3), "p99_ms": round(q[98], 3),
                      "max_ms": round(delays[-1], 3)}))


def main():
    if sys.argv[1] == "gen":
        gen(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "revoke":
        revoke(int(sys.argv[2]), int(sys.argv[3]), [int(p) for p in sys.argv[4:]])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

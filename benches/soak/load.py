#!/usr/bin/env python3
"""Fixed-rate load with a known answer for every request (soak.sh, faults.sh).

    load.py --work DIR --rate 200 --seconds 600 [--plain HOST:PORT] [--tls HOST:PORT --ca FILE]
            [--mix soak|redis] [--keys FILE] [--record FILE] [--workers 32]

Requests are scheduled at a fixed rate (request i at start + i/rate) and taken by a pool of
worker threads, each keeping one keep-alive connection per listener (renewed every 100
requests, so new TLS handshakes keep meeting rotated certificates). Listeners alternate. Each
request is a case from the mix with its expected status and problem code known in advance;
a 200 from the encrypted route is decrypted and compared with what was sent.

Latency runs from the scheduled time (not the send time), so a stall shows. SIGTERM or
SIGINT stops the schedule; requests in flight finish. Prints one JSON summary on stdout:
total, failures (connection errors, malformed responses), unexpected (status or code not the
expected one), per-case counts, latency percentiles, certificates seen on the TLS listener.
With --record, one line per request: send time (epoch s), case, status, code, latency ms.
"""
import argparse
import hashlib
import http.client
import json
import os
import queue
import random
import signal
import ssl
import threading
import time
import warnings
from pathlib import Path

from joserfc import jwe, jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

REPO = Path(__file__).resolve().parents[2]
KEYS = REPO / "tests/fixtures/keys"
HS_SECRET = "soak-hs256-secret-0123456789abcdef-0123"  # as in lib.sh
ENC_SECRET = "soak-enc-secret-0123456789abcdef-01234567"
API_KEY = "sk_live_soak_0000000001"
JWE_ALGS = ["RSA-OAEP-256", "A256GCM"]
TOKENS_PER_APP = 100  # distinct tokens (jti) per app: token-cache misses as well as hits


def tokens(app, alg, key, n, **extra):
    now = int(time.time())
    return [
        jwt.encode({"alg": alg, "typ": "JWT"},
                   {"appId": app, "sub": "soak", "iat": now, "exp": now + 7200,
                    "jti": f"{app}-{i}", **extra}, key)
        for i in range(n)
    ]


class Case:
    """One kind of request and the answer it must get."""

    def __init__(self, name, weight, method, path, status, code=None, headers=None,
                 body=None, check=None):
        self.name, self.weight, self.method, self.path = name, weight, method, path
        self.status, self.code = status, code
        self.headers, self.body, self.check = headers, body, check


def soak_cases():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc warns about oct keys it did not generate
        hs_key, enc_key = OctKey.import_key(HS_SECRET), OctKey.import_key(ENC_SECRET)
        wrong_key = OctKey.import_key(HS_SECRET + "-wrong")
        hs = tokens("soak-hs256", "HS256", hs_key, TOKENS_PER_APP)
        rs = tokens("soak-rs256", "RS256", RSAKey.import_key((KEYS / "app-rsa.key.pem").read_bytes()), TOKENS_PER_APP)
        es = tokens("soak-es256", "ES256", ECKey.import_key((KEYS / "app-ec256.key.pem").read_bytes()), TOKENS_PER_APP)
        enc = tokens("soak-enc", "HS256", enc_key, 10)
        forged = tokens("soak-hs256", "HS256", wrong_key, 10)
    proxy_jwe = RSAKey.import_key((KEYS / "proxy-jwe-rsa.pub.pem").read_bytes())
    client_key = RSAKey.import_key((KEYS / "client-rsa.key.pem").read_bytes())
    bearer = lambda pool: lambda: {"authorization": "Bearer " + random.choice(pool)}  # noqa: E731

    def encrypted():
        plain = json.dumps({"botId": "st-1", "nonce": random.getrandbits(64)}).encode()
        header = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "application/json", "kid": "sg-rsa"}
        return plain, jwe.encrypt_compact(header, plain, proxy_jwe, algorithms=JWE_ALGS).encode()

    def decrypts_to(sent, got):
        plain = jwe.decrypt_compact(got, client_key, algorithms=JWE_ALGS).plaintext
        return plain == sent

    ok = lambda sent, got: got == b"ok"  # noqa: E731
    return [
        Case("hs256", 25, "GET", "/v1/bots/st-1", 200, headers=bearer(hs), check=ok),
        Case("rs256", 15, "GET", "/v1/bots/st-2", 200, headers=bearer(rs), check=ok),
        Case("es256", 10, "GET", "/v1/bots/st-1", 200, headers=bearer(es), check=ok),
        Case("api_key", 15, "GET", "/v1/bots/st-3", 200, headers=bearer([API_KEY]), check=ok),
        Case("encrypted", 10, "POST", "/enc", 200,
             headers=lambda: {"authorization": "Bearer " + random.choice(enc),
                              "content-type": "application/jose", "accept": "application/jose"},
             body=encrypted, check=decrypts_to),
        Case("no_credentials", 4, "GET", "/v1/bots/st-1", 401, "missing_credentials"),
        Case("forged_jwt", 4, "GET", "/v1/bots/st-1", 401, "invalid_token", headers=bearer(forged)),
        Case("unknown_key", 3, "GET", "/v1/bots/st-1", 401, "invalid_api_key",
             headers=bearer(["sk_live_soak_unknown"])),
        # Without a body: a POST refused before its body is read loses its connection
        # (refused_body.py, reported in results.md); the soak measures everything else.
        Case("insufficient_scope", 4, "POST", "/v1/bots/st-1", 403, "insufficient_scope",
             headers=bearer(hs)),
        Case("resource_not_allowed", 3, "GET", "/v1/bots/st-2", 403, "resource_not_allowed",
             headers=bearer(es)),
        Case("no_route", 3, "GET", "/nope", 404, "no_route", headers=bearer(hs)),
        Case("invalid_path", 2, "GET", "/v1/bots/a;b", 400, "invalid_path", headers=bearer(hs)),
        Case("encryption_required", 2, "POST", "/enc", 400, "encryption_required",
             headers=lambda: {"authorization": "Bearer " + random.choice(enc),
                              "content-type": "application/json"},
             body=lambda: (None, b'{"plain":true}')),
    ]


def redis_cases(keys_file):
    """Half HS256 (needs no store), half key-store keys never looked up before: each one a
    Redis lookup. 200 while Redis is up, 503 key_store_unavailable while it is down."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hs = tokens("soak-hs256", "HS256", OctKey.import_key(HS_SECRET), TOKENS_PER_APP)
    keys = iter(Path(keys_file).read_text().split())
    lock = threading.Lock()

    def next_key():
        with lock:
            return {"authorization": "Bearer " + next(keys)}

    ok = lambda sent, got: got == b"ok"  # noqa: E731
    return [
        Case("hs256", 1, "GET", "/v1/bots/st-1", 200, headers=lambda: {"authorization": "Bearer " + random.choice(hs)}, check=ok),
        Case("key_store", 1, "GET", "/v1/bots/st-1", (200, 503), "key_store_unavailable", headers=next_key),
    ]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.total = 0
        self.failures = []  # (case, error)
        self.unexpected = []  # (case, status, code)
        self.by_case = {}
        self.latencies = []
        self.certs = {}  # sha256 of the TLS listener's certificate -> first seen (s into the run)

    def add(self, case, latency, status=None, code=None, error=None, unexpected=False):
        with self.lock:
            self.total += 1
            c = self.by_case.setdefault(case.name, {"requests": 0, "statuses": {}})
            c["requests"] += 1
            key = str(status) if error is None else "error"
            c["statuses"][key] = c["statuses"].get(key, 0) + 1
            if error is not None:
                self.failures.append((case.name, error))
            elif unexpected:
                self.unexpected.append((case.name, status, code))
            else:
                self.latencies.append(latency)


class Worker(threading.Thread):
    def __init__(self, targets, ca, jobs, stats, start, record):
        super().__init__(daemon=True)
        self.targets, self.jobs, self.stats, self.t0, self.record = targets, jobs, stats, start, record
        self.ctx = None
        if ca:
            self.ctx = ssl.create_default_context(cafile=ca)
        self.conns = {}
        self.previous = {}  # target -> the case of the connection's previous request

    def connection(self, target):
        kind, host, port = target
        conn, used = self.conns.get(target, (None, 0))
        if conn is None or used >= 100:
            if conn is not None:
                conn.close()
            if kind == "tls":
                conn = http.client.HTTPSConnection(host, port, context=self.ctx, timeout=30)
                conn.connect()
                fp = hashlib.sha256(conn.sock.getpeercert(binary_form=True)).hexdigest()[:16]
                with self.stats.lock:
                    self.stats.certs.setdefault(fp, round(time.monotonic() - self.t0, 1))
            else:
                conn = http.client.HTTPConnection(host, port, timeout=30)
            used = 0
        self.conns[target] = (conn, used + 1)
        return conn

    def run(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            i, due, case = job
            self.one(self.targets[i % len(self.targets)], due, case)

    def one(self, target, due, case):
        headers = case.headers() if case.headers else {}
        sent, body = case.body() if case.body else (None, None)
        sent_at = time.time()
        status = code = None
        try:
            conn = self.connection(target)
            conn.request(case.method, case.path, body=body, headers=headers)
            resp = conn.getresponse()
            got = resp.read()
            status = resp.status
            if resp.getheader("content-type", "").startswith("application/problem+json"):
                code = json.loads(got).get("code")
            expected = case.status if isinstance(case.status, tuple) else (case.status,)
            bad = status not in expected or (status >= 400 and code != case.code)
            if status == 200 and case.check and not case.check(sent, got):
                bad, code = True, "body_mismatch"
            latency = (time.monotonic() - due) * 1000
            self.stats.add(case, latency, status, code, unexpected=bad)
        except Exception as e:  # noqa: BLE001: every failure is counted, whatever it is
            used = self.conns.pop(target, (None, 0))[1]
            latency = (time.monotonic() - due) * 1000
            code = f"{type(e).__name__}: {e}"[:100]
            where = f"{target[0]}, request {used} on its connection, after {self.previous.get(target)}"
            self.stats.add(case, latency, error=f"{code} ({where})")
        self.previous[target] = case.name
        if self.record:
            self.record.write(f"{sent_at:.3f} {case.name} {status} {code} {latency:.2f}\n")


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p / 100 * len(values)))], 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plain")
    ap.add_argument("--tls")
    ap.add_argument("--ca")
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--mix", default="soak", choices=["soak", "redis"])
    ap.add_argument("--keys")
    ap.add_argument("--record")
    ap.add_argument("--workers", type=int, default=32)
    a = ap.parse_args()

    targets = []
    for kind, addr in (("plain", a.plain), ("tls", a.tls)):
        if addr:
            host, port = addr.rsplit(":", 1)
            targets.append((kind, host, int(port)))
    cases = soak_cases() if a.mix == "soak" else redis_cases(a.keys)
    weights = [c.weight for c in cases]
    stats = Stats()
    record = open(a.record, "w", buffering=1) if a.record else None
    jobs = queue.Queue()
    start = time.monotonic()
    workers = [Worker(targets, a.ca, jobs, stats, start, record) for _ in range(a.workers)]
    for w in workers:
        w.start()

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    rng = random.Random(21)
    n = int(a.rate * a.seconds)
    late = 0  # requests still queued when the next was due: the workers could not keep up
    scheduled = 0
    for i in range(n):
        due = start + i / a.rate
        wait = due - time.monotonic()
        if wait > 0 and stop.wait(wait):
            break
        if stop.is_set():
            break
        late += jobs.qsize() > a.workers
        jobs.put((i, due, rng.choices(cases, weights)[0]))
        scheduled += 1
    for _ in workers:
        jobs.put(None)
    for w in workers:
        w.join(timeout=60)
    elapsed = time.monotonic() - start

    lat = stats.latencies
    print(json.dumps({
        "scheduled": scheduled, "total": stats.total, "seconds": round(elapsed, 1),
        "rate": round(stats.total / elapsed, 1), "failures": len(stats.failures),
        "unexpected": len(stats.unexpected), "late_schedules": late,
        "failure_samples": stats.failures[:10], "unexpected_samples": stats.unexpected[:10],
        "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": pct(lat, 100),
        "certificates_seen": stats.certs, "by_case": stats.by_case,
    }))
    if record:
        record.close()
    os._exit(0)  # daemon workers may still hold connections; nothing left to wait for


if __name__ == "__main__":
    main()

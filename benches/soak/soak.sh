#!/usr/bin/env bash
# Soak (issue 21): the release proxy at a fixed request rate for MINUTES, over a TLS and a
# plain listener (two scopegate processes sharing one policy file) in front of a Python
# upstream, with a realistic mix (HS256, RS256, ES256, API keys, payload encryption, and
# refused requests: 400, 401, 403, 404), each with its expected status and code known in
# advance (load.py). Meanwhile the policy file is rewritten every second (a rotating comment:
# a real change, a new generation) and the TLS certificate rotated every ROTATE_SECONDS (a new
# key and certificate from a CA made for the run, swapped in as a Kubernetes Secret volume
# does: the `..data` symlink replaced). RSS and open descriptors of both proxies are sampled
# from /proc every SAMPLE_SECONDS.
#
#   benches/soak/soak.sh                    # 10 minutes at 200 req/s
#   MINUTES=1 benches/soak/soak.sh          # a short check
#
# Prints a markdown report: requests, failures, unexpected statuses (all must be 0), reloads
# made vs counted by /metrics, certificates rotated vs reloaded vs seen by clients, RSS and
# descriptors first/last and their least-squares slope per minute. Exits 1 when a check fails.
# Loopback only, bounded (MINUTES), every process it starts stopped on exit.
#
# Settings: MINUTES=10 RATE=200 ROTATE_SECONDS=60 POLICY_SECONDS=1 (0: never rewritten)
#   SAMPLE_SECONDS=5 WORKERS=32
#   SCOPEGATE_BIN=path (default: $CARGO_TARGET_DIR/release/scopegate) WORK=dir
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MINUTES=${MINUTES:-10}
RATE=${RATE:-200}
ROTATE_SECONDS=${ROTATE_SECONDS:-60}
POLICY_SECONDS=${POLICY_SECONDS:-1}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-5}
WORKERS=${WORKERS:-32}
WORK=${WORK:-$REPO/target/soak/soak-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$WORK/tls"
log "work directory: $WORK"

# ---------------------------------------------------------------- certificates
# A CA for this run; issue_cert N writes key and certificate N into tls/..N and points
# tls/..data at it (tls/tls.crt and tls/tls.key are symlinks through ..data, as in a
# Kubernetes Secret volume, so the pair changes in one rename).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$WORK/ca.key" -out "$WORK/ca.crt" -subj "/CN=soak CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >"$WORK/server.ext"
issue_cert() {
    local dir=$WORK/tls/..$1
    mkdir -p "$dir"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/tls.key" \
        -out "$dir/tls.csr" -subj "/CN=soak server $1" 2>/dev/null
    openssl x509 -req -in "$dir/tls.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -set_serial "$((1000 + $1))" \
        -days 1 -extfile "$WORK/server.ext" -out "$dir/tls.crt" 2>/dev/null
    rm "$dir/tls.csr"
    ln -sfn "..$1" "$WORK/tls/..data_tmp"
    mv -T "$WORK/tls/..data_tmp" "$WORK/tls/..data"
}
issue_cert 0
ln -s ..data/tls.crt "$WORK/tls/tls.crt"
ln -s ..data/tls.key "$WORK/tls/tls.key"

# ---------------------------------------------------------------- servers
prepare_policy_dir
start_upstream
read -r TLS_PORT TLS_ADMIN PLAIN_PORT PLAIN_ADMIN < <(free_ports 4)
scopegate_config sg-tls "$TLS_PORT" "$TLS_ADMIN" "tls: { cert_file: tls/tls.crt, key_file: tls/tls.key }"
scopegate_config sg-plain "$PLAIN_PORT" "$PLAIN_ADMIN"
start_proxy sg-tls
TLS_PID=$PROXY_PID
start_proxy sg-plain
PLAIN_PID=$PROXY_PID
wait_http "http://127.0.0.1:$TLS_ADMIN/readyz" "$TLS_PID"
wait_http "http://127.0.0.1:$PLAIN_ADMIN/readyz" "$PLAIN_PID"
RELOADS='scopegate_policy_reloads_total{result="success"}'
TLS_RELOADS='scopegate_tls_reloads_total{result="success"}'
RELOADS0_TLS=$(metric "$TLS_ADMIN" "$RELOADS")
RELOADS0_PLAIN=$(metric "$PLAIN_ADMIN" "$RELOADS")
CERTS0=$(metric "$TLS_ADMIN" "$TLS_RELOADS")

# ---------------------------------------------------------------- background changes
# Policy rewritten every POLICY_SECONDS; each write counted in policy-writes.
(
    n=0
    echo 0 >"$WORK/policy-writes"
    while ((POLICY_SECONDS > 0)); do
        sleep "$POLICY_SECONDS"
        n=$((n + 1))
        write_policy "$n"
        echo "$n" >"$WORK/policy-writes"
    done
) &
PIDS+=($!)
REWRITER=$!
# Certificate rotated every ROTATE_SECONDS, the first after half of it: the last rotation
# then lands well before the end, in time for clients' new connections to meet it.
(
    n=0
    sleep "$(awk -v s="$ROTATE_SECONDS" 'BEGIN { print s / 2 }')"
    while true; do
        n=$((n + 1))
        issue_cert "$n"
        echo "$n" >"$WORK/cert-rotations"
        sleep "$ROTATE_SECONDS"
    done
) &
PIDS+=($!)
ROTATOR=$!
# RSS (KiB) and open descriptors of both proxies, every SAMPLE_SECONDS.
(
    start=$(date +%s)
    while true; do
        for p in "$TLS_PID" "$PLAIN_PID"; do
            echo "$(($(date +%s) - start)) $p $(awk '/^VmRSS/ {print $2}' "/proc/$p/status") $(ls "/proc/$p/fd" | wc -l)"
        done
        sleep "$SAMPLE_SECONDS"
    done >"$WORK/samples.txt"
) &
PIDS+=($!)
SAMPLER=$!

# ---------------------------------------------------------------- load
log "load: $RATE req/s for $MINUTES min over TLS :$TLS_PORT and plain :$PLAIN_PORT"
"$PYTHON" "$HERE/load.py" --plain "127.0.0.1:$PLAIN_PORT" --tls "127.0.0.1:$TLS_PORT" \
    --ca "$WORK/ca.crt" --rate "$RATE" --seconds "$(awk -v m="$MINUTES" 'BEGIN { print m * 60 }')" --workers "$WORKERS" \
    >"$WORK/load.json" 2>"$WORK/load.err" &
LOAD=$!
PIDS+=("$LOAD")
wait "$LOAD"
kill "$REWRITER" "$ROTATOR" "$SAMPLER" 2>/dev/null || true # the rewriter may have ended (POLICY_SECONDS=0)
sleep 2 # the last write's reload (debounced, compiled) lands
for p in "$TLS_PID" "$PLAIN_PID"; do
    kill -0 "$p" || { echo "proxy $p died during the run" >&2; exit 1; }
done

# ---------------------------------------------------------------- report
export WORK MINUTES RATE ROTATE_SECONDS TLS_PID PLAIN_PID
export POLICY_WRITES=$(cat "$WORK/policy-writes" 2>/dev/null || echo 0)
export CERT_ROTATIONS=$(cat "$WORK/cert-rotations" 2>/dev/null || echo 0)
export RELOADS_TLS=$(($(metric "$TLS_ADMIN" "$RELOADS") - RELOADS0_TLS))
export RELOADS_PLAIN=$(($(metric "$PLAIN_ADMIN" "$RELOADS") - RELOADS0_PLAIN))
export CERT_RELOADS=$(($(metric "$TLS_ADMIN" "$TLS_RELOADS") - CERTS0))
export FAILED_RELOADS=$(($(metric "$TLS_ADMIN" 'scopegate_policy_reloads_total{result="failure"}') + $(metric "$PLAIN_ADMIN" 'scopegate_policy_reloads_total{result="failure"}')))
# The shared token cache's entries (moka, keyed by policy generation and token).
cache_entries() { curl -sf "http://127.0.0.1:$1/policy" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token_cache_entries"]["shared"])'; }
export CACHE_TLS=$(cache_entries "$TLS_ADMIN") CACHE_PLAIN=$(cache_entries "$PLAIN_ADMIN")
export VERSION="$("$BIN" --version) ($BIN)"
"$PYTHON" - <<'EOF' | tee "$WORK/report.md"
import json, os, sys, time
e = os.environ
r = json.load(open(f"{e['WORK']}/load.json"))
samples = {}
for line in open(f"{e['WORK']}/samples.txt"):
    t, pid, rss, fds = line.split()
    samples.setdefault(pid, []).append((int(t) / 60, int(rss), int(fds)))

def slope(points):  # least squares, per minute
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0

writes, rotations = int(e["POLICY_WRITES"]), int(e["CERT_ROTATIONS"])
checks = {
    "no failed request": r["failures"] == 0,
    "no unexpected status": r["unexpected"] == 0,
    "every policy write reloaded (TLS proxy)": int(e["RELOADS_TLS"]) == writes,
    "every policy write reloaded (plain proxy)": int(e["RELOADS_PLAIN"]) == writes,
    "no failed reload": int(e["FAILED_RELOADS"]) == 0,
    "every certificate rotation reloaded": int(e["CERT_RELOADS"]) == rotations,
    "every certificate seen by clients": len(r["certificates_seen"]) == rotations + 1,
}
print(f"### Soak, {e['MINUTES']} min at {e['RATE']} req/s ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
print(f"`MINUTES={e['MINUTES']} RATE={e['RATE']} benches/soak/soak.sh` — {e['VERSION']}, {os.cpu_count()} CPUs, "
      f"load average at the end {open('/proc/loadavg').read().split()[0]}\n")
print("| measure | value |\n|---|---|")
print(f"| requests (scheduled / answered) | {r['scheduled']} / {r['total']} in {r['seconds']} s ({r['rate']} req/s) |")
print(f"| failures (connection errors, malformed responses) | {r['failures']} |")
print(f"| unexpected status or code | {r['unexpected']} |")
print(f"| latency from schedule, p50 / p99 / max (ms) | {r['p50_ms']} / {r['p99_ms']} / {r['max_ms']} |")
print(f"| policy writes / reloads counted, TLS proxy / plain proxy | {writes} / {e['RELOADS_TLS']} / {e['RELOADS_PLAIN']} (failed: {e['FAILED_RELOADS']}) |")
print(f"| certificate rotations / TLS reloads counted / certificates seen by clients | {rotations} / {e['CERT_RELOADS']} / {len(r['certificates_seen'])} |")
for name, pid in (("TLS", e["TLS_PID"]), ("plain", e["PLAIN_PID"])):
    s = samples[pid]
    half = [p for p in s if p[0] >= s[-1][0] / 2]
    print(f"| RSS, {name} proxy: first / last KiB, slope (whole run; second half) | {s[0][1]} / {s[-1][1]}, "
          f"{slope([(t, m) for t, m, _ in s]):+.1f} KiB/min; {slope([(t, m) for t, m, _ in half]):+.1f} KiB/min |")
    print(f"| open fds, {name} proxy: first / last, slope | {s[0][2]} / {s[-1][2]}, {slope([(t, f) for t, _, f in s]):+.2f} fds/min |")
print(f"| shared token-cache entries at the end, TLS / plain proxy (`/policy`) | {e['CACHE_TLS']} / {e['CACHE_PLAIN']} |")
print("\nRequests per case (status: count):\n")
for case, c in r["by_case"].items():
    print(f"- {case}: {c['requests']} ({', '.join(f'{k}: {v}' for k, v in sorted(c['statuses'].items()))})")
if r["failure_samples"] or r["unexpected_samples"]:
    print(f"\nSamples: failures {r['failure_samples']}, unexpected {r['unexpected_samples']}")
print("\nChecks: " + ", ".join(f"{k}: {'ok' if v else 'FAILED'}" for k, v in checks.items()))
sys.exit(0 if all(checks.values()) else 1)
EOF

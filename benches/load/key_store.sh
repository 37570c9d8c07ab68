#!/usr/bin/env bash
# The key store at scale (issue 17): 1,000,000 keys in a real redis-server, scopegate in
# front of an HAProxy upstream that answers 200 itself, loopback only.
#
#   benches/load/key_store.sh            # about 3 minutes after the release build
#
# Measures, and prints as one markdown table:
#   - `scopegate keys import` of N keys (N=1000000): wall time, and Redis memory after;
#   - proxy CPU µs/request (wrk -t1 -c32, DURATION s) and p50/p99 at a fixed RATE (paced
#     wrk, RATE req/s) for a policy key, for a key-store key found in the cache (hit),
#     and for key-store keys never seen before (miss: every request a Redis round trip);
#   - revocation propagation: REVOCATIONS revocations (HSET disabled + PUBLISH, what
#     `keys revoke` sends), each timed from its PUBLISH until each of 3 replicas refuses the key;
#   - memory per cached key: RSS growth over CACHED distinct keys looked up, ÷ cache entries.
# Bounded: every load run has a duration, every poll a deadline; every process started is
# stopped on exit, however the script ends.
#
# Settings (environment): N=1000000 DURATION=10 RATE=1000 REVOCATIONS=100 CACHED=200000
#   PROXY_CPU=1 LOAD_CPU=0 SCOPEGATE_BIN=path (default: build target/release)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/benches/load
N=${N:-1000000}
DURATION=${DURATION:-10}
RATE=${RATE:-1000}
REVOCATIONS=${REVOCATIONS:-100}
CACHED=${CACHED:-200000}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
WORK=${WORK:-$TARGET/key-store-bench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$WORK"

log() { printf '\n== %s\n' "$*" >&2; }

PIDS=()
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for tool in redis-server wrk haproxy taskset python3 curl; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
if [[ -n ${SCOPEGATE_BIN:-} ]]; then
    BIN=$SCOPEGATE_BIN
else
    log "release build"
    (cd "$REPO" && cargo build --release --locked --bin scopegate)
    BIN=$TARGET/release/scopegate
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # URL: 200 within 10 s
    for _ in $(seq 1000); do curl -fs -o /dev/null "$1" && return 0; sleep 0.01; done
    echo "not ready: $1" >&2; return 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# ---------------------------------------------------------------- redis, upstream, keys
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 500); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.01; done
STORE=redis://127.0.0.1:$REDIS_PORT/0

UP_PORT=$(free_port)
sed "s/@UPSTREAM_PORT@/$UP_PORT/" "$HERE/haproxy-upstream.cfg" >"$WORK/upstream.cfg"
taskset -c "$LOAD_CPU" haproxy -f "$WORK/upstream.cfg" -db >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)

log "generating $N keys"
python3 "$HERE/key_store.py" gen "$N" "$WORK"
POLICY_KEY=sk_live_policy_key_0123456789
log "keys import of $N keys"
start=$(date +%s.%N)
"$BIN" keys import --store "$STORE" "$WORK/import.json" | tee "$WORK/import.out"
IMPORT_S=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
REDIS_MB=$(redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory:/ {printf "%.0f", $2/1048576}')
rm -f "$WORK/import.json"

cat >"$WORK/policy.yaml" <<EOF
version: 1
scopes: { "bots:read": read }
routes:
  - { id: bot-read, methods: [GET], path: "/v1/bots/{botId}", auth: [api_key], scopes: ["bots:read"], resource: { kind: bots, param: botId } }
api_keys:
  - { id: policy-key, sha256: $(printf %s "$POLICY_KEY" | sha256sum | cut -d' ' -f1), scopes: ["bots:read"], resources: { bots: ["*"] } }
EOF
start_proxy() { # NAME CPU: starts scopegate, sets PORT and PID
    local name=$1 cpu=$2 admin
    PORT=$(free_port)
    admin=$(free_port)
    cat >"$WORK/$name.yaml" <<EOF
listen: 127.0.0.1:$PORT
admin_listen: 127.0.0.1:$admin
policy_file: policy.yaml
upstreams: { default: http://127.0.0.1:$UP_PORT }
key_store: $STORE
log: { level: warn }
EOF
    taskset -c "$cpu" "$BIN" run --config "$WORK/$name.yaml" >/dev/null 2>"$WORK/$name.log" &
    PID=$!
    PIDS+=("$PID")
    ADMIN=$admin
    wait_http "http://127.0.0.1:$admin/readyz"
}

# ---------------------------------------------------------------- CPU and latency
start_proxy main "$PROXY_CPU"
MAIN_PORT=$PORT MAIN_PID=$PID MAIN_ADMIN=$ADMIN
echo "$POLICY_KEY" >"$WORK/policy.txt"
URL=http://127.0.0.1:$MAIN_PORT/v1/bots/b
curl -fs -o /dev/null -H "Authorization: Bearer $(cat "$WORK/hit.txt")" "$URL"

cpu_run() { # KEYFILE: µs of proxy CPU per request, and req/s, over wrk -c32
    local before after out
    before=$(cpu_ticks "$MAIN_PID")
    out=$(WRK_TOKENS=$1 taskset -c "$LOAD_CPU" wrk -t1 -c32 -d"${DURATION}s" -s "$HERE/wrk-tokens.lua" "$URL" | tail -n 1)
    after=$(cpu_ticks "$MAIN_PID")
    python3 -c "
import json, os; r = json.loads('''$out''')
tick = os.sysconf('SC_CLK_TCK'); n = r['requests']
bad = r['status'] + r['connect'] + r['read'] + r['write'] + r['timeout']
assert bad == 0, r
print(f'{($after - $before) / tick / n * 1e6:.1f} {n / (r[\"duration_us\"] / 1e6):.0f}')"
}
lat_run() { # KEYFILE: p50 and p99 in µs at RATE req/s (10 connections, paced)
    local out pace=$((10 * 1000 / RATE))
    ((pace >= 1)) || pace=1
    out=$(WRK_TOKENS=$1 WRK_PACE_MS=$pace taskset -c "$LOAD_CPU" wrk -t1 -c10 -d"${DURATION}s" \
        -s "$HERE/wrk-keystore-paced.lua" "$URL" | tail -n 1)
    python3 -c "
import json; r = json.loads('''$out''')
bad = r['status'] + r['connect'] + r['read'] + r['write'] + r['timeout']
assert bad == 0, r
print(f'{r[\"p50_us\"]} {r[\"p99_us\"]} {r[\"requests\"] / (r[\"duration_us\"] / 1e6):.0f}')"
}
log "CPU per request and latency: policy key, key-store hit"
read -r CPU_POLICY RPS_POLICY <<<"$(cpu_run "$WORK/policy.txt")"
read -r CPU_HIT RPS_HIT <<<"$(cpu_run "$WORK/hit.txt")"
read -r P50_POLICY P99_POLICY RATE_POLICY <<<"$(lat_run "$WORK/policy.txt")"
read -r P50_HIT P99_HIT RATE_HIT <<<"$(lat_run "$WORK/hit.txt")"
log "latency: key-store misses (keys never looked up before)"
read -r P50_MISS P99_MISS RATE_MISS <<<"$(lat_run "$WORK/miss.txt")"
MISS_REQUESTS=$((RATE_MISS * DURATION))
[[ $MISS_REQUESTS -le 20000 ]] || echo "note: more requests than miss keys; some were hits" >&2

# ---------------------------------------------------------------- memory per cached key
log "memory per cached key ($CACHED keys)"
start_proxy mem "$PROXY_CPU"
MEM_PID=$PID MEM_ADMIN=$ADMIN
python3 - "$CACHED" >"$WORK/cached.txt" <<'EOF'
import sys
for i in range(1, int(sys.argv[1]) + 1):
    print(f"sk_live_bench_{i * 4:07d}")
EOF
curl -fs -o /dev/null -H "Authorization: Bearer $POLICY_KEY" "http://127.0.0.1:$PORT/v1/bots/b"
RSS0=$(rss_kb "$MEM_PID")
# One pass over the keys (wrk stops by its duration; the count comes from /policy).
WRK_TOKENS=$WORK/cached.txt taskset -c "$LOAD_CPU" timeout 120 wrk -t1 -c32 -d25s -s "$HERE/wrk-tokens.lua" \
    "http://127.0.0.1:$PORT/v1/bots/b" >/dev/null
RSS1=$(rss_kb "$MEM_PID")
ENTRIES=$(curl -fs "http://127.0.0.1:$MEM_ADMIN/policy" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key_store"]["cache_entries"])')
BYTES_PER_KEY=$(python3 -c "print(round(($RSS1 - $RSS0) * 1024 / max($ENTRIES, 1)))")

# ---------------------------------------------------------------- revocation propagation
log "revocation propagation: $REVOCATIONS revocations, 3 replicas"
PORTS=()
for r in 1 2 3; do
    start_proxy "replica$r" "$PROXY_CPU"
    PORTS+=("$PORT")
done
REVOKE=$(timeout 300 python3 "$HERE/key_store.py" revoke "$REDIS_PORT" "$REVOCATIONS" "${PORTS[@]}")
read -r REV_P50 REV_P99 REV_MAX <<<"$(python3 -c "import json; r = json.loads('$REVOKE'); print(r['p50_ms'], r['p99_ms'], r['max_ms'])")"

# ---------------------------------------------------------------- report
cat <<EOF

### Key store, $N keys ($(date -u +%Y-%m-%d), $(nproc) CPUs, proxy on CPU $PROXY_CPU, load on CPU $LOAD_CPU)

| measure | value |
|---|---|
| \`keys import\` of $N keys | ${IMPORT_S} s ($(cat "$WORK/import.out")); Redis used_memory after: ${REDIS_MB} MiB |
| CPU µs/request, policy key | $CPU_POLICY ($RPS_POLICY req/s at -c32) |
| CPU µs/request, key-store cache hit | $CPU_HIT ($RPS_HIT req/s at -c32) |
| p50 / p99 µs at $RATE_POLICY req/s, policy key | $P50_POLICY / $P99_POLICY |
| p50 / p99 µs at $RATE_HIT req/s, cache hit | $P50_HIT / $P99_HIT |
| p50 / p99 µs at $RATE_MISS req/s, cache miss (a Redis round trip each) | $P50_MISS / $P99_MISS |
| revocation propagation, $REVOCATIONS revocations × 3 replicas, p50 / p99 / max | $REV_P50 / $REV_P99 / $REV_MAX ms |
| memory per cached key | $BYTES_PER_KEY bytes (RSS +$((RSS1 - RSS0)) KiB over $ENTRIES cache entries) |
EOF

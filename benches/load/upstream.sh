#!/usr/bin/env bash
# Upstream-leg figures (issue 16), loopback only:
#   1. CPU per request to an HTTPS upstream against a plain one (pooled keep-alive
#      connections, so a TLS handshake is rare);
#   2. requests per second over one HTTP/2 (h2c) upstream connection against the HTTP/1.1
#      pool;
#   3. WebSocket message round-trip time through scopegate against direct.
# The upstream is HAProxy answering itself (plain, TLS with the test certificate, h2c); the
# WebSocket echo server and client are benches/load/ws_rtt.py.
#
#   benches/load/upstream.sh            # about 2 minutes after the release build
#
# Settings: DURATION=10 CONNS=32 WS_N=5000 PROXY_CPU=1 LOAD_CPU=0 SCOPEGATE_BIN=path.
# The release build goes to $CARGO_TARGET_DIR (default target/). Every process it starts is
# stopped on exit.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/benches/load
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
WS_N=${WS_N:-5000}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
WORK=${WORK:-$TARGET/load-bench/upstream-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$WORK"

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

missing=()
for tool in wrk haproxy python3 curl; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

if [[ -n ${SCOPEGATE_BIN:-} ]]; then
    SCOPEGATE=$SCOPEGATE_BIN
else
    (cd "$REPO" && cargo build --release --quiet)
    SCOPEGATE=$TARGET/release/scopegate
fi

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HP_PLAIN=$(port) HP_TLS=$(port) HP_H2C=$(port) WS_PORT=$(port) SG=$(port) SG_ADMIN=$(port)

cat "$REPO/tests/fixtures/tls/server.crt.pem" "$REPO/tests/fixtures/tls/server.key.pem" >"$WORK/server.pem"
cat >"$WORK/haproxy.cfg" <<CFG
global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout client 30s
    timeout server 30s
    timeout connect 5s
frontend plain
    bind 127.0.0.1:$HP_PLAIN
    http-request return status 200 content-type text/plain string ok
frontend tls
    bind 127.0.0.1:$HP_TLS ssl crt $WORK/server.pem alpn http/1.1
    http-request return status 200 content-type text/plain string ok
frontend h2c
    bind 127.0.0.1:$HP_H2C proto h2
    http-request return status 200 content-type text/plain string ok
CFG
taskset -c "$LOAD_CPU" haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
taskset -c "$LOAD_CPU" python3 "$HERE/ws_rtt.py" serve "$WS_PORT" &
PIDS+=($!)

cat >"$WORK/policy.yaml" <<POLICY
version: 1
routes:
  - { id: plain, methods: [GET], path: "/plain/{*r}", auth: [none] }
  - { id: tls, methods: [GET], path: "/tls/{*r}", auth: [none], upstream: tls }
  - { id: h2, methods: [GET], path: "/h2/{*r}", auth: [none], upstream: h2 }
  - { id: ws, methods: [GET], path: /ws, auth: [none], upstream: ws }
POLICY
cat >"$WORK/scopegate.yaml" <<CONFIG
listen: 127.0.0.1:$SG
admin_listen: 127.0.0.1:$SG_ADMIN
policy_file: policy.yaml
upstreams:
  default: http://127.0.0.1:$HP_PLAIN
  tls: { url: "https://127.0.0.1:$HP_TLS", ca_file: "$REPO/tests/fixtures/tls/ca.crt.pem" }
  h2: { url: "http://127.0.0.1:$HP_H2C", http2: true }
  ws: http://127.0.0.1:$WS_PORT
log: { level: warn }
CONFIG
taskset -c "$PROXY_CPU" "$SCOPEGATE" run --config "$WORK/scopegate.yaml" >/dev/null 2>"$WORK/scopegate.log" &
SG_PID=$!
PIDS+=("$SG_PID")
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$SG/plain/up" >/dev/null && break
    sleep 0.1
done
for path in plain/ready tls/ready h2/ready; do
    curl -sf "http://127.0.0.1:$SG/$path" >/dev/null || { echo "$path failed"; cat "$WORK/scopegate.log"; exit 1; }
done

ticks() { awk '{print $14 + $15}' "/proc/$SG_PID/stat"; }
hz=$(getconf CLK_TCK)
# wrk against one path; prints "requests req/s cpu_us_per_request".
measure() {
    local path=$1 before after out requests rps
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d2 "http://127.0.0.1:$SG/$path" >/dev/null # warm-up
    before=$(ticks)
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$SG/$path")
    after=$(ticks)
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    awk -v r="$requests" -v s="$rps" -v t=$((after - before)) -v hz="$hz" \
        'BEGIN { printf "%d %.0f %.1f\n", r, s, t / hz * 1e6 / r }'
}

echo "## Upstream leg ($(date -u +%F), ${DURATION}s per run, $CONNS connections, wrk on CPU $LOAD_CPU, scopegate on CPU $PROXY_CPU)"
echo
echo "| upstream | requests | req/s | scopegate CPU per request (µs) |"
echo "|---|---|---|---|"
for what in "plain:HTTP/1.1 pool, plain" "tls:HTTP/1.1 pool, TLS" "h2:HTTP/2 (h2c), one connection"; do
    read -r n rps cpu <<<"$(measure "${what%%:*}/x")"
    echo "| ${what#*:} | $n | $rps | $cpu |"
done
echo
echo "WebSocket round trip, 32-byte binary message, one in flight, $WS_N messages (µs):"
echo
echo "- direct:       $(python3 "$HERE/ws_rtt.py" client "127.0.0.1:$WS_PORT" /ws "$WS_N")"
echo "- via scopegate: $(python3 "$HERE/ws_rtt.py" client "127.0.0.1:$SG" /ws "$WS_N")"

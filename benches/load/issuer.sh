#!/usr/bin/env bash
# Figures for scopegate as an issuer (SPEC §3.7, issue #14):
#   1. token-endpoint exchanges per second, the proxy pinned to one core (wrk on the other);
#   2. user-space instructions per request (callgrind) on the HS256 route with
#      `upstream_assertion` off and on: the assertion is reused per principal, route and
#      upstream, so signing should be rare and the cost within 5 %.
#
#   benches/load/issuer.sh                               # release build, ~3 minutes
#   SECONDS_LOAD=20 SCOPEGATE_BIN=path benches/load/issuer.sh
#
# The upstream is HAProxy answering itself (as in run.sh). The issuer key is the test
# fixture tests/fixtures/keys/app-ec256.key.pem (ES256). Loopback only; every process is
# stopped on exit.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/benches/load
LOAD=${SECONDS_LOAD:-10}
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
WORK=${WORK:-$TARGET/load-bench/issuer-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$WORK"

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

for tool in valgrind callgrind_control haproxy wrk curl python3 taskset; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done

if [[ -n ${SCOPEGATE_BIN:-} ]]; then
    SCOPEGATE=$SCOPEGATE_BIN
else
    (cd "$REPO" && cargo build --release --quiet)
    SCOPEGATE=$TARGET/release/scopegate
fi

mkdir -p "$WORK/policy"
python3 "$HERE/gen.py" "$WORK/policy" "$REPO"
# shellcheck source=/dev/null
source "$WORK/policy/creds.env" # HS_SECRET HS_TOKEN API_KEY ...
PARTNER_SECRET=load-bench-partner-secret-0123456789
PARTNER_SHA=$(printf %s "$PARTNER_SECRET" | sha256sum | cut -d' ' -f1)
cp "$WORK/policy/policy.yaml" "$WORK/policy-off.yaml"
cp "$WORK/policy/policy.yaml" "$WORK/policy-on.yaml"
cat >>"$WORK/policy-on.yaml" <<EOF
issuer:
  name: https://gateway.bench/
  signing_key_file: $REPO/tests/fixtures/keys/app-ec256.key.pem
  kid: bench-1
upstream_assertion: { header: x-auth-assertion, ttl: 60s }
token_endpoint:
  path: /monitor/v1/auth
  ttl: 1800s
  clients:
    - { access_key: partner-bench, secret_sha256: $PARTNER_SHA, scopes: [bots:read], resources: { bots: ["*"] } }
EOF

read -r UP SG SG_ADMIN < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
sed -e "s/@UPSTREAM_PORT@/$UP/g" "$HERE/haproxy-upstream.cfg" >"$WORK/upstream.cfg"
for mode in on off; do
    cat >"$WORK/scopegate-$mode.yaml" <<EOF
listen: 127.0.0.1:$SG
admin_listen: 127.0.0.1:$SG_ADMIN
policy_file: $WORK/policy-$mode.yaml
upstreams: { default: "http://127.0.0.1:$UP" }
log: { level: error }
EOF
done
taskset -c 1 haproxy -db -f "$WORK/upstream.cfg" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)

cat >"$WORK/exchange.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"accessKey":"partner-bench","secretKey":"$PARTNER_SECRET"}'
EOF

wait_up() { # URL PID [curl args...]
    local url=$1 pid=$2 i
    shift 2
    for i in $(seq 600); do
        curl -sf -o /dev/null "$@" "$url" && return 0
        kill -0 "$pid" 2>/dev/null || { echo "scopegate exited; see $WORK" >&2; exit 1; }
        sleep 0.1
    done
    echo "scopegate did not answer $url" >&2
    exit 1
}

# 1. Exchanges per second on one core.
taskset -c 0 "$SCOPEGATE" run --config "$WORK/scopegate-on.yaml" >"$WORK/sg-exchange.out" 2>&1 &
pid=$!
PIDS+=("$pid")
EXCHANGE=http://127.0.0.1:$SG/monitor/v1/auth
wait_up "$EXCHANGE" "$pid" -X POST -H 'Content-Type: application/json' \
    -d "{\"accessKey\":\"partner-bench\",\"secretKey\":\"$PARTNER_SECRET\"}"
taskset -c 1 wrk -t1 -c8 -d2s -s "$WORK/exchange.lua" "$EXCHANGE" >/dev/null
taskset -c 1 wrk -t1 -c8 -d"${LOAD}s" -s "$WORK/exchange.lua" "$EXCHANGE" >"$WORK/exchange.wrk"
kill -TERM "$pid"
wait "$pid" 2>/dev/null || true
if grep -q "Non-2xx" "$WORK/exchange.wrk"; then
    echo "exchange: not every answer was 200: $(grep Non-2xx "$WORK/exchange.wrk")" >&2
    exit 1
fi
exchanges=$(awk '/^Requests\/sec/ {print $2}' "$WORK/exchange.wrk")

# 2. Instructions per HS256 request, assertion off and on.
count() { # MODE: prints instructions per request
    local mode=$1
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg-$mode.%p" \
        "$SCOPEGATE" run --config "$WORK/scopegate-$mode.yaml" >"$WORK/sg-$mode.out" 2>"$WORK/sg-$mode.err" &
    local pid=$!
    PIDS+=("$pid")
    local url=http://127.0.0.1:$SG/v1/bots/b1
    wait_up "$url" "$pid" -H "Authorization: Bearer $HS_TOKEN"
    wrk -t1 -c8 -d3s -H "Authorization: Bearer $HS_TOKEN" "$url" >/dev/null
    callgrind_control -i on "$pid" >/dev/null 2>&1
    wrk -t1 -c8 -d"${LOAD}s" -H "Authorization: Bearer $HS_TOKEN" "$url" >"$WORK/$mode.wrk"
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    if grep -q "Non-2xx" "$WORK/$mode.wrk"; then
        echo "$mode: not every answer was 200" >&2
        exit 1
    fi
    local n total
    n=$(awk '/requests in/ {print $1}' "$WORK/$mode.wrk")
    total=$(grep -h '^totals:' "$WORK"/cg-"$mode".*.1 | awk '{print $2}')
    echo "$((total / n)) $n"
}
read -r off n_off < <(count off)
read -r on n_on < <(count on)
change=$(python3 -c "print(f'{($on - $off) / $off * 100:+.1f}')")

cat <<EOF
scopegate as an issuer ($SCOPEGATE; work dir $WORK)

token endpoint, ES256, proxy on one core, wrk -t1 -c8 ${LOAD}s: $exchanges exchanges/s

user-space instructions per request, HS256 route (callgrind; after 3 s of warm-up):
| upstream_assertion | instructions/request | requests counted |
|---|---:|---:|
| off | $off | $n_off |
| on (ES256, ttl 60s) | $on | $n_on |
| change | $change % | |
EOF

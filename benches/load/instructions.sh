#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind. The same binary and
# inputs give the same count to about 0.5% between sessions (0.02% back to back), where CPU
# time per request on this shared VM moves by several percent between runs: this is how a
# 1% change is told apart (measure both builds in one sitting). CPU time per
# request (run.sh) stays the figure the targets are about; instructions leave out the kernel
# and what a cache miss costs.
#
#   benches/load/instructions.sh                      # 5,000 requests per target, ~2 minutes
#   N=20000 SCOPEGATE_BIN=path benches/load/instructions.sh
#   TRACING_RATIO=1 TARGETS=sg-hs256 benches/load/instructions.sh   # tracing on (SPEC §7)
#
# TRACING_RATIO (unset: tracing off) turns `tracing:` on with that `sample_ratio`, exporting
# to a receiver that accepts every OTLP/HTTP post and drops it (Python, outside valgrind);
# requests carry no traceparent, so the ratio alone decides. TARGETS picks some of
# sg-none sg-hs256 sg-apikey haproxy-jwt (default: all four).
#
# Targets: scopegate on an `auth: [none]` route, with an HS256 JWT, with an API key, and
# HAProxy's `jwt_verify` frontend from run.sh for reference. Each runs under valgrind, gets
# 1,000 warm-up requests uncounted, then N counted ones (oha, 8 connections). The upstream is
# HAProxy answering itself, outside valgrind. Loopback only; every process is stopped on exit.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/benches/load
N=${N:-5000}
WORK=${WORK:-$REPO/target/load-bench/instructions-$(date +%Y%m%d-%H%M%S)}
TOOLS=$REPO/target/load-tools
mkdir -p "$WORK"

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

missing=()
for tool in valgrind haproxy curl python3; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
python3 -c 'import joserfc' 2>/dev/null || python3 -m pip install --quiet joserfc
OHA=$(command -v oha || true)
[[ -z $OHA && -x $TOOLS/bin/oha ]] && OHA=$TOOLS/bin/oha
if [[ -z $OHA ]]; then
    cargo install --locked --root "$TOOLS" oha
    OHA=$TOOLS/bin/oha
fi

if [[ -n ${SCOPEGATE_BIN:-} ]]; then
    SCOPEGATE=$SCOPEGATE_BIN
else
    (cd "$REPO" && cargo build --release --quiet)
    SCOPEGATE=$REPO/target/release/scopegate
fi

mkdir -p "$WORK/policy"
python3 "$HERE/gen.py" "$WORK/policy" "$REPO"
# shellcheck source=/dev/null
source "$WORK/policy/creds.env" # HS_SECRET HS_TOKEN API_KEY ...

read -r UP HAP_PLAIN HAP_JWT HAP_JWT_LOG SG SG_ADMIN COLLECTOR < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(7)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
sed -e "s/@UPSTREAM_PORT@/$UP/g" "$HERE/haproxy-upstream.cfg" >"$WORK/upstream.cfg"
sed -e "s/@UPSTREAM_PORT@/$UP/g; s/@PLAIN_PORT@/$HAP_PLAIN/g; s/@JWT_PORT@/$HAP_JWT/g" \
    -e "s/@JWT_LOG_PORT@/$HAP_JWT_LOG/g; s/@HS_SECRET@/$HS_SECRET/g" "$HERE/haproxy-proxy.cfg" >"$WORK/haproxy.cfg"
cat >"$WORK/scopegate.yaml" <<EOF
listen: 127.0.0.1:$SG
admin_listen: 127.0.0.1:$SG_ADMIN
policy_file: $WORK/policy/policy.yaml
upstreams: { default: "http://127.0.0.1:$UP" }
log: { level: error }
EOF
if [[ -n ${TRACING_RATIO:-} ]]; then
    printf 'tracing: { otlp_endpoint: "http://127.0.0.1:%s", sample_ratio: %s }\n' \
        "$COLLECTOR" "$TRACING_RATIO" >>"$WORK/scopegate.yaml"
    python3 - "$COLLECTOR" >"$WORK/collector.log" 2>&1 <<'PY' &
import http.server, sys
class Drop(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Drop).serve_forever()
PY
    PIDS+=($!)
fi
TARGETS=" ${TARGETS:-sg-none sg-hs256 sg-apikey haproxy-jwt} "
haproxy -db -f "$WORK/upstream.cfg" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)

# count NAME URL CREDENTIAL COMMAND...: prints instructions per request ("-" for a target
# not in TARGETS).
count() {
    local name=$1 url=$2 cred=$3
    shift 3
    [[ $TARGETS == *" $name "* ]] || { echo -; return; }
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg-$name.%p" \
        "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    local pid=$!
    PIDS+=("$pid")
    local i
    for i in $(seq 600); do
        curl -sf -o /dev/null -H "Authorization: Bearer $cred" "$url" && break
        kill -0 "$pid" 2>/dev/null || { echo "$name exited; see $WORK/$name.err" >&2; exit 1; }
        sleep 0.1
    done
    "$OHA" --no-tui -n 1000 -c 8 -H "Authorization: Bearer $cred" "$url" >/dev/null
    callgrind_control -i on "$pid" >/dev/null 2>&1
    "$OHA" --no-tui -n "$N" -c 8 -H "Authorization: Bearer $cred" "$url" >"$WORK/$name.oha"
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    grep -q "\[200\] $N responses" "$WORK/$name.oha" || { echo "$name: not every response was 200" >&2; exit 1; }
    local total
    total=$(grep -h '^totals:' "$WORK/cg-$name.$pid.1" | awk '{print $2}')
    echo $((total / N))
}

sg_none=$(count sg-none "http://127.0.0.1:$SG/open" "$HS_TOKEN" "$SCOPEGATE" run --config "$WORK/scopegate.yaml")
sg_hs256=$(count sg-hs256 "http://127.0.0.1:$SG/v1/bots/b1" "$HS_TOKEN" "$SCOPEGATE" run --config "$WORK/scopegate.yaml")
sg_apikey=$(count sg-apikey "http://127.0.0.1:$SG/v1/bots/b1" "$API_KEY" "$SCOPEGATE" run --config "$WORK/scopegate.yaml")
hap_jwt=$(count haproxy-jwt "http://127.0.0.1:$HAP_JWT/v1/bots/b1" "$HS_TOKEN" haproxy -db -f "$WORK/haproxy.cfg")

ratio() {
    if [[ $1 == - || $2 == - ]]; then echo -; else python3 -c "print(f'{$1 / $2:.2f}')"; fi
}
cat <<EOF
User-space instructions per request (callgrind; $N requests after 1,000 uncounted; $SCOPEGATE; tracing: ${TRACING_RATIO:-off})

| target | instructions/request | vs HAProxy \`jwt_verify\` |
|---|---:|---:|
| scopegate, \`auth: [none]\` | $sg_none | $(ratio "$sg_none" "$hap_jwt") |
| scopegate, HS256 JWT | $sg_hs256 | $(ratio "$sg_hs256" "$hap_jwt") |
| scopegate, API key | $sg_apikey | $(ratio "$sg_apikey" "$hap_jwt") |
| HAProxy 2.6, \`jwt_verify\` HS256 + claim checks | $hap_jwt | 1.00 |
EOF

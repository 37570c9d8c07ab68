# Shared by soak.sh and faults.sh (sourced): settings, cleanup, ports, the upstream, the
# policy and scopegate's config. Loopback only.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/benches/soak
# The project venv has joserfc (scripts/test.sh creates it); else the python3 on PATH.
PYTHON=${PYTHON:-$([[ -x $REPO/.venv/bin/python3 ]] && echo "$REPO/.venv/bin/python3" || echo python3)}
"$PYTHON" -c 'import joserfc' || { echo "joserfc missing: run scripts/test.sh once (it creates .venv)" >&2; exit 1; }

if [[ -n ${SCOPEGATE_BIN:-} ]]; then
    BIN=$SCOPEGATE_BIN
else
    BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/scopegate
    [[ -x $BIN ]] || { echo "no release binary at $BIN: cargo build --release, or SCOPEGATE_BIN=path" >&2; exit 1; }
fi

log() { printf '== %s %s\n' "$(date -u +%T)" "$*" >&2; }

# Every process started goes into PIDS; on exit (normal, error, Ctrl-C, TERM) each gets
# SIGTERM, then SIGKILL if still there after 5 s.
PIDS=()
cleanup() {
    local status=$? pid alive
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free loopback ports, chosen by the kernel, all at once so they differ.
free_ports() {
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# wait_http URL PID: until URL answers 200 (at most 30 s), or fail if PID died.
wait_http() {
    for _ in $(seq 300); do
        curl -sf -o /dev/null "$1" && return 0
        kill -0 "$2" 2>/dev/null || { echo "process $2 died before $1 answered (logs in $WORK)" >&2; return 1; }
        sleep 0.1
    done
    echo "$1 did not answer 200 in 30 s" >&2
    return 1
}

# start_upstream: the Python upstream on a free port; sets UP_PORT.
start_upstream() {
    read -r UP_PORT < <(free_ports 1)
    "$PYTHON" "$HERE/upstream.py" "$UP_PORT" >"$WORK/upstream.log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$UP_PORT/open" $!
}

# Policy inputs: key files copied beside the policy, secrets, API keys.
HS_SECRET=soak-hs256-secret-0123456789abcdef-0123
ENC_SECRET=soak-enc-secret-0123456789abcdef-01234567
API_KEY=sk_live_soak_0000000001
prepare_policy_dir() {
    mkdir -p "$WORK/policy/keys"
    local k
    for k in app-rsa.pub.pem app-ec256.pub.pem client-rsa.pub.pem proxy-jwe-rsa.key.pem; do
        cp "$REPO/tests/fixtures/keys/$k" "$WORK/policy/keys/"
    done
    write_policy 0
}

# write_policy REVISION: the policy with a rotating comment, written as an editor saves
# (a temporary file renamed over the old one).
write_policy() {
    cat >"$WORK/policy/.policy.yaml.tmp" <<POLICY
version: 1
# revision $1
scopes:
  bots:read: View bots
  bots:write: Create and update bots
routes:
  - { id: bot-read, methods: [GET], path: "/v1/bots/{botId}", auth: [jwt, api_key], scopes: [bots:read], resource: { kind: bots, param: botId } }
  - { id: bot-write, methods: [POST], path: "/v1/bots/{botId}", auth: [jwt, api_key], scopes: [bots:write], resource: { kind: bots, param: botId } }
  - { id: enc, methods: [POST], path: /enc, auth: [jwt], encryption: supported }
  - { id: open, methods: [GET], path: "/open", auth: [none] }
  - { id: slow, methods: [GET], path: "/slow/{*rest}", auth: [none] }
apps:
  - { client_id: soak-hs256, algorithms: [HS256], secret: { value: "$HS_SECRET" }, scopes: [bots:read], resources: { bots: ["*"] } }
  - { client_id: soak-rs256, algorithms: [RS256], public_key_file: keys/app-rsa.pub.pem, scopes: [bots:read], resources: { bots: ["*"] } }
  - { client_id: soak-es256, algorithms: [ES256], public_key_file: keys/app-ec256.pub.pem, scopes: [bots:read], resources: { bots: ["st-1"] } }
  - { client_id: soak-enc, algorithms: [HS256], secret: { value: "$ENC_SECRET" }, payload_encryption: { public_key_file: keys/client-rsa.pub.pem } }
api_keys:
  - { id: soak-key, sha256: $(printf %s "$API_KEY" | sha256sum | cut -d' ' -f1), scopes: [bots:read], resources: { bots: ["*"] } }
jwe_keys:
  - { kid: sg-rsa, private_key_file: keys/proxy-jwe-rsa.key.pem }
POLICY
    mv "$WORK/policy/.policy.yaml.tmp" "$WORK/policy/policy.yaml"
}

# scopegate_config NAME PORT ADMIN [extra YAML lines]: writes $WORK/NAME.yaml.
scopegate_config() {
    cat >"$WORK/$1.yaml" <<CONFIG
listen: 127.0.0.1:$2
admin_listen: 127.0.0.1:$3
policy_file: policy/policy.yaml
upstreams: { default: "http://127.0.0.1:$UP_PORT" }
log: { level: info }
${4:-}
CONFIG
}

# start_proxy NAME: runs scopegate with $WORK/NAME.yaml (access log to /dev/null, its own
# log to NAME.log); sets PROXY_PID.
start_proxy() {
    "$BIN" run --config "$WORK/$1.yaml" >/dev/null 2>"$WORK/$1.log" &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
}

# metric ADMIN_PORT 'name{labels}': one value from /metrics (0 when absent).
metric() {
    curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2; found = 1 } END { if (!found) print 0 }'
}

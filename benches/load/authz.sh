#!/usr/bin/env bash
# The authorization service against the proxy (issue 15), in one run:
#   1. CPU per request of scopegate as the proxy (HS256 JWT route, HAProxy upstream);
#   2. CPU per decision of scopegate's authz listener for the same request (Traefik shape);
#   3. nginx auth_request in front of the same upstream, asking that listener: the CPU of
#      nginx + scopegate per request.
# CPU is user + system time of the processes under test (from /proc) over requests served;
# scopegate and nginx are pinned to one CPU, wrk and the upstream to the other.
#
#   benches/load/authz.sh                        # 3 rounds of 5 s per target
#   ROUNDS=1 DURATION=3 SCOPEGATE_BIN=path benches/load/authz.sh
#
# Loopback only; every process it starts is stopped on exit.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/benches/load
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
WORK=$(mktemp -d)

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

missing=()
for tool in wrk haproxy nginx python3; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
python3 -c 'import joserfc' 2>/dev/null || python3 -m pip install --quiet joserfc
if [[ -n ${SCOPEGATE_BIN:-} ]]; then
    SCOPEGATE=$SCOPEGATE_BIN
else
    (cd "$REPO" && cargo build --release --quiet)
    SCOPEGATE=$REPO/target/release/scopegate
fi

mkdir -p "$WORK/policy" "$WORK/nginx"
python3 "$HERE/gen.py" "$WORK/policy" "$REPO" >/dev/null
# shellcheck source=/dev/null
source "$WORK/policy/creds.env" # HS_TOKEN ...

read -r UP SG AUTHZ ADMIN NGX < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
sed -e "s/@UPSTREAM_PORT@/$UP/g" "$HERE/haproxy-upstream.cfg" >"$WORK/upstream.cfg"
taskset -c "$LOAD_CPU" haproxy -db -f "$WORK/upstream.cfg" >/dev/null 2>&1 &
PIDS+=($!)
cat >"$WORK/scopegate.yaml" <<EOF
listen: 127.0.0.1:$SG
admin_listen: 127.0.0.1:$ADMIN
policy_file: $WORK/policy/policy.yaml
upstreams: { default: "http://127.0.0.1:$UP" }
authz: { listen: "127.0.0.1:$AUTHZ", statuses: nginx }
log: { level: error }
EOF
taskset -c "$PROXY_CPU" "$SCOPEGATE" run --config "$WORK/scopegate.yaml" >/dev/null 2>"$WORK/scopegate.err" &
SG_PID=$!
PIDS+=("$SG_PID")
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  upstream api { server 127.0.0.1:$UP; keepalive 64; }
  upstream scopegate { server 127.0.0.1:$AUTHZ; keepalive 64; }
  server {
    listen 127.0.0.1:$NGX;
    location / {
      auth_request /_scopegate;
      auth_request_set \$auth_kind \$upstream_http_x_auth_kind;
      auth_request_set \$auth_app \$upstream_http_x_auth_app_id;
      auth_request_set \$auth_scopes \$upstream_http_x_auth_scopes;
      proxy_set_header x-auth-kind \$auth_kind;
      proxy_set_header x-auth-app-id \$auth_app;
      proxy_set_header x-auth-scopes \$auth_scopes;
      proxy_set_header authorization "";
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://api;
    }
    location = /_scopegate {
      internal;
      proxy_pass http://scopegate;
      proxy_http_version 1.1;
      proxy_pass_request_body off;
      proxy_set_header Connection "";
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI \$request_uri;
      proxy_set_header X-Original-Method \$request_method;
    }
  }
}
EOF
taskset -c "$PROXY_CPU" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
NGX_PID=$!
PIDS+=("$NGX_PID")

for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$ADMIN/readyz" && break
    sleep 0.1
done
check() { # URL [HEADER...]: one request must be allowed
    local url=$1
    shift
    local args=()
    for h in "$@"; do args+=(-H "$h"); done
    local status
    for _ in $(seq 20); do
        status=$(curl -s -o /dev/null -w '%{http_code}' "${args[@]}" "$url" || true)
        [[ $status == 200 ]] && return 0
        sleep 0.1
    done
    echo "not allowed ($status): $url" >&2
    cat "$WORK/scopegate.err" >&2
    exit 1
}
AUTH="Authorization: Bearer $HS_TOKEN"
check "http://127.0.0.1:$SG/v1/bots/b1" "$AUTH"
check "http://127.0.0.1:$AUTHZ/" "$AUTH" "X-Forwarded-Method: GET" "X-Forwarded-Uri: /v1/bots/b1"
check "http://127.0.0.1:$NGX/v1/bots/b1" "$AUTH"

cpu_ticks() { # PID...: user + system clock ticks
    local total=0 pid
    for pid in "$@"; do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$total"
}
HZ=$(getconf CLK_TCK)
# measure NAME URL PIDS... HEADERS via H_ARGS: prints "NAME req/s cpu_us_per_request"
measure() {
    local name=$1 url=$2
    shift 2
    local before after out reqs
    before=$(cpu_ticks "$@")
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" "${H_ARGS[@]}" "$url")
    after=$(cpu_ticks "$@")
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    if echo "$out" | grep -q "Non-2xx"; then
        echo "$name: non-2xx answers" >&2
        echo "$out" >&2
        exit 1
    fi
    python3 -c "print(f'$name {$reqs / $DURATION:.0f} {($after - $before) / $HZ * 1e6 / $reqs:.2f}')"
}

echo "| round | target | req/s | CPU µs/request |"
echo "|---|---|---:|---:|"
for round in $(seq "$ROUNDS"); do
    H_ARGS=(-H "$AUTH")
    read -r n rps cpu < <(measure proxy "http://127.0.0.1:$SG/v1/bots/b1" "$SG_PID")
    echo "| $round | scopegate as the proxy (HS256) | $rps | $cpu |"
    H_ARGS=(-H "$AUTH" -H "X-Forwarded-Method: GET" -H "X-Forwarded-Uri: /v1/bots/b1")
    read -r n rps cpu < <(measure authz "http://127.0.0.1:$AUTHZ/" "$SG_PID")
    echo "| $round | scopegate authz listener, per decision | $rps | $cpu |"
    H_ARGS=(-H "$AUTH")
    read -r n rps cpu < <(measure nginx "http://127.0.0.1:$NGX/v1/bots/b1" "$SG_PID" "$NGX_PID")
    echo "| $round | nginx auth_request + scopegate authz (both processes) | $rps | $cpu |"
done

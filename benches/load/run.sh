#!/usr/bin/env bash
# Load benchmark: scopegate against a bare upstream and HAProxy 2.6, side by side (issue 5).
#
#   benches/load/run.sh              # full run: 3 interleaved rounds, about 11 minutes
#   SMOKE=1 benches/load/run.sh      # 1 short round, about 3 minutes
#
# Loopback only. Installs what is missing (wrk and haproxy from Debian; oha with cargo, once,
# into target/load-tools), builds scopegate in release mode, pins the proxies to one CPU and
# the load generator and upstream to the other, measures, prints one markdown report and
# writes it to benches/load/results.md.
# Every process it starts is stopped on exit, however the script ends.
#
# Settings (environment):
#   ROUNDS=3 DURATION=10 CONNS=32    fixed-concurrency runs: rounds, seconds, connections
#   RATE=2000 LAT_DURATION=10 LAT_CONNS=16   fixed-rate latency runs
#   RATE_TOOL=auto|oha|wrk           fixed-rate generator (auto: oha, else paced wrk)
#   STARTUP_REPEATS=3                starts of the 10,000-app / 100,000-key policy
#   PROXY_CPU=1 LOAD_CPU=0           CPU for the proxies, CPU for the load generator
#   UPSTREAM_CPU=$LOAD_CPU           CPU for the upstream (default: beside the load generator,
#                                    so a proxy has its CPU to itself)
#   BUDGET_SECONDS=900               no new round starts past this (install/build excluded)
#   PROFILE=1                        also perf-record scopegate under HS256 load
#   RESULTS_MD=benches/load/results.md   where the report goes (empty: nowhere)
#   SCOPEGATE_BIN=path               measure this binary instead of building target/release
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/benches/load

# ---------------------------------------------------------------- settings
SMOKE=${SMOKE:-0}
if [[ $SMOKE == 1 ]]; then
    : "${ROUNDS:=1}" "${DURATION:=3}" "${LAT_DURATION:=3}" "${STARTUP_REPEATS:=1}"
fi
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
RATE=${RATE:-2000}
LAT_DURATION=${LAT_DURATION:-10}
LAT_CONNS=${LAT_CONNS:-16}
RATE_TOOL=${RATE_TOOL:-auto}
STARTUP_REPEATS=${STARTUP_REPEATS:-3}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
UPSTREAM_CPU=${UPSTREAM_CPU:-$LOAD_CPU}
BUDGET_SECONDS=${BUDGET_SECONDS:-900}
PROFILE=${PROFILE:-0}
RESULTS_MD=${RESULTS_MD-$HERE/results.md}
WORK=${WORK:-$REPO/target/load-bench/$(date +%Y%m%d-%H%M%S)}
TOOLS=$REPO/target/load-tools

log() { printf '\n== %s\n' "$*" >&2; }
warn() { printf '\n!! %s\n' "$*" >&2; }

# ---------------------------------------------------------------- cleanup
# Every server we start goes into PIDS, the running load generator into CURRENT; on exit
# (normal, error, Ctrl-C, TERM) each gets SIGTERM, then SIGKILL if still there after 5 s.
PIDS=()
CURRENT=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local pid alive all=("${PIDS[@]}" ${CURRENT:+"$CURRENT"})
    for pid in "${all[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        alive=0
        for pid in "${all[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${all[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -f "$WORK/access.log" # can be hundreds of MB
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a bounded command (not a shell function: its PID must be the command's) in the
# background and waits for it, so a signal reaches our trap at once and the trap stops it.
bounded() {
    "$@" &
    CURRENT=$!
    wait "$CURRENT"
    CURRENT=""
}

# ---------------------------------------------------------------- tools
log "tools"
missing=()
for tool in wrk haproxy curl taskset python3; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    debs=()
    for tool in "${missing[@]}"; do
        case $tool in taskset) debs+=(util-linux) ;; python3) debs+=(python3) ;; *) debs+=("$tool") ;; esac
    done
    log "installing ${debs[*]} (apt-get)"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${debs[@]}"
fi
python3 -c 'import joserfc' 2>/dev/null || python3 -m pip install --quiet joserfc

# oha gives open-loop fixed-rate latency with coordinated-omission correction. Debian has no
# wrk2, so oha comes from crates.io, built once into target/load-tools (a few minutes).
OHA=$(command -v oha || true)
[[ -z $OHA && -x $TOOLS/bin/oha ]] && OHA=$TOOLS/bin/oha
if [[ -z $OHA && $RATE_TOOL != wrk ]]; then
    log "installing oha into $TOOLS (cargo install, once)"
    if cargo install --locked --root "$TOOLS" oha; then
        OHA=$TOOLS/bin/oha
    else
        warn "oha did not build: falling back to paced wrk for the fixed-rate runs"
    fi
fi
if [[ $RATE_TOOL == oha && -z $OHA ]]; then
    echo "RATE_TOOL=oha but oha is not available" >&2
    exit 1
fi
[[ $RATE_TOOL == auto ]] && RATE_TOOL=$([[ -n $OHA ]] && echo oha || echo wrk)

# ---------------------------------------------------------------- build and inputs
if [[ -n ${SCOPEGATE_BIN:-} ]]; then
    SCOPEGATE=$SCOPEGATE_BIN
    VERSION="$("$SCOPEGATE" --version) ($SCOPEGATE)"
else
    log "cargo build --release"
    (cd "$REPO" && cargo build --release --quiet)
    SCOPEGATE=$REPO/target/release/scopegate
    VERSION="$("$SCOPEGATE" --version), commit $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
fi

# Policies live in a directory of their own: scopegate watches the directory of its policy
# file, and the files this script writes as it goes must not trigger reload checks.
POLICY_DIR=$WORK/policy
mkdir -p "$POLICY_DIR"
log "work directory: $WORK"
python3 "$HERE/gen.py" "$POLICY_DIR" "$REPO"
# shellcheck source=/dev/null
source "$POLICY_DIR/creds.env" # HS_SECRET HS_TOKEN RS_TOKEN API_KEY BIG_API_KEY

# Free loopback ports, chosen by the kernel (bind to port 0), all at once so they differ.
free_ports() {
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}
read -r UP_PORT HAP_PLAIN_PORT HAP_JWT_PORT HAP_JWT_LOG_PORT SG_PORT SG_ADMIN SGBIG_PORT \
    SGBIG_ADMIN SGLOG_PORT SGLOG_ADMIN SGBP_PORT SGBP_ADMIN HAPBP_PLAIN_PORT HAPBP_JWT_PORT \
    HAPBP_JWT_LOG_PORT < <(free_ports 15)

sed -e "s/@UPSTREAM_PORT@/$UP_PORT/g" "$HERE/haproxy-upstream.cfg" >"$WORK/haproxy-upstream.cfg"
# haproxy_config PLAIN JWT JWT_LOG [global option]
haproxy_config() {
    sed -e "s/@UPSTREAM_PORT@/$UP_PORT/g; s/@PLAIN_PORT@/$1/g; s/@JWT_PORT@/$2/g" \
        -e "s/@JWT_LOG_PORT@/$3/g; s/@HS_SECRET@/$HS_SECRET/g" \
        ${4:+-e "/^global/a\\    $4"} "$HERE/haproxy-proxy.cfg"
}
haproxy_config "$HAP_PLAIN_PORT" "$HAP_JWT_PORT" "$HAP_JWT_LOG_PORT" >"$WORK/haproxy-proxy.cfg"
# The same with `busy-polling`: it spins all the time, so it runs only while measured.
haproxy_config "$HAPBP_PLAIN_PORT" "$HAPBP_JWT_PORT" "$HAPBP_JWT_LOG_PORT" busy-polling \
    >"$WORK/haproxy-busy.cfg"

# scopegate_config NAME PORT ADMIN POLICY
scopegate_config() {
    cat >"$WORK/scopegate-$1.yaml" <<EOF
listen: 127.0.0.1:$2
admin_listen: 127.0.0.1:$3
policy_file: $4
upstreams: { default: "http://127.0.0.1:$UP_PORT" }
log: { level: error }
EOF
}
scopegate_config main "$SG_PORT" "$SG_ADMIN" "$POLICY_DIR/policy.yaml"
scopegate_config big "$SGBIG_PORT" "$SGBIG_ADMIN" "$POLICY_DIR/policy-big.yaml"
scopegate_config log "$SGLOG_PORT" "$SGLOG_ADMIN" "$POLICY_DIR/policy.yaml"
scopegate_config busy "$SGBP_PORT" "$SGBP_ADMIN" "$POLICY_DIR/policy.yaml"
# The window must outlast the gaps between requests at the worker, or it sleeps through the
# next one: with `1ms` the spinner was still asleep 13-19% of the time (p50 170 us). With
# 10 ms it spins throughout at this rate, as HAProxy's does.
echo "limits: { busy_poll: 10ms }" >>"$WORK/scopegate-busy.yaml"

# ---------------------------------------------------------------- servers
# Proxies pinned to PROXY_CPU: HAProxy runs one thread (nbthread 1) and scopegate's tokio one
# worker (it sizes itself to the CPUs it may run on). The upstream on UPSTREAM_CPU.
log "starting the upstream on CPU $UPSTREAM_CPU, HAProxy and scopegate on CPU $PROXY_CPU"
# taskset execs the server, so $! is the server's own PID (the one /proc is read for).

taskset -c "$UPSTREAM_CPU" haproxy -db -f "$WORK/haproxy-upstream.cfg" >"$WORK/upstream.log" 2>&1 &
UP_PID=$!
PIDS+=("$UP_PID")
# HAProxy's access log (the jwt_log frontend) goes to stdout: a file, like scopegate's in
# `sg-hs256-log`.
taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy-proxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HAP_PID=$!
PIDS+=("$HAP_PID")
# The access log goes to stdout: /dev/null here (the formatting is still paid), a real file
# for the `sg-hs256-log` target.
taskset -c "$PROXY_CPU" "$SCOPEGATE" run --config "$WORK/scopegate-main.yaml" >/dev/null 2>"$WORK/scopegate.err" &
SG_PID=$!
PIDS+=("$SG_PID")
taskset -c "$PROXY_CPU" "$SCOPEGATE" run --config "$WORK/scopegate-big.yaml" >/dev/null 2>"$WORK/scopegate-big.err" &
SGBIG_PID=$!
PIDS+=("$SGBIG_PID")
taskset -c "$PROXY_CPU" "$SCOPEGATE" run --config "$WORK/scopegate-log.yaml" >"$WORK/access.log" 2>"$WORK/scopegate-log.err" &
SGLOG_PID=$!
PIDS+=("$SGLOG_PID")
# Busy polling spins only after activity: idle while other targets are measured.
taskset -c "$PROXY_CPU" "$SCOPEGATE" run --config "$WORK/scopegate-busy.yaml" >/dev/null 2>"$WORK/scopegate-busy.err" &
SGBP_PID=$!
PIDS+=("$SGBP_PID")

# wait_http URL PID: until URL answers 200 (at most 120 s), or fail if PID died.
wait_http() {
    for _ in $(seq 1200); do
        curl -sf -o /dev/null "$1" && return 0
        kill -0 "$2" 2>/dev/null || { echo "process $2 died before $1 answered; see $WORK/*.log *.err" >&2; return 1; }
        sleep 0.1
    done
    echo "$1 did not answer 200 in 120 s" >&2
    return 1
}
SERVERS=("$UP_PID" "$HAP_PID" "$SG_PID" "$SGBIG_PID" "$SGLOG_PID" "$SGBP_PID")

wait_http "http://127.0.0.1:$UP_PORT/" "$UP_PID"
wait_http "http://127.0.0.1:$HAP_PLAIN_PORT/" "$HAP_PID"
wait_http "http://127.0.0.1:$SG_ADMIN/readyz" "$SG_PID"
wait_http "http://127.0.0.1:$SGLOG_ADMIN/readyz" "$SGLOG_PID"
wait_http "http://127.0.0.1:$SGBIG_ADMIN/readyz" "$SGBIG_PID"
wait_http "http://127.0.0.1:$SGBP_ADMIN/readyz" "$SGBP_PID"

# ---------------------------------------------------------------- targets
# name -> URL, credential (sent as a bearer token), proxy PID ("" for none).
declare -A URL CRED PROXY
BOT=/v1/bots/st-1234
add_target() { URL[$1]=$2; CRED[$1]=$3; PROXY[$1]=$4; }
add_target direct "http://127.0.0.1:$UP_PORT$BOT" "$HS_TOKEN" ""
add_target sg-none "http://127.0.0.1:$SG_PORT/open" "$HS_TOKEN" "$SG_PID"
add_target sg-hs256 "http://127.0.0.1:$SG_PORT$BOT" "$HS_TOKEN" "$SG_PID"
add_target sg-rs256 "http://127.0.0.1:$SG_PORT$BOT" "$RS_TOKEN" "$SG_PID"
add_target sg-apikey "http://127.0.0.1:$SG_PORT$BOT" "$API_KEY" "$SG_PID"
add_target haproxy-plain "http://127.0.0.1:$HAP_PLAIN_PORT$BOT" "$HS_TOKEN" "$HAP_PID"
add_target haproxy-jwt "http://127.0.0.1:$HAP_JWT_PORT$BOT" "$HS_TOKEN" "$HAP_PID"
add_target sg-apikey-big "http://127.0.0.1:$SGBIG_PORT$BOT" "$BIG_API_KEY" "$SGBIG_PID"
add_target sg-hs256-log "http://127.0.0.1:$SGLOG_PORT$BOT" "$HS_TOKEN" "$SGLOG_PID"
add_target haproxy-jwt-log "http://127.0.0.1:$HAP_JWT_LOG_PORT$BOT" "$HS_TOKEN" "$HAP_PID"
add_target sg-hs256-rotating "http://127.0.0.1:$SG_PORT$BOT" "$HS_TOKEN" "$SG_PID"
add_target sg-hs256-bp "http://127.0.0.1:$SGBP_PORT$BOT" "$HS_TOKEN" "$SGBP_PID"
add_target haproxy-jwt-bp "http://127.0.0.1:$HAPBP_JWT_PORT$BOT" "$HS_TOKEN" "" # PID when started
CORE=(direct sg-none sg-hs256 sg-rs256 sg-apikey haproxy-plain haproxy-jwt)
EXTRA=(sg-apikey-big sg-hs256-log haproxy-jwt-log sg-hs256-rotating) # fixed-concurrency only
# wrk script per target: the report line only, or also a new token per request from the
# 1,024 of hs-tokens.txt (never found in scopegate's per-thread token table).
declare -A SCRIPT
for t in "${!URL[@]}"; do SCRIPT[$t]=$HERE/wrk-report.lua; done
SCRIPT[sg-hs256-rotating]=$HERE/wrk-tokens.lua
export WRK_TOKENS=$POLICY_DIR/hs-tokens.txt
BUSY=(sg-hs256-bp haproxy-jwt-bp)                  # fixed rate only

# Each target must answer 200 before anything is measured; a failure is reported loudly
# (and its errors flagged in the table) rather than silently measured.
log "checking that every target answers 200"
for t in "${CORE[@]}" "${EXTRA[@]}" sg-hs256-bp; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer ${CRED[$t]}" "${URL[$t]}")
    if [[ $code == 200 ]]; then
        printf '  %-14s 200\n' "$t" >&2
    else
        warn "TARGET $t ANSWERS $code, NOT 200: its figures will be flagged as invalid"
    fi
done

# utime+stime (clock ticks) of the given PIDs, all threads included.
cpu_ticks() {
    local total=0 pid stat
    for pid in "$@"; do
        stat=$(<"/proc/$pid/stat")
        stat=${stat##*) } # drop "pid (comm) "; fields then start at 3 (state)
        read -r -a f <<<"$stat"
        total=$((total + f[11] + f[12])) # fields 14 (utime) and 15 (stime)
    done
    echo "$total"
}

# What else ran on the machine during a measurement: all CPU time /proc/stat counts as busy
# (irq and softirq included, as a process's own stime includes them; steal too), less ours
# (this script and the load generators it waited for, the servers), as a percentage of all
# CPUs over the wall time. Noise indicator for the report.
busy_ticks() {
    local _cpu u n s idle iow irq sirq st
    read -r _cpu u n s idle iow irq sirq st _ </proc/stat
    echo $((u + n + s + irq + sirq + st))
}
own_ticks() {
    local stat
    stat=$(<"/proc/$$/stat")
    stat=${stat##*) }
    read -r -a f <<<"$stat" # fields 14-17: utime stime cutime cstime
    echo $((f[11] + f[12] + f[13] + f[14] + $(cpu_ticks "${SERVERS[@]}")))
}
NCPU=$(nproc)
HZ=$(getconf CLK_TCK)
NOISE_START=()
noise_start() { NOISE_START=("$(busy_ticks)" "$(own_ticks)" "$(date +%s%N)"); }
# Prints the foreign CPU share in percent since noise_start.
noise_end() {
    local busy own now
    busy=$(busy_ticks) own=$(own_ticks) now=$(date +%s%N)
    python3 -c 'import sys; b, o, w, n, hz = map(float, sys.argv[1:]); print(round(max(0.0, b - o) / (w / 1e9 * hz * n) * 100, 1))' \
        $((busy - NOISE_START[0])) $((own - NOISE_START[1])) $((now - NOISE_START[2])) "$NCPU" "$HZ"
}

# measure_load TARGET ROUND SECONDS: wrk at fixed concurrency, with the proxy's and the
# upstream's CPU time read just before and just after. Round 0 is a warm-up (not recorded).
measure_load() {
    local t=$1 round=$2 secs=$3 proxy=${PROXY[$1]} p0=0 proxy_ticks=null u0 u1 out noise
    if [[ -n $proxy ]]; then p0=$(cpu_ticks "$proxy"); fi
    u0=$(cpu_ticks "$UP_PID")
    noise_start
    bounded taskset -c "$LOAD_CPU" timeout $((secs + 30)) wrk -t1 -c"$CONNS" -d"${secs}s" \
        -s "${SCRIPT[$t]}" -H "Authorization: Bearer ${CRED[$t]}" "${URL[$t]}" \
        >"$WORK/wrk.out"
    u1=$(cpu_ticks "$UP_PID")
    if [[ -n $proxy ]]; then proxy_ticks=$(($(cpu_ticks "$proxy") - p0)); fi
    noise=$(noise_end)
    if ((round == 0)); then return 0; fi
    out=$(tail -n1 "$WORK/wrk.out")
    printf '{"phase":"load","round":%d,"target":"%s","proxy_ticks":%s,"upstream_ticks":%d,"foreign_cpu_pct":%s,"wrk":%s}\n' \
        "$round" "$t" "$proxy_ticks" $((u1 - u0)) "$noise" "$out" >>"$WORK/raw.jsonl"
    printf '  round %d %-14s other load %5s%%  %s\n' "$round" "$t" "$noise" "$out" >&2
}

# measure_latency TARGET ROUND: p50/p99 at a fixed request rate, and the proxy's CPU time
# per request at that (light) rate.
measure_latency() {
    local t=$1 round=$2 proxy=${PROXY[$1]} p0=0 proxy_ticks=null noise
    if [[ -n $proxy ]]; then p0=$(cpu_ticks "$proxy"); fi
    noise_start
    if [[ $RATE_TOOL == oha ]]; then
        bounded taskset -c "$LOAD_CPU" timeout $((LAT_DURATION + 30)) "$OHA" --no-tui \
            --worker-threads 1 --output-format json -q "$RATE" -z "${LAT_DURATION}s" -c "$LAT_CONNS" \
            --latency-correction --wait-ongoing-requests-after-deadline \
            -H "Authorization: Bearer ${CRED[$t]}" "${URL[$t]}" \
            >"$WORK/latency.out"
    else
        export WRK_PACE_MS=$((LAT_CONNS * 1000 / RATE)) # read by wrk-paced.lua
        bounded taskset -c "$LOAD_CPU" \
            timeout $((LAT_DURATION + 30)) wrk -t1 -c"$LAT_CONNS" -d"${LAT_DURATION}s" \
            -s "$HERE/wrk-paced.lua" -H "Authorization: Bearer ${CRED[$t]}" "${URL[$t]}" \
            >"$WORK/latency.out"
    fi
    if [[ -n $proxy ]]; then proxy_ticks=$(($(cpu_ticks "$proxy") - p0)); fi
    noise=$(noise_end)
    python3 "$HERE/latency.py" "$RATE_TOOL" "$round" "$t" "$RATE" "$proxy_ticks" "$noise" <"$WORK/latency.out" |
        tee -a "$WORK/raw.jsonl" | sed 's/^/  latency /' >&2
}

# measure_busy_haproxy ROUND: starts HAProxy with `busy-polling` (it spins even when idle,
# so it never runs beside another measurement), measures its latency, stops it.
measure_busy_haproxy() {
    local pid
    taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy-busy.cfg" >"$WORK/haproxy-busy.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$HAPBP_PLAIN_PORT/" "$pid"
    PROXY[haproxy-jwt-bp]=$pid
    SERVERS+=("$pid")
    measure_latency haproxy-jwt-bp "$1"
    unset 'SERVERS[-1]'
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------- measure
START=$SECONDS
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "warm-up: 2 s per target (token cache, upstream connection pools)"
for t in "${CORE[@]}" "${EXTRA[@]}"; do measure_load "$t" 0 2; done

ALL=("${CORE[@]}" "${EXTRA[@]}" "${BUSY[@]}")
round_secs=$((${#CORE[@]} * (DURATION + LAT_DURATION + 2) + ${#EXTRA[@]} * (DURATION + 1) \
    + ${#BUSY[@]} * (LAT_DURATION + 2)))
ROUNDS_DONE=0
for ((round = 1; round <= ROUNDS; round++)); do
    if ((SECONDS - START + round_secs > BUDGET_SECONDS)); then
        warn "time budget ($BUDGET_SECONDS s) reached: stopping after $ROUNDS_DONE round(s)"
        break
    fi
    log "round $round of $ROUNDS (about $round_secs s)"
    # Rotate the order each round so no target always runs first or after the same one.
    n=${#ALL[@]}
    for ((i = 0; i < n; i++)); do
        t=${ALL[$(((i + round - 1) % n))]}
        case " ${BUSY[*]} " in
        *" $t "*)
            if [[ $t == haproxy-jwt-bp ]]; then
                measure_busy_haproxy "$round"
            else
                measure_latency "$t" "$round"
            fi
            continue
            ;;
        esac
        measure_load "$t" "$round" "$DURATION"
        if [[ " ${CORE[*]} " == *" $t "* ]]; then measure_latency "$t" "$round"; fi
    done
    ROUNDS_DONE=$round
done

if [[ $PROFILE == 1 ]] && command -v perf >/dev/null; then
    # Software clock sampling: hardware counters are often unavailable in VMs.
    log "profile: perf record (cpu-clock) on scopegate under HS256 load"
    taskset -c "$LOAD_CPU" perf record -e cpu-clock -F 1999 -p "$SG_PID" \
        -o "$WORK/perf-hs256.data" -- sleep "$DURATION" 2>/dev/null &
    perf_pid=$!
    PIDS+=("$perf_pid")
    measure_load sg-hs256 0 "$DURATION"
    wait "$perf_pid" || true
    {
        echo "# by thread and object"
        perf report -i "$WORK/perf-hs256.data" --stdio --sort comm,dso 2>/dev/null | grep -E '^ +[0-9]' | head -12
        echo "# by symbol (self)"
        perf report -i "$WORK/perf-hs256.data" --stdio --sort symbol 2>/dev/null | grep -E '^ +[0-9]' | head -40
    } | sed -E 's/ +$//' >"$WORK/perf-hs256.txt" || true
    log "profile of scopegate under HS256 load: $WORK/perf-hs256.txt"
    head -30 "$WORK/perf-hs256.txt" >&2
fi

log "startup to ready and idle RSS (10,000 apps, 100,000 keys, as JSON and as YAML; and the small policy)"
bounded python3 "$HERE/startup.py" "$SCOPEGATE" "$WORK" "$POLICY_DIR/policy-big.json" \
    "$STARTUP_REPEATS" big-json >"$WORK/startup-big-json.json"
bounded python3 "$HERE/startup.py" "$SCOPEGATE" "$WORK" "$POLICY_DIR/policy-big.yaml" \
    "$STARTUP_REPEATS" big-yaml >"$WORK/startup-big-yaml.json"
bounded python3 "$HERE/startup.py" "$SCOPEGATE" "$WORK" "$POLICY_DIR/policy.yaml" 1 small \
    >"$WORK/startup-small.json"

LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
if [[ $RATE_TOOL == oha ]]; then
    rate_method="by oha (open loop, \`--latency-correction\` for coordinated omission)"
else
    rate_method="by wrk pacing each connection with a Lua delay() (closed loop, no coordinated-omission correction)"
fi
export WORK ROUNDS_DONE CONNS DURATION RATE LAT_DURATION LAT_CONNS PROXY_CPU LOAD_CPU UPSTREAM_CPU rate_method
export RATE_TOOL_VERSION LOADAVG_START LOADAVG_END VERSION
RATE_TOOL_VERSION=$([[ $RATE_TOOL == oha ]] && "$OHA" --version || echo "wrk (paced)")
python3 - <<'EOF'
import json, os, platform, subprocess, time
def first(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip().splitlines()[0]
cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
mem_kib = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
os_name = next((l.split("=", 1)[1].strip().strip('"') for l in open("/etc/os-release")
                if l.startswith("PRETTY_NAME=")), "Linux")
e = os.environ
meta = {
    "date": time.strftime("%Y-%m-%d %H:%M %Z"), "version": e["VERSION"],
    "nproc": os.cpu_count(), "cpu": cpu, "mem": f"{mem_kib / 2**20:.0f} GiB",
    "kernel": platform.release(), "os": os_name,
    "haproxy": first("haproxy -v").split(" - ")[0], "wrk": first("wrk -v 2>&1").split(" [")[0],
    "rate_tool_version": e["RATE_TOOL_VERSION"], "rate_method": e["rate_method"],
    "rounds": int(e["ROUNDS_DONE"]), "conns": int(e["CONNS"]), "duration": int(e["DURATION"]),
    "rate": int(e["RATE"]), "lat_duration": int(e["LAT_DURATION"]), "lat_conns": int(e["LAT_CONNS"]),
    "proxy_cpu": e["PROXY_CPU"], "load_cpu": e["LOAD_CPU"], "upstream_cpu": e["UPSTREAM_CPU"],
    "loadavg": [e["LOADAVG_START"], e["LOADAVG_END"]],
    "startup_policies": {"big-json": "10,002 apps + 100,000 API keys (16 MB JSON)",
                         "big-yaml": "10,002 apps + 100,000 API keys (16 MB YAML)",
                         "small": "2 apps + 100 API keys"},
}
open(os.path.join(e["WORK"], "meta.json"), "w").write(json.dumps(meta))
EOF
python3 "$HERE/report.py" "$WORK" >"$WORK/results.md"
[[ -n $RESULTS_MD ]] && cp "$WORK/results.md" "$RESULTS_MD"
log "report ($WORK/results.md${RESULTS_MD:+, copied to $RESULTS_MD})"
cat "$WORK/results.md"

#!/usr/bin/env bash
# Faults under load (issue 21): the release proxy in front of benches/soak's Python upstream,
# loopback only. Each part starts its own servers and prints a markdown section.
#
#   benches/soak/faults.sh                 # every part, about 5 minutes
#   PART=reloads benches/soak/faults.sh    # one part: reloads | sigterm | redis | trickle |
#                                          # refused_body
#
#   reloads  1,000 policy reloads in a row (a file write, then wait for the new generation,
#            then the next) under the soak mix at RATE req/s: no failed request, every
#            reload counted by /metrics.
#   sigterm  SIGTERM with 20 slow requests (the upstream answers after 2 s) in flight and
#            new connections arriving at 50/s: every request sent before the signal gets its
#            real answer, new connections are refused, /readyz answers 503 while draining,
#            the exit status is 0.
#   redis    a Redis key store (20,000 keys never looked up before, so every lookup goes to
#            Redis) killed at 10 s and restarted at 20 s under 100 req/s (half key-store keys,
#            half HS256): while down, key-store requests get 503 key_store_unavailable (p99
#            latency reported), never 200 or 401, and HS256 keeps answering 200; after
#            the restart, the seconds until key-store requests answer 200 again.
#   trickle  5,000 connections trickling a request head a byte a second
#            (benches/load/slowloris.py; header_read_timeout raised to 60 s so they stay open
#            through the measurement) while the soak mix runs at RATE req/s: p50/p99 with
#            and without them.
#   refused_body  a POST refused (403) before its 2-byte body is read, then a GET on the same
#            keep-alive connection, 200 times (refused_body.py): the GET must be answered, or
#            the 403 must say `Connection: close`.
#
# Settings: PART=all RATE=200 RELOADS=1000 TRICKLE_CONNS=5000 SCOPEGATE_BIN=path WORK=dir.
# Bounded: every load run and poll has a deadline; every process started is stopped on exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PART=${PART:-all}
RATE=${RATE:-200}
RELOADS=${RELOADS:-1000}
TRICKLE_CONNS=${TRICKLE_CONNS:-5000}
WORK=${WORK:-$REPO/target/soak/faults-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$WORK"
log "work directory: $WORK"
prepare_policy_dir
start_upstream
FAILED=0
json() { "$PYTHON" -c "import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))" "$@"; }
check() { # NAME CONDITION(python, over the variables given as JSON files)
    if [[ $2 == True ]]; then echo "- check: $1: ok"; else echo "- check: $1: FAILED"; FAILED=1; fi
}

# proxy NAME [extra config]: a plain-listener proxy; sets PORT, ADMIN, PROXY_PID.
proxy() {
    read -r PORT ADMIN < <(free_ports 2)
    scopegate_config "$1" "$PORT" "$ADMIN" "${2:-}"
    start_proxy "$1"
    wait_http "http://127.0.0.1:$ADMIN/readyz" "$PROXY_PID"
}

# load NAME SECONDS [load.py options]: the soak mix at RATE against PORT, in the background;
# sets LOAD_PID. Its JSON summary goes to $WORK/NAME.json.
load() {
    local name=$1 seconds=$2
    shift 2
    "$PYTHON" "$HERE/load.py" --plain "127.0.0.1:$PORT" --rate "$RATE" --seconds "$seconds" "$@" \
        >"$WORK/$name.json" 2>"$WORK/$name.err" &
    LOAD_PID=$!
    PIDS+=("$LOAD_PID")
}

part_reloads() {
    echo "### $RELOADS reloads in a row under $RATE req/s"
    proxy reloads
    local before after failed
    before=$(metric "$ADMIN" 'scopegate_policy_reloads_total{result="success"}')
    load reloads-load 600
    sleep 1
    local rss0 rss1
    rss0=$(awk '/^VmRSS/ {print $2}' "/proc/$PROXY_PID/status")
    timeout 400 "$PYTHON" "$HERE/reloads.py" "$WORK/policy/policy.yaml" "$ADMIN" "$RELOADS" 300 >"$WORK/reloads.json"
    rss1=$(awk '/^VmRSS/ {print $2}' "/proc/$PROXY_PID/status")
    kill -TERM "$LOAD_PID"
    wait "$LOAD_PID" || true
    after=$(metric "$ADMIN" 'scopegate_policy_reloads_total{result="success"}')
    failed=$(metric "$ADMIN" 'scopegate_policy_reloads_total{result="failure"}')
    local f=$WORK/reloads-load.json r=$WORK/reloads.json
    echo
    echo "- reloads: $(json "$r" 'f"{made} made in {seconds} s ({made / seconds:.1f}/s), {seen} new generations seen, slowest {slowest_ms} ms"'); counted by /metrics: $((after - before)) success, $failed failure"
    echo "- proxy RSS before / after the reloads: $rss0 / $rss1 KiB ($(((rss1 - rss0) * 1024 / RELOADS)) bytes per reload)"
    echo "- load: $(json "$f" 'f"{total} requests ({rate} req/s), {failures} failures, {unexpected} unexpected; p50 / p99 / max {p50_ms} / {p99_ms} / {max_ms} ms"')"
    check "no failed or unexpected request" "$(json "$f" 'failures == 0 and unexpected == 0')"
    check "every reload counted" "$(json "$r" "made == $RELOADS and seen == made and made == $((after - before))")"
    [[ $(json "$f" 'failures + unexpected') == 0 ]] || echo "- samples: $(json "$f" 'failure_samples + unexpected_samples')"
    kill -TERM "$PROXY_PID"
    wait "$PROXY_PID" || true
}

part_sigterm() {
    echo "### SIGTERM under load"
    proxy sigterm
    local pid=$PROXY_PID status=0
    timeout 60 "$PYTHON" "$HERE/drain.py" "$pid" "$PORT" "$ADMIN" 20 >"$WORK/drain.json"
    wait "$pid" || status=$?
    local d=$WORK/drain.json
    echo
    echo "- requests (by kind and whether sent before or after the signal): $(json "$d" 'requests')"
    echo "- answered although sent after the signal (ms after it): $(json "$d" 'answered_after_signal_ms')"
    echo "- /readyz after the signal: $(json "$d" 'readyz_after_signal'); exit status $status"
    check "no request failed or cut" "$(json "$d" 'failures == 0')"
    check "every slow request in flight answered" "$(json "$d" 'requests.get("slow before", {}).get("200 ok") == 20')"
    check "new connections refused" "$(json "$d" 'requests.get("fast after", {}).get("refused", 0) > 0')"
    check "/readyz 503 while draining" "$(json "$d" 'readyz_after_signal.get("503", 0) > 0')"
    check "exit status 0" "$([[ $status == 0 ]] && echo True || echo False)"
    grep -i "drain\|cut\|shutdown" "$WORK/sigterm.log" | tail -n 3 | sed 's/^/    log: /'
}

part_redis() {
    echo "### Redis key store stopped and restarted under load"
    local rport rpid t_kill t_up
    read -r rport < <(free_ports 1)
    mkdir -p "$WORK/redis"
    start_redis() {
        redis-server --port "$rport" --bind 127.0.0.1 --dir "$WORK/redis" --dbfilename dump.rdb \
            --save '' --appendonly no >>"$WORK/redis.log" 2>&1 &
        rpid=$!
        PIDS+=("$rpid")
        for _ in $(seq 500); do redis-cli -p "$rport" ping >/dev/null 2>&1 && return 0; sleep 0.01; done
        echo "redis did not start" >&2
        return 1
    }
    start_redis
    "$PYTHON" "$REPO/benches/load/key_store.py" gen 30000 "$WORK/redis"
    "$BIN" keys import --store "redis://127.0.0.1:$rport/0" "$WORK/redis/import.json" >/dev/null
    redis-cli -p "$rport" save >/dev/null # the restart loads it back
    proxy redis "key_store: redis://127.0.0.1:$rport/0"
    local rate=$RATE
    RATE=100
    load redis-load 40 --mix redis --keys "$WORK/redis/miss.txt" --record "$WORK/redis-requests.txt"
    RATE=$rate
    sleep 10
    t_kill=$(date +%s.%N)
    kill -KILL "$rpid"
    wait "$rpid" 2>/dev/null || true
    sleep 10
    start_redis
    t_up=$(date +%s.%N)
    wait "$LOAD_PID" || true
    "$PYTHON" - "$WORK/redis-requests.txt" "$t_kill" "$t_up" >"$WORK/redis-report.json" <<'EOF'
import json, sys
lines = [l.split() for l in open(sys.argv[1])]
t_kill, t_up = float(sys.argv[2]), float(sys.argv[3])
rows = [(float(t), case, status, code, float(ms)) for t, case, status, code, ms in lines]
def tally(rows):
    out = {}
    for _, case, status, code, _ in rows:
        k = f"{case} {status}" + (f" {code}" if code != "None" else "")
        out[k] = out.get(k, 0) + 1
    return out
down = [r for r in rows if t_kill <= r[0] < t_up]
lat = sorted(r[4] for r in down if r[1] == "key_store" and r[2] == "503")
after = sorted((r for r in rows if r[0] >= t_up and r[1] == "key_store"), key=lambda r: r[0])
# Recovered: from the first key-store request after which every one answered 200.
recovered = None
for i, r in enumerate(after):
    if all(x[2] == "200" for x in after[i:]):
        recovered = round(r[0] - t_up, 2)
        break
print(json.dumps({
    "before": tally([r for r in rows if r[0] < t_kill]), "down": tally(down),
    "after": tally([r for r in rows if r[0] >= t_up]),
    "down_seconds": round(t_up - t_kill, 1),
    "p50_503_ms": lat[len(lat) // 2] if lat else None,
    "p99_503_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None,
    "bad_while_down": sum(1 for r in down if r[1] == "key_store" and r[2] in ("200", "401")),
    "recovered_after_s": recovered,
}))
EOF
    local f=$WORK/redis-load.json r=$WORK/redis-report.json
    echo
    echo "- before the kill: $(json "$r" 'before')"
    echo "- Redis down ($(json "$r" 'down_seconds') s): $(json "$r" 'down'); key-store 503s p50 / p99 $(json "$r" 'p50_503_ms') / $(json "$r" 'p99_503_ms') ms"
    echo "- after the restart: $(json "$r" 'after'); key-store requests all 200 from $(json "$r" 'recovered_after_s') s after Redis was up again"
    echo "- load: $(json "$f" 'f"{total} requests, {failures} failures, {unexpected} unexpected (HS256 not 200, or a key-store answer neither 200 nor 503 key_store_unavailable)"')"
    check "no failed or unexpected request" "$(json "$f" 'failures == 0 and unexpected == 0')"
    check "never 200 or 401 for a key-store key while Redis is down" "$(json "$r" 'bad_while_down == 0')"
    check "recovered after the restart" "$(json "$r" 'recovered_after_s is not None')"
    [[ $(json "$f" 'failures + unexpected') == 0 ]] || echo "- samples: $(json "$f" 'failure_samples + unexpected_samples')"
    kill -TERM "$PROXY_PID"
    wait "$PROXY_PID" || true
}

part_trickle() {
    echo "### $TRICKLE_CONNS trickling connections under $RATE req/s"
    proxy trickle "limits: { header_read_timeout: 60s }"
    load trickle-warmup 5 # token cache, upstream pool: the first run does not pay for them
    wait "$LOAD_PID"
    load trickle-without 20
    wait "$LOAD_PID"
    timeout 120 "$PYTHON" "$REPO/benches/load/slowloris.py" --pid "$PROXY_PID" --addr "127.0.0.1:$PORT" \
        --conns "$TRICKLE_CONNS" --seconds 40 --probe-path /open >"$WORK/slowloris.txt" 2>&1 &
    local slow=$!
    PIDS+=("$slow")
    sleep 10 # the trickling connections open over the first 5 s
    load trickle-with 20
    wait "$LOAD_PID"
    wait "$slow" || true
    local row='f"{total} requests, {failures} failures, {unexpected} unexpected; p50 / p99 / max {p50_ms} / {p99_ms} / {max_ms} ms"'
    echo
    echo "- without: $(json "$WORK/trickle-without.json" "$row")"
    echo "- with the trickle: $(json "$WORK/trickle-with.json" "$row")"
    echo "- trickle: $(grep '^summary' "$WORK/slowloris.txt" | cut -d' ' -f2-)"
    echo "- last sample, still trickling: $(grep '^t=' "$WORK/slowloris.txt" | tail -n 1)"
    check "no failed or unexpected request" "$(json "$WORK/trickle-with.json" 'failures == 0 and unexpected == 0')"
    check "every trickling connection open" "$(grep -q "opened=$TRICKLE_CONNS " "$WORK/slowloris.txt" && echo True || echo False)"
    kill -TERM "$PROXY_PID"
    wait "$PROXY_PID" || true
}

part_refused_body() {
    echo "### A request refused before its body is read, then another on its connection"
    echo
    proxy refused-body
    "$PYTHON" "$HERE/refused_body.py" "$PORT" 200 | tee "$WORK/refused-body.txt" | sed 's/^/- /'
    check "the connection stays usable, or the refusal says Connection: close" \
        "$(awk '/2-byte/ { print ($16 == 0 || $21 == 200) ? "True" : "False" }' "$WORK/refused-body.txt")"
    kill -TERM "$PROXY_PID"
    wait "$PROXY_PID" || true
}

echo "## Faults ($(date -u '+%Y-%m-%d %H:%M UTC'), $("$BIN" --version), $(nproc) CPUs, load average $(cut -d' ' -f1 /proc/loadavg))"
echo
for p in reloads sigterm redis trickle refused_body; do
    if [[ $PART == all || $PART == "$p" ]]; then
        log "part $p"
        "part_$p"
        echo
    fi
done
exit "$FAILED"

#!/usr/bin/env bash
# TLS audit of the public listener with testssl.sh (Debian package `testssl.sh`), loopback only.
#
#   benches/tls/testssl.sh            # builds target/debug/scopegate if missing; ~2-4 minutes
#
# Starts `scopegate run` twice with the test PKI (tests/fixtures/tls, test-only keys): once with
# TLS alone, once with `client_ca_file` (mTLS). For each it runs testssl.sh's protocol and
# cipher-category checks against 127.0.0.1 and requires: no SSLv2, SSLv3, TLS 1.0 or TLS 1.1
# offered; no NULL, anonymous, export, LOW, 3DES/IDEA or obsoleted CBC cipher offered. With mTLS
# it also checks, with curl and openssl s_client, that a missing and a wrong client certificate
# (a self-signed one, made here) are refused and that the right one is answered.
# Not part of CI (testssl is slow). Exit status 0 when every check holds.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
bin=${SCOPEGATE_BIN:-$repo/target/debug/scopegate}
tls=$repo/tests/fixtures/tls
command -v testssl >/dev/null || { echo "testssl missing: apt-get install testssl.sh" >&2; exit 2; }
[ -x "$bin" ] || cargo build --quiet --bin scopegate

work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
failures=0
check() { # check DESCRIPTION COMMAND...: runs COMMAND, prints PASS/FAIL
  local what=$1; shift
  if "$@"; then echo "PASS  $what"; else echo "FAIL  $what"; failures=$((failures + 1)); fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cat > "$work/policy.yaml" <<'EOF'
version: 1
routes:
  - { id: public, methods: ["*"], path: "/public/{*rest}", auth: [none] }
EOF

start() { # start [mtls]: writes the config, starts the proxy, waits until it accepts
  port=$(free_port)
  {
    echo "listen: 127.0.0.1:$port"
    echo "admin_listen: 127.0.0.1:0"
    echo "policy_file: policy.yaml"
    echo "upstreams: { default: http://127.0.0.1:9 }"
    echo "tls:"
    echo "  cert_file: $tls/server.crt.pem"
    echo "  key_file: $tls/server.key.pem"
    [ "${1:-}" = mtls ] && echo "  client_ca_file: $tls/ca.crt.pem"
    echo "log: { format: text, level: warn }"
  } > "$work/scopegate.yaml"
  "$bin" run --config "$work/scopegate.yaml" > "$work/proxy.log" 2>&1 &
  pid=$!
  for _ in $(seq 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "the proxy did not start:" >&2; cat "$work/proxy.log" >&2; exit 1
}

stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

# finding ID: testssl's verdict for one check id from its JSON output.
finding() { python3 - "$1" "$2" <<'EOF'
import json, sys
for f in json.load(open(sys.argv[1])):
    if f["id"] == sys.argv[2]:
        print(f["finding"])
        break
else:
    print("(not reported)")
EOF
}

audit() { # audit LABEL: testssl against the running proxy, then the checks on its JSON
  local label=$1 json=$work/testssl-$1.json
  echo "== testssl.sh, $label, 127.0.0.1:$port"
  # -p protocols, -s standard cipher categories, -P server preference; bounded timeouts.
  timeout 600 testssl --quiet --color 0 --warnings off --openssl-timeout 5 \
    --connect-timeout 5 -p -s -P --jsonfile "$json" "127.0.0.1:$port" > "$work/testssl-$label.txt" 2>&1 || true
  grep -E '^ (SSLv|TLS |NPN|ALPN|NULL|Anonymous|Export|LOW|Triple|Obsolet|Strong|Negotiated|Cipher order|Has server)' \
    "$work/testssl-$label.txt" | sed 's/^/   /' || true
  for id in SSLv2 SSLv3 TLS1 TLS1_1; do
    check "$label: $id not offered ($(finding "$json" $id))" bash -c "f=\$(finding '$json' '$id'); [[ \$f == 'not offered'* ]]"
  done
  for id in cipherlist_NULL cipherlist_aNULL cipherlist_EXPORT cipherlist_LOW cipherlist_3DES_IDEA cipherlist_AVERAGE; do
    check "$label: $id not offered ($(finding "$json" $id))" bash -c "f=\$(finding '$json' '$id'); [[ \$f == 'not offered'* ]]"
  done
  check "$label: TLS 1.2 or 1.3 offered ($(finding "$json" TLS1_2) / $(finding "$json" TLS1_3))" \
    bash -c "f=\$(finding '$json' TLS1_2)\$(finding '$json' TLS1_3); [[ \$f == *offered* && \$f != 'not offered'*'not offered'* ]]"
}
export -f finding

start
audit tls
stop

# A client certificate from a CA the proxy does not trust.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=not trusted" -keyout "$work/wrong.key" -out "$work/wrong.crt" 2>/dev/null

start mtls
audit mtls
url=https://127.0.0.1:$port/public/x
curl_code() { curl -sS -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$tls/ca.crt.pem" "$@" "$url" 2>/dev/null || true; }
check "mTLS, curl without a client certificate: refused (HTTP code '$(curl_code)')" \
  bash -c "[ \"\$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 --cacert '$tls/ca.crt.pem' '$url' 2>/dev/null)\" = 000 ]"
check "mTLS, curl with a wrong client certificate: refused (HTTP code '$(curl_code --cert "$work/wrong.crt" --key "$work/wrong.key")')" \
  bash -c "[ \"\$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 --cacert '$tls/ca.crt.pem' --cert '$work/wrong.crt' --key '$work/wrong.key' '$url' 2>/dev/null)\" = 000 ]"
check "mTLS, curl with the right client certificate: answered (HTTP code '$(curl_code --cert "$tls/client.crt.pem" --key "$tls/client.key.pem")')" \
  bash -c "[ \"\$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 --cacert '$tls/ca.crt.pem' --cert '$tls/client.crt.pem' --key '$tls/client.key.pem' '$url' 2>/dev/null)\" != 000 ]"
s_client() { # s_client VERSION [cert key]: prints what a bare HTTP/1.0 request got back
  local version=$1; shift
  local certargs=()
  [ $# -eq 2 ] && certargs=(-cert "$1" -key "$2")
  printf 'GET /public/x HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' |
    timeout 10 openssl s_client -connect "127.0.0.1:$port" "$version" -CAfile "$tls/ca.crt.pem" \
      -servername localhost -ign_eof "${certargs[@]}" 2>&1 || true
}
for version in -tls1_2 -tls1_3; do
  out=$(s_client $version)
  check "mTLS, openssl s_client $version without a client certificate: refused ($(grep -o 'alert [a-z ]*[a-z]' <<<"$out" | head -1))" \
    bash -c '! grep -q "^HTTP/1" <<<"$1" && grep -q "alert" <<<"$1"' _ "$out"
  out=$(s_client $version "$work/wrong.crt" "$work/wrong.key")
  check "mTLS, openssl s_client $version with a wrong client certificate: refused ($(grep -o 'alert [a-z ]*[a-z]' <<<"$out" | head -1))" \
    bash -c '! grep -q "^HTTP/1" <<<"$1" && grep -q "alert" <<<"$1"' _ "$out"
  out=$(s_client $version "$tls/client.crt.pem" "$tls/client.key.pem")
  check "mTLS, openssl s_client $version with the right client certificate: answered ($(grep -m1 '^HTTP/1' <<<"$out" | tr -d '\r' || echo 'no answer'))" \
    bash -c 'grep -q "^HTTP/1" <<<"$1"' _ "$out"
done
stop

echo "== $failures check(s) failed, ${SECONDS} s"
[ "$failures" -eq 0 ]

#!/usr/bin/env bash
# Runs the whole test suite. Installs what the tests need when it is missing:
# redis-server and nginx (Debian packages; the Redis and nginx auth_request tests start their
# own instances on free ports), ca-certificates (system roots for TLS upstreams)
# Python joserfc + cryptography (the independent JOSE implementation tokens and JWEs
# are checked against); Python h2, pinned (tests/conformance/h2spec.py, the HTTP/2
# conformance cases); and, pinned, helm-python-sdk (Helm v4's Go SDK as a library: no helm
# binary exists in Debian), kubernetes-validate (offline Kubernetes API schemas) and
# promql-parser (the alert rules' PromQL) for the Helm chart test. The Wycheproof test reads
# ../shared/vectors/wycheproof. The container image is built and smoke-tested
# (deploy/image/build.sh) where podman is installed (this script does not install it),
# except in CI, where its release build is too slow, unless SCOPEGATE_IMAGE_TEST=1.
set -euo pipefail
cd "$(dirname "$0")/.."
HELM_PYTHON_SDK=0.2.2
KUBERNETES_VALIDATE=1.37.0
PROMQL_PARSER=0.11.0

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
# The system's root certificates (an upstream without ca_file is verified against them).
[ -e /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing from Debian: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]} (sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
if ! python3 -c "import joserfc, cryptography" >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check joserfc cryptography
fi
H2_VERSION=4.3.0
if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('h2') != '$H2_VERSION')" >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check "h2==$H2_VERSION"
fi

if [ "$(python3 -c 'import helm_python as h, kubernetes_validate as k; from importlib.metadata import version
print(h.helm_c_version(), k.__version__, version("promql-parser"))' 2>/dev/null)" \
     != "$HELM_PYTHON_SDK $KUBERNETES_VALIDATE $PROMQL_PARSER" ]; then
  python3 -m pip install --quiet --disable-pip-version-check "helm-python-sdk==$HELM_PYTHON_SDK" \
    "kubernetes-validate==$KUBERNETES_VALIDATE" "promql-parser==$PROMQL_PARSER"
fi

python3 tests/interop/test_jose_tool.py 2>&1 | tail -n 3
cargo build --locked
# Quiet when they pass, everything when they fail.
quiet() { local out; out=$("$@" 2>&1) || { echo "$out"; return 1; }; echo "$out" | tail -n "$TAIL"; }
TAIL=4 SCOPEGATE_BIN="${CARGO_TARGET_DIR:-target}/debug/scopegate" quiet python3 tests/deploy/test_chart.py
if [ "${SCOPEGATE_IMAGE_TEST:-}" = 0 ]; then
  echo "image test skipped: SCOPEGATE_IMAGE_TEST=0"
elif [ "${CI:-}" = true ] && [ "${SCOPEGATE_IMAGE_TEST:-}" != 1 ]; then
  echo "image test skipped in CI: its static release build takes ~15 min on 2 cores (SCOPEGATE_IMAGE_TEST=1 runs it)"
elif ! command -v podman >/dev/null 2>&1; then
  echo "image test skipped: podman is not installed (apt-get install podman to run deploy/image/build.sh)"
else
  TAIL=9 quiet deploy/image/build.sh
fi
cargo test --locked "$@"

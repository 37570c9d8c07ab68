#!/usr/bin/env bash
# Runs the whole test suite. Says what it installs, and installs what the tests need when it
# is missing: redis-server, redis-tools and nginx (Debian packages; the Redis and nginx
# auth_request tests start their own instances on free ports; redis-cli makes the key store's
# Redis Cluster), ca-certificates (system roots for TLS upstreams) and python3-venv; into a
# project-local virtual environment (.venv, ignored by git), Python joserfc + cryptography
# (the independent JOSE implementation tokens and JWEs
# are checked against); Python h2, pinned (tests/conformance/h2spec.py, the HTTP/2
# conformance cases); and, pinned, helm-python-sdk (Helm v4's Go SDK as a library: no helm
# binary exists in Debian), kubernetes-validate (offline Kubernetes API schemas) and
# promql-parser (the alert rules' PromQL) for the Helm chart test; and, pinned, jsonschema and
# PyYAML (an independent JSON Schema validator: tests/schema/validate.py checks the examples
# against policies/schema/). The Wycheproof test reads ../shared/vectors/wycheproof. The fuzz
# smoke installs cargo-fuzz (pinned, with cargo install) when it is missing and runs every fuzz
# target for a few seconds on the stable toolchain (fuzz/README.md; SCOPEGATE_FUZZ_SMOKE=0
# skips it). The container image is built and smoke-tested
# (deploy/image/build.sh) where podman is installed (this script does not install it),
# except in CI, where its release build is too slow, unless SCOPEGATE_IMAGE_TEST=1.
set -euo pipefail
cd "$(dirname "$0")/.."
# Pinned: a newer joserfc refuses some keys our attack tests build on purpose (1.8.0 will not
# use a PEM public key as an HS256 secret), so versions change only with the tests.
JOSERFC=1.6.5
CRYPTOGRAPHY=48.0.0
HELM_PYTHON_SDK=0.2.2
KUBERNETES_VALIDATE=1.37.0
PROMQL_PARSER=0.11.0

PYTHON_PACKAGES=("joserfc==$JOSERFC" "cryptography==$CRYPTOGRAPHY" "h2==4.3.0" "helm-python-sdk==$HELM_PYTHON_SDK"
  "kubernetes-validate==$KUBERNETES_VALIDATE" "promql-parser==$PROMQL_PARSER"
  "jsonschema==4.26.0" "PyYAML==6.0.4")
VENV=.venv

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# The system's root certificates (an upstream without ca_file is verified against them).
[ -e /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "test.sh: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "test.sh: missing Debian packages: ${missing[*]} (sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

# Python packages live in a project-local virtual environment (.venv, ignored by git), never
# in the system interpreter; the tests find them because its bin/ comes first on PATH.
if [ ! -x "$VENV/bin/python3" ]; then
  echo "test.sh: creating the Python virtual environment $VENV"
  python3 -m venv "$VENV"
fi
export PATH="$PWD/$VENV/bin:$PATH"
if ! python3 - "${PYTHON_PACKAGES[@]}" <<'PY' >/dev/null 2>&1
import sys, importlib.metadata as m
for spec in sys.argv[1:]:
    name, _, version = spec.partition("==")
    if version and m.version(name) != version or not version and not m.version(name):
        sys.exit(1)
PY
then
  echo "test.sh: installing into $VENV: ${PYTHON_PACKAGES[*]}"
  python3 -m pip install --quiet --disable-pip-version-check "${PYTHON_PACKAGES[@]}"
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

# Fuzz smoke: every target for a few seconds from its committed seeds (tests/fuzz_corpus.rs
# above already replayed each seed on stable; this runs the libFuzzer binaries themselves).
CARGO_FUZZ=0.13.2
if [ "${SCOPEGATE_FUZZ_SMOKE:-}" = 0 ]; then
  echo "fuzz smoke skipped: SCOPEGATE_FUZZ_SMOKE=0"
else
  if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ" ]; then
    echo "test.sh: installing cargo-fuzz $CARGO_FUZZ"
    cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ"
  fi
  FUZZ_BUILD=dev fuzz/run-all.sh -t 2
fi

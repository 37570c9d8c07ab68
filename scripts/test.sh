#!/usr/bin/env bash
# Runs the whole test suite. Installs what the tests need when it is missing:
# redis-server (Debian package; the Redis tests start their own instance on a free port)
# Python joserfc + cryptography (the independent JOSE implementation tokens and JWEs
# are checked against), and, pinned, helm-python-sdk (Helm v4's Go SDK as a library: no helm
# binary exists in Debian) and kubernetes-validate (offline Kubernetes API schemas) for the
# Helm chart test.
set -euo pipefail
cd "$(dirname "$0")/.."
HELM_PYTHON_SDK=0.2.2
KUBERNETES_VALIDATE=1.37.0

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server is missing: sudo apt-get install redis-server" >&2
    exit 1
  fi
fi
if ! python3 -c "import joserfc, cryptography" >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check joserfc cryptography
fi

if [ "$(python3 -c 'import helm_python as h, kubernetes_validate as k; print(h.helm_c_version(), k.__version__)' 2>/dev/null)" \
     != "$HELM_PYTHON_SDK $KUBERNETES_VALIDATE" ]; then
  python3 -m pip install --quiet --disable-pip-version-check \
    "helm-python-sdk==$HELM_PYTHON_SDK" "kubernetes-validate==$KUBERNETES_VALIDATE"
fi

python3 tests/interop/test_jose_tool.py 2>&1 | tail -n 3
cargo build --locked
SCOPEGATE_BIN=target/debug/scopegate python3 tests/deploy/test_chart.py 2>&1 | tail -n 4
cargo test --locked "$@"

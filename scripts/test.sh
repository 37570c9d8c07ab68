#!/usr/bin/env bash
# Runs the whole test suite. Installs what the tests need when it is missing:
# redis-server (Debian package; the Redis tests start their own instance on a free port)
# Python joserfc + cryptography (the independent JOSE implementation tokens and JWEs
# are checked against) and Python h2, pinned (tests/conformance/h2spec.py, the HTTP/2
# conformance cases). The Wycheproof test reads ../shared/vectors/wycheproof.
set -euo pipefail
cd "$(dirname "$0")/.."

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
H2_VERSION=4.3.0
if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('h2') != '$H2_VERSION')" >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check "h2==$H2_VERSION"
fi

python3 tests/interop/test_jose_tool.py 2>&1 | tail -n 3
cargo test --locked "$@"

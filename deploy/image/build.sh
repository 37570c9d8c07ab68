#!/usr/bin/env bash
# Builds scopegate's container image and smoke-tests what it carries.
#
#   deploy/image/build.sh            static release binary -> FROM scratch image -> smoke test
#
# 1. A static binary: glibc with crt-static (the musl target cannot be installed offline), so
#    jemalloc and aws-lc-rs are linked in; `file` must say static(-pie) and `ldd` list nothing.
# 2. `podman build` (daemonless, Debian's podman/buildah; vfs storage works without fuse or
#    overlay) of deploy/image/Containerfile, tagged scopegate:<Cargo version>.
# 3. The smoke test runs exactly the image's filesystem: `podman image mount` gives its root,
#    which is copied, given a config and policy where the chart mounts them, and run with
#    `chroot --userspec=65532:65532` (where `podman run` is refused, as in this project's
#    sandbox, which forbids crun's setrlimit). It waits for /readyz, sends one request the
#    policy allows (200 from a local upstream) and one it refuses (401), and checks the image
#    has no shell, runs as 65532:65532 and holds the CA bundle. Where `podman run` works, the
#    same requests are also sent to a container started by `podman run`.
# 4. Prints the image size; fails above 20 MB.
#
# Environment: PODMAN_STORAGE_DRIVER (default vfs), CARGO_TARGET_DIR (default target),
# SCOPEGATE_IMAGE (default scopegate:<version>).
set -euo pipefail
cd "$(dirname "$0")/../.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
image=${SCOPEGATE_IMAGE:-scopegate:$version}
target_dir=${CARGO_TARGET_DIR:-target}
triple=x86_64-unknown-linux-gnu
max_bytes=$((20 * 1000 * 1000))
podman=(podman --storage-driver "${PODMAN_STORAGE_DRIVER:-vfs}")

for tool in podman chroot curl file python3; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool is required" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
mounted=""
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -n "$mounted" ] && "${podman[@]}" image unmount "$image" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== static release binary ($triple, crt-static)"
# getrandom's default Linux backend finds glibc's getrandom() with dlsym, which a static
# binary cannot do, and then falls back to reading /dev/urandom; name the syscall instead.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" \
  cargo build --locked --release --target "$triple" --bin scopegate
binary="$target_dir/$triple/release/scopegate"
file "$binary"
file "$binary" | grep -Eq "static-pie linked|statically linked" &&
  ! ldd "$binary" 2>&1 | grep -q "=>" || {
  echo "build.sh: $binary is not statically linked:" >&2; ldd "$binary" >&2 || true; exit 1; }

echo "== build context"
ctx="$work/context"
mkdir -p "$ctx"
cp "$binary" "$ctx/scopegate"
strip "$ctx/scopegate"
cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' > "$ctx/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$ctx/group"
ls -l "$ctx"

echo "== podman build -t $image"
"${podman[@]}" build --quiet --build-arg "VERSION=$version" -t "$image" -f deploy/image/Containerfile "$ctx"

echo "== what the image carries"
user=$("${podman[@]}" image inspect --format '{{.Config.User}}' "$image")
[ "$user" = "65532:65532" ] || { echo "build.sh: image user is '$user', not 65532:65532" >&2; exit 1; }
mnt=$("${podman[@]}" image mount "$image")
mounted=yes
root="$work/rootfs"
cp -a "$mnt" "$root"
"${podman[@]}" image unmount "$image" >/dev/null
mounted=""
(cd "$root" && find . -mindepth 1 | sort)
for shell in bin/sh bin/bash bin/busybox usr/bin/sh; do
  [ ! -e "$root/$shell" ] || { echo "build.sh: the image has /$shell" >&2; exit 1; }
done
[ -s "$root/etc/ssl/certs/ca-certificates.crt" ] || { echo "build.sh: no CA bundle" >&2; exit 1; }

echo "== smoke test: chroot --userspec=65532:65532 <image root> /scopegate run"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(free_port); admin_port=$(free_port); upstream_port=$(free_port)
python3 -m http.server --bind 127.0.0.1 "$upstream_port" --directory "$work" >/dev/null 2>&1 &
pids+=($!)
mkdir -p "$work/upstream/v1" && echo '{"bots":["st-1234"]}' > "$work/upstream/v1/bots"
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$upstream_port/upstream/v1/bots" >/dev/null 2>&1 && break
  sleep 0.1
done
key_line=$(chroot --userspec=65532:65532 "$root" /scopegate key new --prefix sk_live_)
key=$(echo "$key_line" | awk '/^key/ {print $NF}')
sha=$(echo "$key_line" | awk '/sha256/ {print $NF}')
[ -n "$key" ] && [ -n "$sha" ] || { echo "build.sh: unexpected 'key new' output: $key_line" >&2; exit 1; }
# The kubelet mounts /etc/hosts and /etc/resolv.conf into every container; so does this test,
# and the upstream is reached by a name, so the static binary's resolver (glibc's, linked in)
# is exercised too.
{ cat /etc/hosts; echo "127.0.0.1 upstream.smoke.test"; } > "$root/etc/hosts"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
# Every OCI runtime also gives a container /dev/null, /dev/urandom and friends; this root has
# no /dev at all, which the binary does not need (randomness comes from the getrandom syscall).
mkdir -p "$root/etc/scopegate/config" "$root/etc/scopegate/policy"
cat > "$root/etc/scopegate/config/scopegate.yaml" <<EOF
listen: 127.0.0.1:$http_port
admin_listen: 127.0.0.1:$admin_port
policy_file: /etc/scopegate/policy/policy.yaml
upstreams:
  default: http://upstream.smoke.test:$upstream_port/upstream
limits: { drain_timeout: 5s }
EOF
cat > "$root/etc/scopegate/policy/policy.yaml" <<EOF
version: 1
scopes:
  bots:read: View bots
routes:
  - { id: bots-list, methods: [GET], path: /v1/bots, auth: [api_key], scopes: [bots:read] }
api_keys:
  - { id: smoke, sha256: $sha, scopes: [bots:read] }
EOF
chroot --userspec=65532:65532 "$root" /scopegate check --config /etc/scopegate/config/scopegate.yaml
chroot --userspec=65532:65532 "$root" /scopegate run --config /etc/scopegate/config/scopegate.yaml \
  >"$work/access.log" 2>"$work/scopegate.log" &
proxy=$!
pids+=($proxy)
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break
  kill -0 "$proxy" 2>/dev/null || { cat "$work/scopegate.log" >&2; exit 1; }
  sleep 0.1
done
echo "readyz: $(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin_port/readyz")"
uid=$(ps -o uid= -p "$proxy" | tr -d ' ')
echo "scopegate runs as uid $uid"
[ "$uid" = 65532 ] || { echo "build.sh: scopegate runs as uid $uid, not 65532" >&2; exit 1; }

request() {  # expected status, then curl arguments
  local want=$1; shift
  local got
  got=$(curl -sS -o "$work/body" -w '%{http_code}' "$@" || true)
  echo "GET /v1/bots $(echo "$*" | sed "s/$key/<key>/"): $got $(head -c 200 "$work/body")"
  [ "$got" = "$want" ] || { echo "build.sh: expected $want" >&2; cat "$work/scopegate.log" "$work/access.log" >&2; exit 1; }
}
request 200 -H "Authorization: Bearer $key" "http://127.0.0.1:$http_port/v1/bots"
request 401 "http://127.0.0.1:$http_port/v1/bots"
grep -q '"code":"missing_credentials"' "$work/body"
kill -TERM "$proxy"
wait "$proxy" && echo "SIGTERM: drained, exit 0" || { echo "build.sh: exit $? after SIGTERM" >&2; exit 1; }
grep -c '"route":"bots-list"' "$work/access.log" | sed 's/^/access-log lines for bots-list: /'

echo "== podman run"
if "${podman[@]}" run --rm "$image" --version >"$work/run.out" 2>&1; then
  cat "$work/run.out"
  # The same config and policy, mounted where the chart mounts them; host network so the
  # upstream and the ports above are the same.
  cid=$("${podman[@]}" run -d --network host --add-host upstream.smoke.test:127.0.0.1 \
    -v "$root/etc/scopegate:/etc/scopegate:ro" "$image")
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  request 200 -H "Authorization: Bearer $key" "http://127.0.0.1:$http_port/v1/bots"
  request 401 "http://127.0.0.1:$http_port/v1/bots"
  "${podman[@]}" stop --time 10 "$cid" >/dev/null
  status=$("${podman[@]}" wait "$cid")
  "${podman[@]}" rm "$cid" >/dev/null
  [ "$status" = 0 ] || { echo "build.sh: the container exited $status after SIGTERM" >&2; exit 1; }
  echo "podman run: 200 and 401 as above, SIGTERM: exit 0"
else
  echo "podman run is not possible on this machine ($(tail -n 1 "$work/run.out")); the chroot smoke test stands in for it"
fi

size=$("${podman[@]}" image inspect --format '{{.Size}}' "$image")
echo "== image $image: $size bytes ($((size / 1000 / 1000)) MB; binary $(stat -c %s "$ctx/scopegate") bytes)"
[ "$size" -le "$max_bytes" ] || { echo "build.sh: image over 20 MB" >&2; exit 1; }

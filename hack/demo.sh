#!/usr/bin/env bash
# make demo: export a container's writable layer at stop, restore it into a
# new container, and show that the changes survived. Root; Debian/Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "make demo needs root (it runs podman and mounts overlays)" >&2; exit 1; }

# Go first: building is the first step, and "go: not found" explains nothing.
want_go=$(sed -n 's/^go \([0-9]*\.[0-9]*\).*/\1/p' go.mod)
GO=${GO:-go}
if ! command -v "$GO" >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; fi
if ! command -v "$GO" >/dev/null 2>&1; then
  echo "make demo builds ocisnap, which needs Go $want_go or newer, and there is no 'go' in PATH or /usr/local/go/bin." >&2
  echo "Install it from https://go.dev/dl/ (Debian's golang-go is older):" >&2
  echo "  curl -fsSL https://go.dev/dl/go$want_go.0.linux-amd64.tar.gz | tar -C /usr/local -xz" >&2
  echo "then run make demo again (it finds /usr/local/go/bin/go)." >&2
  exit 1
fi
have_go=$("$GO" env GOVERSION 2>/dev/null | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$want_go" "$have_go" | sort -V | head -1)" != "$want_go" ]; then
  echo "make demo needs Go $want_go or newer to build ocisnap; $GO is $have_go. Install a newer one from https://go.dev/dl/ into /usr/local/go." >&2
  exit 1
fi
export PATH=$(dirname "$(command -v "$GO")"):$PATH
hack/deps.sh demo

# Colours only on a terminal.
if [ -t 1 ]; then bold=$'\033[1m' off=$'\033[0m'; else bold= off=; fi

T=$(mktemp -d /tmp/ocisnap-demo.XXXXXX)
# Only what the demo creates is removed at the end: a directory of its own
# inside the snapshot directory, and the snapshot directory itself only if
# the demo made it (and it is empty again).
made_snaproot=false
[ -d /var/lib/ocisnap ] || { mkdir -p -m 0700 /var/lib/ocisnap; made_snaproot=true; }
SNAPDIR=$(mktemp -d /var/lib/ocisnap/demo.XXXXXX)
PODMAN="podman --root $T/storage --runroot $T/run --storage-driver overlay --runtime runc --cgroup-manager cgroupfs --events-backend file --hooks-dir $T/prefix/share/containers/oci/hooks.d"
cleanup() {
  $PODMAN rm -af -t 0 >/dev/null 2>&1 || true
  $PODMAN system reset -f >/dev/null 2>&1 || true
  umount -R "$T/storage" 2>/dev/null || true
  rm -rf --one-file-system "$T" "$SNAPDIR"
  if $made_snaproot; then rmdir /var/lib/ocisnap 2>/dev/null || true; fi
}
trap cleanup EXIT
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$off"; }

step "build and install into a temporary prefix ($T/prefix)"
make -s build
make -s install PREFIX="$T/prefix" >/dev/null
cat > "$T/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$T/tmp"
CONF
export CONTAINERS_CONF=$T/containers.conf

step "build a local busybox image (no registry)"
r=$T/img; mkdir -p $r/bin $r/etc $r/data $r/proc $r/sys $r/dev $r/tmp $r/run
cp "$(command -v busybox)" $r/bin/busybox
for c in sh ls cat echo rm mkdir find sort; do ln -s busybox $r/bin/$c; done
echo "from the image" > $r/etc/motd
echo "delete me" > $r/data/old.txt
tar -C $r -cf $T/img.tar . && $PODMAN import -q $T/img.tar localhost/demo:latest >/dev/null

SNAP=$SNAPDIR/demo.tar

step "container 1 (io.ocisnap.export=$SNAP): write, change and delete files"
$PODMAN run --rm --network=none --annotation io.ocisnap.export=$SNAP localhost/demo \
  sh -c 'echo "hello from container 1" > /data/new.txt; echo "changed" > /etc/motd; rm /data/old.txt; mkdir -p /work && echo notes > /work/notes'
echo "snapshot written at stop:"; ls -l $SNAP
echo "its changes (ocisnap diff, like podman diff: A added, C changed, D deleted):"
"$T/prefix/bin/ocisnap" diff --base "$r" $SNAP | sed 's/^/    /'

step "container 2 (io.ocisnap.restore=$SNAP): the changes survived"
$PODMAN run --rm --network=none --annotation io.ocisnap.restore=$SNAP localhost/demo \
  sh -c 'for f in /data/new.txt /etc/motd /work/notes; do echo "$f: $(cat $f)"; done; ls /data/old.txt 2>&1 || true'

step "container 3 (no annotation): a fresh container from the image"
$PODMAN run --rm --network=none localhost/demo sh -c 'echo "/etc/motd: $(cat /etc/motd)"; ls /data'
echo; echo "demo OK"

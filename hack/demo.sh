#!/usr/bin/env bash
# make demo: export a container's writable layer at stop, restore it into a
# new container, and show that the changes survived. Root; Debian/Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "make demo needs root (it runs podman and mounts overlays)" >&2; exit 1; }

T=$(mktemp -d /tmp/ocisnap-demo.XXXXXX)
SNAPDIR=/var/lib/ocisnap/demo
PODMAN="podman --root $T/storage --runroot $T/run --storage-driver overlay --runtime runc --cgroup-manager cgroupfs --events-backend file --hooks-dir $T/prefix/share/containers/oci/hooks.d"
cleanup() {
  $PODMAN rm -af -t 0 >/dev/null 2>&1 || true
  $PODMAN system reset -f >/dev/null 2>&1 || true
  umount -R "$T/storage" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

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

mkdir -p -m 0700 /var/lib/ocisnap; mkdir -p -m 0700 $SNAPDIR
SNAP=$SNAPDIR/demo.tar
rm -f $SNAP

step "container 1 (io.ocisnap.export=$SNAP): write, change and delete files"
$PODMAN run --rm --network=none --annotation io.ocisnap.export=$SNAP localhost/demo \
  sh -c 'echo "hello from container 1" > /data/new.txt; echo "changed" > /etc/motd; rm /data/old.txt; mkdir -p /work && echo notes > /work/notes'
echo "snapshot written at stop:"; ls -l $SNAP
tar -tvf $SNAP | sed 's/^/    /'

step "container 2 (io.ocisnap.restore=$SNAP): the changes survived"
$PODMAN run --rm --network=none --annotation io.ocisnap.restore=$SNAP localhost/demo \
  sh -c 'for f in /data/new.txt /etc/motd /work/notes; do echo "$f: $(cat $f)"; done; ls /data/old.txt 2>&1 || true'

step "container 3 (no annotation): a fresh container from the image"
$PODMAN run --rm --network=none localhost/demo sh -c 'echo "/etc/motd: $(cat /etc/motd)"; ls /data'
rm -rf $SNAPDIR
echo; echo "demo OK"

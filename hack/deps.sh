#!/usr/bin/env bash
# Install what ocisnap's build, tests and demo need on Debian/Ubuntu, if missing.
# Usage: hack/deps.sh [test|demo|package|bench]
set -euo pipefail
want=(runc podman busybox tar)
pkgs=(runc podman busybox-static tar)
case "${1:-test}" in
  test)    want+=(mkfs.erofs mksquashfs bsdtar getfattr go-md2man script newuidmap python3 docker-registry htpasswd skopeo chattr mkfs.ext4)
           pkgs+=(erofs-utils squashfs-tools libarchive-tools attr go-md2man bsdutils uidmap python3 docker-registry apache2-utils skopeo e2fsprogs e2fsprogs) ;;
  package) want+=(go-md2man rpmbuild rpmlint dpkg-buildpackage lintian dh)
           pkgs+=(go-md2man rpm rpmlint dpkg-dev lintian debhelper) ;;
  bench)   want+=(bsdtar strace mkfs.ext4 losetup /usr/bin/time findmnt docker-registry htpasswd skopeo zstd)
           pkgs+=(libarchive-tools strace e2fsprogs mount time util-linux docker-registry apache2-utils skopeo zstd) ;;
  demo)    ;;
esac

# containerd 2.4 (with its runc shim and ctr) and crictl 1.37 for the
# Kubernetes end-to-end tests of ocisnap-nri (tests/e2e/containerd_*_test.go):
# Debian's containerd is older, so they are built from the Go module proxy
# (about 2 minutes, once) into a cache the tests look in.
CONTAINERD_VERSION=v2.4.2
CRICTL_VERSION=v1.37.0
ctrd_bin=${OCISNAP_TEST_BIN:-/var/cache/ocisnap-test/bin}
build_containerd() {
  local need=()
  for b in containerd containerd-shim-runc-v2 ctr crictl; do [ -x "$ctrd_bin/$b" ] || need+=("$b"); done
  [ ${#need[@]} -eq 0 ] && return 0
  local go=${GO:-go}
  command -v "$go" >/dev/null 2>&1 || { echo "building ${need[*]} needs go in PATH" >&2; return 1; }
  echo "building containerd $CONTAINERD_VERSION and crictl $CRICTL_VERSION into $ctrd_bin" >&2
  mkdir -p "$ctrd_bin"
  local m=github.com/containerd/containerd/v2/cmd
  GOBIN=$ctrd_bin CGO_ENABLED=0 "$go" install -tags no_btrfs,no_devmapper,no_zfs \
    "$m/containerd@$CONTAINERD_VERSION" "$m/containerd-shim-runc-v2@$CONTAINERD_VERSION" "$m/ctr@$CONTAINERD_VERSION"
  GOBIN=$ctrd_bin CGO_ENABLED=0 "$go" install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
}
if [ "${1:-test}" = test ]; then build_containerd; fi

missing=()
for i in "${!want[@]}"; do command -v "${want[$i]}" >/dev/null 2>&1 || missing+=("${pkgs[$i]}"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing: ${missing[*]} (run as root, or: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq "${missing[@]}" >/dev/null

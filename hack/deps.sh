#!/usr/bin/env bash
# Install what ocisnap's build, tests and demo need on Debian/Ubuntu, if missing.
# Usage: hack/deps.sh [test|demo|package|bench]
set -euo pipefail
want=(runc podman busybox tar)
pkgs=(runc podman busybox-static tar)
case "${1:-test}" in
  test)    want+=(mkfs.erofs mksquashfs bsdtar getfattr go-md2man script newuidmap python3 chattr mkfs.ext4)
           pkgs+=(erofs-utils squashfs-tools libarchive-tools attr go-md2man bsdutils uidmap python3 e2fsprogs e2fsprogs) ;;
  package) want+=(go-md2man rpmbuild rpmlint dpkg-buildpackage lintian dh)
           pkgs+=(go-md2man rpm rpmlint dpkg-dev lintian debhelper) ;;
  bench)   want+=(bsdtar strace mkfs.ext4 losetup /usr/bin/time findmnt)
           pkgs+=(libarchive-tools strace e2fsprogs mount time util-linux) ;;
  demo)    ;;
esac
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

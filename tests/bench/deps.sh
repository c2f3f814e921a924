#!/usr/bin/env bash
# Install the system tools `make bench` measures or needs, if missing
# (Debian/Ubuntu). The Go peers (containers/storage, gonum/plot) come with
# the tests/bench module.
set -euo pipefail
want=(tar bsdtar strace mkfs.ext4 losetup /usr/bin/time findmnt)
pkgs=(tar libarchive-tools strace e2fsprogs mount time util-linux)
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

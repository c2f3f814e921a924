#!/usr/bin/env bash
# make deb: build the .deb from the `make dist` tarball, in an unpacked copy
# with packaging/debian as debian/ (dpkg-buildpackage -us -uc -b).
#
#   packaging/build-deb.sh TARBALL OUTDIR
#
# PACKAGE_CHECK=1 runs the unit tests in the build (default: nocheck; `make
# test` runs them). Go is taken from PATH; when it is not Debian's golang-go
# the build profile pkg.ocisnap.external-go drops that build dependency.
set -euo pipefail
tarball=$(realpath "${1:?usage: build-deb.sh TARBALL OUTDIR}")
out=${2:?usage: build-deb.sh TARBALL OUTDIR}
# a package build is not part of the calling make: no inherited variables or jobserver
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
mkdir -p "$out"; out=$(realpath "$out")
work=$out/build
rm -rf "$work"; mkdir -p "$work"
tar -xzf "$tarball" -C "$work"
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'ocisnap-*')
cp -rL "$src/packaging/debian" "$src/debian"
# shellcheck disable=SC1091
. "$src/packaging/dist.env"
export SOURCE_DATE_EPOCH

profiles=${DEB_BUILD_PROFILES-}
gobin=$(command -v go || true)
[ -n "$gobin" ] || { echo "build-deb: no go in PATH" >&2; exit 1; }
if ! dpkg -S "$(readlink -f "$gobin")" >/dev/null 2>&1; then
  profiles="${profiles:+$profiles,}pkg.ocisnap.external-go"
fi
export DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-}"
[ "${PACKAGE_CHECK:-0}" = 1 ] || DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:+$DEB_BUILD_OPTIONS }nocheck"

(cd "$src" && dpkg-buildpackage -us -uc -b ${profiles:+-P"$profiles"})

rm -f "$out"/ocisnap_*.deb "$out"/ocisnap-dbgsym_*.deb "$out"/ocisnap_*.changes "$out"/ocisnap_*.buildinfo
mv "$work"/ocisnap_*.deb "$work"/ocisnap_*.changes "$work"/ocisnap_*.buildinfo "$out"/
[ -n "${KEEP_BUILD:-}" ] || rm -rf "$work"
ls "$out"/ocisnap_*.deb

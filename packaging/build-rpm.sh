#!/usr/bin/env bash
# make rpm: binary and source RPMs from the `make dist` tarball with rpmbuild,
# using the spec inside the tarball (its version etc. filled in by make dist).
#
#   packaging/build-rpm.sh TARBALL TOPDIR     (RPMs in TOPDIR/RPMS, TOPDIR/SRPMS)
#
# PACKAGE_CHECK=1 runs %check (the unit tests; default --nocheck). On a
# machine without an rpm database of its own (Debian) the BuildRequires cannot
# be checked: --nodeps.
set -euo pipefail
tarball=$(realpath "${1:?usage: build-rpm.sh TARBALL TOPDIR}")
top=${2:?usage: build-rpm.sh TARBALL TOPDIR}
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
mkdir -p "$top"; top=$(realpath "$top")
rm -rf "$top"/{BUILD,BUILDROOT,RPMS,SRPMS,SOURCES,SPECS}
mkdir -p "$top"/{BUILD,RPMS,SRPMS,SOURCES,SPECS}
name=$(basename "$tarball" .tar.gz)
cp "$tarball" "$top/SOURCES/"
tar -xzOf "$tarball" "$name/packaging/rpm/ocisnap.spec" > "$top/SPECS/ocisnap.spec"
SOURCE_DATE_EPOCH=$(tar -xzOf "$tarball" "$name/packaging/dist.env" | sed -n 's/^SOURCE_DATE_EPOCH=//p')
export SOURCE_DATE_EPOCH

args=(--define "_topdir $top"
      --define "_buildhost reproducible"
      --define "use_source_date_epoch_as_buildtime 1"
      --define "clamp_mtime_to_source_date_epoch 1")
[ "${PACKAGE_CHECK:-0}" = 1 ] || args+=(--nocheck)
if command -v dpkg >/dev/null && ! rpm -q rpm >/dev/null 2>&1; then args+=(--nodeps); fi
# brp-compress (man pages) is a bash script that says #!/bin/sh: where /bin/sh
# is dash (Debian) it fails quietly and leaves the man pages uncompressed
case $(readlink -f /bin/sh) in
  */bash) ;;
  *) args+=(--define "__brp_compress /bin/bash %{_rpmconfigdir}/brp-compress %{?_prefix}") ;;
esac

rpmbuild -ba "${args[@]}" "$top/SPECS/ocisnap.spec"
[ -n "${KEEP_BUILD:-}" ] || rm -rf "$top"/BUILD "$top"/BUILDROOT
find "$top/RPMS" "$top/SRPMS" -name '*.rpm' | sort

#!/usr/bin/env bash
# make package-test: the rpm and deb packages, end to end.
#
#  1. make dist twice: the tarballs are byte-identical;
#  2. make deb + make rpm from it (each a cold Go build in its own directory);
#     the binaries in the .deb and the .rpm are byte-identical (reproducible),
#     and print VERSION and the commit;
#  3. lintian (no errors) and the .deb's contents and modes;
#  4. rpm -qlp / --requires / --scripts / rpmlint (no errors);
#  5. apt-get install ./ocisnap_*.deb, then an export -> restore round trip with
#     podman and NO --hooks-dir (podman's default /usr/share/containers/oci/hooks.d),
#     isolated storage, a local busybox image;
#  6. apt-get remove keeps the snapshot in /var/lib/ocisnap and removes every
#     other installed file; apt-get purge leaves nothing of the package
#     (checked against `dpkg -L` captured after install).
#
# Root, Debian/Ubuntu. It installs a package system-wide for a minute: it
# refuses to run if an ocisnap package is already installed, backs up any
# unpackaged files at the package's paths (`make install PREFIX=/usr`) and
# puts everything back on exit, failure or not. Under CI=true a missing tool
# or privilege fails; elsewhere it skips. KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin

t0=$(date +%s)
say()  { printf '\n\033[1m==> %s\033[0m  (%ss)\n' "$*" "$(( $(date +%s) - t0 ))"; }
fail() { echo "package-test: FAIL: $*" >&2; exit 1; }
skip() {
  [ "${CI:-}" = true ] && fail "$* (CI=true: not skipping)"
  echo "package-test: SKIP: $*" >&2; exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root (installs a .deb system-wide)"
command -v apt-get >/dev/null && command -v dpkg >/dev/null || skip "needs a Debian-based system (apt-get, dpkg)"
hack/deps.sh package || fail "hack/deps.sh package could not install the packaging tools"
for tool in go make git rpmbuild rpm2archive rpmlint dpkg-buildpackage dh lintian go-md2man podman runc busybox tar sha256sum; do
  command -v "$tool" >/dev/null || skip "missing tool: $tool"
done

status=$(dpkg-query -W -f='${db:Status-Status}' ocisnap 2>/dev/null || true)
case $status in
  ""|not-installed) ;;
  *) fail "an ocisnap package is already on this machine ($status); the test will not replace it: apt-get purge ocisnap" ;;
esac

# one commit for every build: others may commit while this runs
REF=$(git rev-parse HEAD)
VERSION=$(git show "$REF:VERSION" | tr -d '[:space:]')
COMMIT=$(git rev-parse --short=12 "$REF")
T=$(mktemp -d /var/tmp/ocisnap-package-test.XXXXXX)
chmod 0755 "$T"   # apt reads the .deb as _apt
SNAP=/var/lib/ocisnap/package-test-$(basename "$T").tar
PODMAN=(podman --root "$T/storage" --runroot "$T/run" --storage-driver overlay --runtime runc
        --cgroup-manager cgroupfs --events-backend file)   # and no --hooks-dir
APT=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300)

mkdir -p "$T/backup"
had_varlib=false; [ -e /var/lib/ocisnap ] && had_varlib=true
had_views=false; [ -e /var/lib/ocisnap-views ] && had_views=true
had_run=false; [ -e /run/ocisnap ] && had_run=true

cleanup() {
  local rc=$?
  set +e
  "${PODMAN[@]}" rm -af -t 0 >/dev/null 2>&1
  "${PODMAN[@]}" system reset -f >/dev/null 2>&1
  umount -R "$T/storage" 2>/dev/null
  # hook state of this test's containers (left behind if a container failed to start)
  grep -lsF "$T/" /run/ocisnap/*.json 2>/dev/null | xargs -r rm -f
  st=$(dpkg-query -W -f='${db:Status-Status}' ocisnap 2>/dev/null)
  if [ -n "$st" ] && [ "$st" != not-installed ]; then
    echo "package-test: cleanup: purging the ocisnap package" >&2
    "${APT[@]}" purge ocisnap >/dev/null 2>&1 || dpkg --purge ocisnap >/dev/null 2>&1
  fi
  rm -f "$SNAP"
  $had_varlib || rmdir /var/lib/ocisnap 2>/dev/null
  $had_views || rmdir /var/lib/ocisnap-views 2>/dev/null
  # dpkg took the existing (empty) view directory over and purge removed it: put it back
  $had_views && [ ! -e /var/lib/ocisnap-views ] && install -d -m 0700 /var/lib/ocisnap-views
  $had_run || rmdir /run/ocisnap 2>/dev/null
  (cd "$T/backup" && find . -mindepth 1 ! -type d -print0 | while IFS= read -r -d '' f; do
     mkdir -p "$(dirname "/${f#./}")"; cp -a "$f" "/${f#./}"; echo "package-test: restored /${f#./}" >&2; done)
  if [ -n "${KEEP:-}" ]; then echo "package-test: kept $T" >&2; else rm -rf "$T"; fi
  if [ $rc = 0 ]; then echo "package-test: PASS ($(( $(date +%s) - t0 ))s)"; else echo "package-test: FAIL (exit $rc)" >&2; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# files at the package's paths that no package owns (e.g. `make install PREFIX=/usr`):
# the package replaces them, purge deletes them, cleanup puts them back
for p in /usr/libexec/oci/hooks.d/ocisnap-hook /usr/libexec/oci/hooks.d/ocisnap-hook-engine /usr/bin/ocisnap /usr/share/containers/oci/hooks.d/ocisnap.json \
         /usr/lib/tmpfiles.d/ocisnap.conf /usr/share/man/man*/ocisnap*; do
  if [ -e "$p" ] && ! dpkg -S "$p" >/dev/null 2>&1; then
    echo "package-test: backing up unpackaged $p"
    mkdir -p "$T/backup$(dirname "$p")"
    cp -a "$p" "$T/backup$p"
  fi
done

has_cli=false; git ls-tree -r --name-only "$REF" cmd/ocisnap | grep '\.go$' >/dev/null && has_cli=true
has_man=false; [ -n "$(make -s -n -B docs 2>/dev/null)" ] && has_man=true
echo "package-test: ocisnap $VERSION, commit $COMMIT; CLI in the source: $has_cli; make docs: $has_man; work dir $T"

# ---------------------------------------------------------------- 1. dist
say "make dist (twice: reproducible tarball)"
make -s dist DIST_REF="$REF" DIST_DIR="$T/dist"
make -s dist DIST_REF="$REF" DIST_DIR="$T/dist2" >/dev/null
TARBALL=$T/dist/ocisnap-$VERSION.tar.gz
cmp "$TARBALL" "$T/dist2/ocisnap-$VERSION.tar.gz" || fail "make dist is not reproducible"
tar -tzf "$TARBALL" | grep "^ocisnap-$VERSION/vendor/modules.txt$" >/dev/null || fail "the tarball has no vendor/"
sha256sum "$TARBALL"

# ---------------------------------------------------------------- 2. build
say "make deb"
make -s deb DIST_REF="$REF" DIST_DIR="$T/dist" > "$T/deb.log" 2>&1 || { tail -50 "$T/deb.log"; fail "make deb"; }
say "make rpm"
make -s rpm DIST_REF="$REF" DIST_DIR="$T/dist" > "$T/rpm.log" 2>&1 || { tail -50 "$T/rpm.log"; fail "make rpm"; }
DEB=$(ls "$T"/dist/deb/ocisnap_"$VERSION"-*_*.deb)
CHANGES=$(ls "$T"/dist/deb/ocisnap_"$VERSION"-*_*.changes)
RPM=$(ls "$T"/dist/rpm/RPMS/*/ocisnap-"$VERSION"-*.rpm)
SRPM=$(ls "$T"/dist/rpm/SRPMS/ocisnap-"$VERSION"-*.src.rpm)
echo "$DEB"; echo "$RPM"; echo "$SRPM"

say "reproducible binaries: the .deb's and the .rpm's (two cold builds) are identical"
mkdir -p "$T/x/deb" "$T/x/rpm"
dpkg-deb -x "$DEB" "$T/x/deb"
rpm2archive - < "$RPM" | tar -xzf - -C "$T/x/rpm"
bins=(usr/libexec/oci/hooks.d/ocisnap-hook usr/libexec/oci/hooks.d/ocisnap-hook-engine usr/libexec/ocisnap/ocisnap-nri)
$has_cli && bins+=(usr/bin/ocisnap)
for b in "${bins[@]}"; do
  [ -x "$T/x/deb/$b" ] || fail "/$b missing from the .deb"
  [ -x "$T/x/rpm/$b" ] || fail "/$b missing from the .rpm"
  d=$(sha256sum < "$T/x/deb/$b"); r=$(sha256sum < "$T/x/rpm/$b")
  echo "  /$b  deb ${d%% *}  rpm ${r%% *}"
  [ "$d" = "$r" ] || fail "/$b differs between the .deb and the .rpm builds (not reproducible)"
done
v=$("$T/x/deb/usr/libexec/oci/hooks.d/ocisnap-hook" --version)
echo "  $v"
case $v in *" version $VERSION "*"commit $COMMIT"*) ;; *) fail "ocisnap-hook --version: want $VERSION and $COMMIT, got: $v" ;; esac
if $has_cli; then
  v=$("$T/x/deb/usr/bin/ocisnap" version 2>&1) || fail "ocisnap version: $v"
  echo "  $v"; case $v in *"$VERSION"*) ;; *) fail "ocisnap version does not print $VERSION: $v" ;; esac
fi

# ---------------------------------------------------------------- 3. deb
say "lintian (no errors)"
lintian --fail-on error --display-info "$CHANGES" 2>&1 | grep -v 'running with root privileges' | tee "$T/lintian.out" || true
grep -q '^E: ' "$T/lintian.out" && fail "lintian reports errors"
lintian --fail-on error "$CHANGES" >/dev/null 2>&1 || fail "lintian --fail-on error failed"

say ".deb contents"
dpkg-deb -c "$DEB" | awk '{print $1, $6}' | sed 's|^\(\S*\) \./|\1 /|' | tee "$T/deb.contents"
want() { grep -qxF -- "$1" "$T/deb.contents" || fail "the .deb lacks: $1"; }
want "-rwxr-xr-x /usr/libexec/oci/hooks.d/ocisnap-hook"
want "-rwxr-xr-x /usr/libexec/oci/hooks.d/ocisnap-hook-engine"
want "-rw-r--r-- /usr/share/containers/oci/hooks.d/ocisnap.json"
want "-rw-r--r-- /usr/lib/tmpfiles.d/ocisnap.conf"
want "drwx------ /var/lib/ocisnap/"
want "drwx------ /var/lib/ocisnap-views/"
want "-rw-r--r-- /usr/share/doc/ocisnap/copyright"
want "-rwxr-xr-x /usr/libexec/ocisnap/ocisnap-nri"
want "-rw-r--r-- /usr/lib/systemd/system/ocisnap-nri.service"
want "lrwxrwxrwx /opt/nri/plugins/10-ocisnap"
[ "$(readlink "$T/x/deb/opt/nri/plugins/10-ocisnap")" = /usr/libexec/ocisnap/ocisnap-nri ] || fail "/opt/nri/plugins/10-ocisnap does not point at the plugin"
grep -qx 'ExecStart=/usr/libexec/ocisnap/ocisnap-nri .*' "$T/x/deb/usr/lib/systemd/system/ocisnap-nri.service" || fail "ocisnap-nri.service ExecStart"
want "-rw-r--r-- /usr/share/doc/ocisnap/examples/ocisnap-gvisor.json"
$has_cli && want "-rwxr-xr-x /usr/bin/ocisnap"
$has_cli && want "-rw-r--r-- /usr/lib/systemd/system/ocisnap-gc.timer"
$has_cli && want "-rw-r--r-- /usr/lib/systemd/system/ocisnap-gc.service"
$has_cli && want "-rw-r--r-- /usr/lib/systemd/system/ocisnap-push.timer"
$has_cli && want "-rw-r--r-- /usr/lib/systemd/system/ocisnap-push.service"
$has_cli && { grep -qx 'ExecStart=/usr/bin/ocisnap push --pending' "$T/x/deb/usr/lib/systemd/system/ocisnap-push.service" || fail "ocisnap-push.service ExecStart"; }
want "drwx------ /var/lib/ocisnap-status/"
want "drwx------ /var/log/ocisnap/"
if $has_man; then grep -q ' /usr/share/man/man[0-9]/.*\.[0-9]\.gz$' "$T/deb.contents" || fail "no man pages in the .deb"; fi
grep -q 'hooks.d/ocisnap-gvisor.json' <(grep -v /usr/share/doc/ "$T/deb.contents") && fail "the gVisor hooks.d file must be documentation only"
grep -q '"path": "/usr/libexec/oci/hooks.d/ocisnap-hook"' "$T/x/deb/usr/share/containers/oci/hooks.d/ocisnap.json" ||
  fail "hooks.d JSON does not point at /usr/libexec/oci/hooks.d/ocisnap-hook"
grep -qx 'd /run/ocisnap 0700 root root -' "$T/x/deb/usr/lib/tmpfiles.d/ocisnap.conf" || fail "tmpfiles.d entry for /run/ocisnap"
grep -qx 'd /var/lib/ocisnap-views 0700 root root -' "$T/x/deb/usr/lib/tmpfiles.d/ocisnap.conf" || fail "tmpfiles.d entry for /var/lib/ocisnap-views"

# ---------------------------------------------------------------- 4. rpm
say "rpm -qlp / --requires / --scripts"
rpm -qp --qf '%{NAME} %{VERSION} %{LICENSE}\n' "$RPM"
[ "$(rpm -qp --qf '%{VERSION}' "$RPM")" = "$VERSION" ] || fail "rpm Version is not VERSION ($VERSION)"
rpm -qp --qf '[%{FILEMODES:perms} %{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM" | grep -v ' /usr/share/licenses/ocisnap[^ ]*/vendor-licenses/' | tee "$T/rpm.files"
rwant() { grep -qE "^$1\$" "$T/rpm.files" || fail "the rpm lacks: $1"; }
rwant "-rwxr-xr-x +/usr/libexec/oci/hooks.d/ocisnap-hook"
rwant "-rwxr-xr-x +/usr/libexec/oci/hooks.d/ocisnap-hook-engine"
rwant "-rw-r--r-- +/usr/share/containers/oci/hooks.d/ocisnap.json"
rwant "-rw-r--r-- +/usr/lib/tmpfiles.d/ocisnap.conf"
rwant "-rwxr-xr-x +/usr/libexec/ocisnap/ocisnap-nri"
rwant "-rw-r--r-- +/usr/lib/systemd/system/ocisnap-nri.service"
rwant "lrwxrwxrwx +/opt/nri/plugins/10-ocisnap"
rwant "drwx------ +/var/lib/ocisnap"
rwant "drwx------ +/var/lib/ocisnap-views"
rwant "drwx------ g+ /run/ocisnap"
rwant "-rw-r--r-- l /usr/share/licenses/ocisnap[^ ]*/LICENSE"
rwant "-rw-r--r-- d /usr/share/doc/ocisnap[^ ]*/examples/ocisnap-gvisor.json"
$has_cli && rwant "-rwxr-xr-x +/usr/bin/ocisnap"
$has_cli && rwant "-rw-r--r-- +/usr/lib/systemd/system/ocisnap-gc.timer"
$has_cli && rwant "-rw-r--r-- +/usr/lib/systemd/system/ocisnap-push.timer"
$has_cli && rwant "-rw-r--r-- +/usr/lib/systemd/system/ocisnap-push.service"
rwant "drwx------ +/var/lib/ocisnap-status"
rwant "drwx------ +/var/log/ocisnap"
if $has_man; then grep -qE ' /usr/share/man/man[0-9]/.*\.[0-9](\.gz)?$' "$T/rpm.files" || fail "no man pages in the rpm"; fi
rpm -qlp "$RPM" | grep '/usr/share/containers/oci/hooks.d/ocisnap-gvisor.json' >/dev/null && fail "the gVisor hooks.d file must be documentation only"
echo "--- requires"
rpm -qp --requires "$RPM" | tee "$T/rpm.requires"
grep -vE '^(rpmlib\(|/bin/sh$)' "$T/rpm.requires" && fail "unexpected requirements (the binaries are static; expected only rpmlib() and /bin/sh)"
echo "--- scripts"
rpm -qp --scripts "$RPM" | tee "$T/rpm.scripts"
grep -q 'systemd-tmpfiles --create /usr/lib/tmpfiles.d/ocisnap.conf' "$T/rpm.scripts" || fail "no %post creating /run/ocisnap"
grep -qE '^(preun|postun)' "$T/rpm.scripts" && fail "unexpected (un)install scriptlets: snapshots must survive an erase"

say "rpmlint (no errors)"
rpmlint -r "$repo/packaging/rpm/ocisnap.rpmlintrc" "$RPM" "$SRPM" "$T/dist/rpm/SPECS/ocisnap.spec" | tee "$T/rpmlint.out" || true
grep -qE '(^|: )E: ' "$T/rpmlint.out" && fail "rpmlint reports errors"
grep -qE ' 0 errors' "$T/rpmlint.out" || fail "rpmlint did not report 0 errors"

# ---------------------------------------------------------------- 5. install + podman
say "apt-get install $DEB"
dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's|^\./|/|; s|/$||; /^$/d' > "$T/deb.paths"
while read -r p; do [ -e "$p" ] || [ -L "$p" ] && echo "$p"; done < "$T/deb.paths" > "$T/preexisting" || true
"${APT[@]}" install --no-install-recommends "$DEB" > "$T/apt-install.log" 2>&1 || { cat "$T/apt-install.log"; fail "apt-get install"; }
dpkg -L ocisnap | sed '/^\/\.$/d' > "$T/installed"
[ "$(dpkg-query -W -f='${Version}' ocisnap)" = "$(dpkg-deb -f "$DEB" Version)" ] || fail "dpkg does not have the package installed"
for p in /usr/libexec/oci/hooks.d/ocisnap-hook /usr/libexec/oci/hooks.d/ocisnap-hook-engine /usr/share/containers/oci/hooks.d/ocisnap.json /usr/lib/tmpfiles.d/ocisnap.conf; do
  grep -qxF "$p" "$T/installed" || fail "dpkg -L ocisnap lacks $p"
  [ -e "$p" ] || fail "$p not installed"
done
$had_varlib || [ "$(stat -c %a /var/lib/ocisnap)" = 700 ] || fail "/var/lib/ocisnap is not 0700 after install"
$had_views || [ "$(stat -c %a /var/lib/ocisnap-views)" = 700 ] || fail "/var/lib/ocisnap-views is not 0700 after install"
if command -v systemd-tmpfiles >/dev/null; then [ "$(stat -c %a /run/ocisnap)" = 700 ] || fail "/run/ocisnap not created 0700"; fi
/usr/libexec/oci/hooks.d/ocisnap-hook --version | grep -F " version $VERSION " || fail "installed ocisnap-hook --version"
/usr/libexec/oci/hooks.d/ocisnap-hook-engine --version | grep -F " version $VERSION " || fail "installed ocisnap-hook-engine --version"

say "podman, default hooks directory: export -> restore round trip"
cat > "$T/containers.conf" <<'CONF'
[containers]
# within this machine's hard limits (nofile 20000): podman's defaults are higher
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
events_logger = "file"
cgroup_manager = "cgroupfs"
CONF
export CONTAINERS_CONF=$T/containers.conf   # only this file: hooks_dir is podman's built-in default
r=$T/rootfs; mkdir -p "$r"/{bin,etc,data,proc,sys,dev,tmp,run}
cp "$(readlink -f "$(command -v busybox)")" "$r/bin/busybox"
for c in sh cat echo rm ls test; do ln -s busybox "$r/bin/$c"; done
echo "from the image" > "$r/etc/motd"
echo "delete me" > "$r/data/old.txt"
tar -C "$r" --numeric-owner -cf "$T/rootfs.tar" .
"${PODMAN[@]}" import -q "$T/rootfs.tar" localhost/ocisnap-package-test:latest >/dev/null
"${PODMAN[@]}" run --rm --network=none --annotation "io.ocisnap.export=$SNAP" localhost/ocisnap-package-test \
  sh -c 'echo "written by container 1" > /data/new.txt; echo changed > /etc/motd; rm /data/old.txt'
[ -s "$SNAP" ] || fail "no snapshot at $SNAP: the hook from /usr/share/containers/oci/hooks.d did not export"
tar -tvf "$SNAP" | sed 's/^/    /'
tar -tf "$SNAP" | grep -x './data/new.txt' >/dev/null || fail "the snapshot lacks ./data/new.txt"
out=$("${PODMAN[@]}" run --rm --network=none --annotation "io.ocisnap.restore=$SNAP" localhost/ocisnap-package-test \
  sh -c 'cat /data/new.txt /etc/motd; test -e /data/old.txt && echo "old.txt is back" || echo "old.txt stays deleted"')
echo "$out" | sed 's/^/    /'
[ "$out" = "$(printf 'written by container 1\nchanged\nold.txt stays deleted')" ] || fail "restore from the packaged hook"
out=$("${PODMAN[@]}" run --rm --network=none localhost/ocisnap-package-test cat /etc/motd)
[ "$out" = "from the image" ] || fail "a container without annotations was changed: $out"
left=$(grep -lsF "$T/" /run/ocisnap/*.json 2>/dev/null || true)
[ -z "$left" ] || fail "the hook left per-container state behind after poststop: $left"

# ---------------------------------------------------------------- 6. remove / purge
say "apt-get remove: the package's files go, the snapshot stays"
"${APT[@]}" remove ocisnap > "$T/apt-remove.log" 2>&1 || { cat "$T/apt-remove.log"; fail "apt-get remove"; }
while read -r p; do
  [ -d "$p" ] && [ ! -L "$p" ] && continue
  [ -e "$p" ] || [ -L "$p" ] && fail "apt-get remove left $p"
done < "$T/installed"
[ -s "$SNAP" ] || fail "apt-get remove deleted the snapshot $SNAP"
[ -d /var/lib/ocisnap ] || fail "apt-get remove deleted /var/lib/ocisnap with a snapshot in it"

say "apt-get purge: nothing of the package is left (snapshots are the administrator's: kept)"
"${APT[@]}" purge ocisnap > "$T/apt-purge.log" 2>&1 || { cat "$T/apt-purge.log"; fail "apt-get purge"; }
st=$(dpkg-query -W -f='${db:Status-Status}' ocisnap 2>/dev/null || true)
[ -z "$st" ] || [ "$st" = not-installed ] || fail "dpkg still knows ocisnap after purge: $st"
while read -r p; do
  grep -qxF "$p" "$T/preexisting" && continue                 # shared directories (/usr, ...)
  [ "$p" = /var/lib/ocisnap ] && continue                      # holds the snapshot: checked below
  [ -e "$p" ] || [ -L "$p" ] && fail "apt-get purge left $p"
done < "$T/installed"
[ -s "$SNAP" ] || fail "apt-get purge deleted the snapshot $SNAP"
left=$(cd /var/lib/ocisnap && ls -A | grep -vxF "$(basename "$SNAP")" || true)
$had_varlib || [ -z "$left" ] || fail "/var/lib/ocisnap holds more than the snapshot after purge: $left"
rm -f "$SNAP"
$had_varlib || { rmdir /var/lib/ocisnap || fail "/var/lib/ocisnap not empty"; }
echo "  $(wc -l < "$T/installed") paths checked"

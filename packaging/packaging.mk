# Packaging (included by the Makefile): see packaging/README.md
#   make dist          $(DIST_DIR)/ocisnap-$(VERSION).tar.gz: `git archive $(DIST_REF)` + vendor/
#   make rpm           $(DIST_DIR)/rpm/{RPMS,SRPMS}/...: rpmbuild from that tarball
#   make deb           $(DIST_DIR)/deb/ocisnap_*.deb: dpkg-buildpackage -b from that tarball
#   make package-test  build both, lint, install the .deb, podman round trip, remove/purge
# PACKAGE_CHECK=1 also runs the unit tests inside the package builds.

DIST_DIR     ?= dist
DIST_REF     ?= HEAD
DIST_VERSION  = $(strip $(shell git show '$(DIST_REF):VERSION' 2>/dev/null || cat VERSION))
DIST_TARBALL  = $(DIST_DIR)/ocisnap-$(DIST_VERSION).tar.gz

.PHONY: dist rpm deb package-test

dist:
	GO="$(GO)" packaging/dist.sh "$(DIST_DIR)" "$(DIST_REF)"

rpm: dist
	hack/deps.sh package
	packaging/build-rpm.sh "$(DIST_TARBALL)" "$(DIST_DIR)/rpm"

deb: dist
	hack/deps.sh package
	packaging/build-deb.sh "$(DIST_TARBALL)" "$(DIST_DIR)/deb"

package-test:
	tests/package/run.sh

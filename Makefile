# ocisnap — OCI hooks that restore, export and view container layers.
# make build | install PREFIX=... [DESTDIR=...] | test | demo | lint | docs | bench

PREFIX     ?= /usr/local
DESTDIR    ?=
BINDIR     ?= $(PREFIX)/bin
HOOKDIR    ?= $(PREFIX)/libexec/oci/hooks.d
HOOKSJSON  ?= $(PREFIX)/share/containers/oci/hooks.d
MANDIR     ?= $(PREFIX)/share/man
# The NRI plugin, its systemd unit, and containerd's pre-installed plugin
# directory (its NRI plugin_path), where a link 10-ocisnap makes containerd
# start the plugin itself. NRIPLUGINDIR is empty unless DESTDIR is set (a
# package build), so that `make install PREFIX=dir` writes nothing outside
# dir; set it to install the link.
NRIDIR     ?= $(PREFIX)/libexec/ocisnap
UNITDIR    ?= $(PREFIX)/lib/systemd/system
NRIPLUGINDIR ?= $(if $(DESTDIR),/opt/nri/plugins)
# The default allowed snapshot directory (the hook's --allow-dir default)
# and view directory (its --allow-view-dir default).
SNAPDIR    ?= /var/lib/ocisnap
VIEWDIR    ?= /var/lib/ocisnap-views
# Go: from PATH, else the README's /usr/local/go.
GO         ?= $(or $(shell command -v go 2>/dev/null),$(wildcard /usr/local/go/bin/go),go)
VERSION    := $(shell cat VERSION)
COMMIT     ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH
PKG        := github.com/ocisnap/ocisnap
LDFLAGS    := -s -w -buildid= -X $(PKG)/internal/version.Version=$(VERSION) -X $(PKG)/internal/version.Commit=$(COMMIT)
GOFLAGS_BUILD := -trimpath -buildvcs=false -ldflags "$(LDFLAGS)"
BINARIES   := ocisnap-hook ocisnap-hook-engine ocisnap ocisnap-nri
TEST_TIMEOUT ?= 60m
TEST_FUZZTIME ?= 20s
TEST_BENCH_MAX_RATIO ?= 2.0

.PHONY: all build install uninstall test unit e2e lint demo docs deps clean

all: build

-include packaging/packaging.mk
-include docs/docs.mk
-include fuzz.mk
-include tests/bench/bench.mk

build:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o bin/ ./cmd/...

# Man pages are rendered when go-md2man is there (hack/deps.sh installs it).
install: build $(if $(shell command -v go-md2man 2>/dev/null),docs)
	install -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(HOOKDIR) $(DESTDIR)$(HOOKSJSON)
	install -m 0755 bin/ocisnap-hook $(DESTDIR)$(HOOKDIR)/ocisnap-hook
	@# The gate above execs the engine beside it when a container asks something.
	install -m 0755 bin/ocisnap-hook-engine $(DESTDIR)$(HOOKDIR)/ocisnap-hook-engine
	if [ -x bin/ocisnap ]; then install -m 0755 bin/ocisnap $(DESTDIR)$(BINDIR)/ocisnap; fi
	install -d -m 0755 $(DESTDIR)$(NRIDIR) $(DESTDIR)$(UNITDIR)
	install -m 0755 bin/ocisnap-nri $(DESTDIR)$(NRIDIR)/ocisnap-nri
	sed -e 's|@NRIDIR@|$(NRIDIR)|g' -e 's|@HOOKSJSON@|$(HOOKSJSON)|g' packaging/systemd/ocisnap-nri.service > $(DESTDIR)$(UNITDIR)/ocisnap-nri.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/ocisnap-nri.service
	if [ -n "$(NRIPLUGINDIR)" ]; then install -d -m 0755 $(DESTDIR)$(NRIPLUGINDIR) && ln -sfn $(NRIDIR)/ocisnap-nri $(DESTDIR)$(NRIPLUGINDIR)/10-ocisnap; fi
	sed 's|"path": "[^"]*"|"path": "$(HOOKDIR)/ocisnap-hook"|' oci-hooks.d/ocisnap.json > $(DESTDIR)$(HOOKSJSON)/ocisnap.json
	@# The snapshot and view directories: only root can make them outside DESTDIR; never loosen an existing one.
	[ -d $(DESTDIR)$(SNAPDIR) ] || install -d -m 0700 $(DESTDIR)$(SNAPDIR) 2>/dev/null || echo "note: could not create $(DESTDIR)$(SNAPDIR) (not root?)"
	[ -d $(DESTDIR)$(VIEWDIR) ] || install -d -m 0700 $(DESTDIR)$(VIEWDIR) 2>/dev/null || echo "note: could not create $(DESTDIR)$(VIEWDIR) (not root?)"
	chmod 0644 $(DESTDIR)$(HOOKSJSON)/ocisnap.json
	if [ -d docs/man ] && ls docs/man/*.[0-9] >/dev/null 2>&1; then \
		for m in docs/man/*.[0-9]; do s=$${m##*.}; install -d $(DESTDIR)$(MANDIR)/man$$s; install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done; \
	fi
	@echo "installed the hooks.d file $(DESTDIR)$(HOOKSJSON)/ocisnap.json (hook: $(HOOKDIR)/ocisnap-hook)"
	@case "$(HOOKSJSON)" in /usr/share/containers/oci/hooks.d|/etc/containers/oci/hooks.d) ;; *) \
		echo "note: podman and CRI-O do not look in $(HOOKSJSON) (they read /usr/share/containers/oci/hooks.d"; \
		echo "      and /etc/containers/oci/hooks.d). Point podman at it: podman --hooks-dir $(HOOKSJSON) run ...,"; \
		echo "      or set hooks_dir = [\"$(HOOKSJSON)\"] under [engine] in /etc/containers/containers.conf"; \
		echo "      (CRI-O: hooks_dir in crio.conf), or install with: make install PREFIX=/usr" ;; esac

uninstall:
	rm -f $(DESTDIR)$(HOOKDIR)/ocisnap-hook $(DESTDIR)$(HOOKDIR)/ocisnap-hook-engine $(DESTDIR)$(BINDIR)/ocisnap $(DESTDIR)$(HOOKSJSON)/ocisnap.json
	rm -f $(DESTDIR)$(NRIDIR)/ocisnap-nri $(DESTDIR)$(UNITDIR)/ocisnap-nri.service
	if [ -n "$(NRIPLUGINDIR)" ]; then rm -f $(DESTDIR)$(NRIPLUGINDIR)/10-ocisnap; fi

deps:
	GO="$(GO)" hack/deps.sh test

# The README's test command: unit tests and end-to-end tests with real
# podman, runc and overlay mounts (root; under CI=true nothing may skip).
test: deps build
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	@# After the Go tests, never beside them: it installs the .deb into
	@# podman's default hooks directory for a while.
	$(MAKE) package-test
	@# Each fuzz target for a bounded time (crashers land in testdata/fuzz).
	$(MAKE) fuzz FUZZTIME=$(TEST_FUZZTIME)
	@# Ratios to GNU tar, not absolute times. CI's bound (2.0x) only catches a
	@# gross regression: on this shared 2-core machine tiny restores measured
	@# 1.0-1.54x GNU tar's time under load. `make bench-quick` alone uses the
	@# bench's own, tighter limit.
	$(MAKE) bench-quick BENCH_QUICK_MAX_RATIO=$(TEST_BENCH_MAX_RATIO)

# The unit tests: under -short nothing drives podman or runc (tests/e2e
# skips whole, and so does every test that needs an engine:
# testutil.SkipIfShort).
unit:
	$(GO) test -count=1 -short ./...

e2e: build
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -v ./tests/e2e/...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff
	cd tests/bench && $(GO) mod tidy -diff

# demo.sh checks for Go first (and says where to get it), then installs
# runc, podman and busybox if missing.
demo:
	hack/demo.sh

clean:
	rm -rf bin dist

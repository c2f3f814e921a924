# Benchmark of restore/export against GNU tar, bsdtar and containers/storage.
# Included from the top-level Makefile (-include tests/bench/bench.mk).
#
#   make bench        full run (as root; ~30 min on a quiet 2-core machine at BENCH_RUNS=4 before
#                     the registry, persist and chain rows: they have 10 min of a 40 min run; per-row
#                     figures in tests/bench/README.md "Duration"): tests/bench/results.md,
#                     results.json, scaling.png. A failed row fails it (exit 1) and leaves those
#                     as they were; the rows measured before it go to results.{md,json}.partial
#   make bench-report re-render results.md from results.json with the current notes.md
#   make bench-quick  CI check (<1 min as root): scaled-down workloads (2,000 small files,
#                     10,000 tiny ones, 2 × 64 MiB), ocisnap against GNU tar, 7 interleaved runs;
#                     fails if ocisnap's best run takes more than BENCH_QUICK_MAX_RATIO × GNU tar's
#                     best (today ocisnap takes 0.4-0.75×; 1.3 absorbs a loaded 2-core runner, where
#                     ocisnap's parallelism has no idle core to use) or peaks over 64 MiB RSS; the
#                     same bound for the durable export (the hook's file sink: fsync, rename, fsync
#                     of the directory) against GNU tar made equally durable, each replacing its
#                     previous output
#
# Both need root (loop devices, overlay mounts); without root they skip, except under CI=true.

GO              ?= go
BENCH_DIR       := tests/bench
BENCH_BIN       := $(BENCH_DIR)/bin
BENCH_WORKDIR   ?= /var/tmp/ocisnap-bench
BENCH_RUNS      ?= 4
BENCH_FLAGS     ?=
BENCH_QUICK_MAX_RATIO ?= 1.3
BENCH_COMMIT    = $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git diff --quiet HEAD -- pkg 2>/dev/null || echo -dirty)

.PHONY: bench bench-quick bench-deps bench-tools bench-report bench-registry

bench-deps:
	hack/deps.sh bench

bench-tools:
	cd $(BENCH_DIR) && CGO_ENABLED=0 $(GO) build -o bin/ ./cmd/...

bench: bench-deps build bench-tools
	$(BENCH_BIN)/ocisnap-bench -runs $(BENCH_RUNS) -workdir $(BENCH_WORKDIR) \
		-hook bin/ocisnap-hook -cli bin/ocisnap -commit "$(BENCH_COMMIT)" -notes $(BENCH_DIR)/notes.md \
		-out $(BENCH_DIR)/results.md -json $(BENCH_DIR)/results.json $(BENCH_FLAGS)
	$(BENCH_BIN)/benchplot -in $(BENCH_DIR)/results.json -out $(BENCH_DIR)/scaling.png

bench-quick: bench-deps
	cd $(BENCH_DIR) && CGO_ENABLED=0 $(GO) build -o bin/ ./cmd/ocisnap-bench ./cmd/snapdrv
	$(BENCH_BIN)/ocisnap-bench -quick -runs 7 -workdir $(BENCH_WORKDIR)-quick \
		-max-ratio $(BENCH_QUICK_MAX_RATIO) -commit "$(BENCH_COMMIT)" $(BENCH_FLAGS)

# Re-render results.md from results.json after editing notes.md (no measurement).
bench-report: bench-tools
	$(BENCH_BIN)/ocisnap-bench -from-json $(BENCH_DIR)/results.json -notes $(BENCH_DIR)/notes.md \
		-out $(BENCH_DIR)/results.md

# Only the registry rows of `make bench` (the `registry` workload: restore
# from and export to docker-registry on loopback against a local file and
# skopeo copy + tar -x, with the registry's own CPU per run), written to
# tests/bench/results-registry.{md,json}; BENCH_REGISTRY_LARGE=1 adds the
# 2 GiB peak-RSS rows.
bench-registry: bench-deps build bench-tools
	$(BENCH_BIN)/ocisnap-bench -runs $(BENCH_RUNS) -workdir $(BENCH_WORKDIR) -cli bin/ocisnap \
		-workloads registry $(if $(filter 1,$(BENCH_REGISTRY_LARGE)),-registry-large) -commit "$(BENCH_COMMIT)" \
		-out $(BENCH_DIR)/results-registry.md -json $(BENCH_DIR)/results-registry.json $(BENCH_FLAGS)

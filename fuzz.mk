# fuzz.mk — coverage-guided fuzzing (go test -fuzz), included by the Makefile.
#
#   make fuzz                  every Fuzz* target of the module, FUZZTIME each
#   make fuzz FUZZTIME=5m      longer
#   make fuzz FUZZ_PKGS=./pkg/layer
#   make fuzz-seeds            rewrite the named seed corpora in testdata/fuzz/
#
# A failing input is written by `go test` to <pkg>/testdata/fuzz/<Target>/;
# commit it with the fix: plain `go test` (and so `make test`) runs it from
# then on as a regression test. Every target runs even if an earlier one
# fails; the target fails at the end if any did.

GO               ?= go
FUZZTIME         ?= 30s
# Minimizing a new interesting input may otherwise take a minute of the
# FUZZTIME (the default -fuzzminimizetime is 60s) without any fuzzing.
FUZZMINIMIZETIME ?= 5s
FUZZ_PKGS        ?= $(sort $(dir $(shell grep -l '^func Fuzz' $$(find . -name '*_test.go' \
                      -not -path './dist/*' -not -path './vendor/*' -not -path './.git/*'))))

.PHONY: fuzz fuzz-seeds fuzz-list

fuzz-list:
	@for d in $(FUZZ_PKGS); do \
		for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$d/*_test.go | sed 's/^func //'); do echo "$$d $$f"; done; \
	done

# Go 1.26's fuzz coordinator can report a bare "context deadline exceeded"
# as the -fuzztime ends (golang/go#75804, fixed in Go 1.27) when a loaded
# machine starves a worker. Such a run wrote no crasher: it is reported as a
# flake, not a failure. Any run that writes a new input, or fails otherwise,
# fails the target.
fuzz:
	@failed=""; log=$$(mktemp); \
	for d in $(FUZZ_PKGS); do \
		for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$d/*_test.go | sed 's/^func //'); do \
			echo "== fuzz $$d $$f for $(FUZZTIME)"; \
			before=$$(ls $$d/testdata/fuzz/$$f 2>/dev/null | wc -l); \
			if $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) \
				-fuzzminimizetime $(FUZZMINIMIZETIME) ./$$d >$$log 2>&1; then cat $$log; continue; fi; \
			cat $$log; after=$$(ls $$d/testdata/fuzz/$$f 2>/dev/null | wc -l); \
			if [ "$$after" = "$$before" ] && grep -q '^    context deadline exceeded$$' $$log && \
			   [ $$(grep -c -e '^--- FAIL' -e 'panic:' -e 'Error Trace' $$log) -le 1 ]; then \
				echo "fuzz: $$d $$f: deadline race at the end of -fuzztime, no crasher written (golang/go#75804): not a failure"; \
			else failed="$$failed $$d:$$f"; fi; \
		done; \
	done; rm -f $$log; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed (inputs in testdata/fuzz/)"; exit 1; fi

fuzz-seeds:
	OCISNAP_WRITE_FUZZ_SEEDS=1 $(GO) test -count=1 -run '^Fuzz' $(addprefix ./,$(FUZZ_PKGS))

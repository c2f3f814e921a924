package hooks

import (
	"bytes"
	"encoding/json"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocisnap/ocisnap/hooks/hookcli"
	"github.com/ocisnap/ocisnap/pkg/failurelog"
	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// TestGateDecision: over the request cases (the same table as
// TestParseRequest, so that the two cannot drift), the hook's gate calls
// an invocation a no-op exactly when Run would return before doing
// anything, and never when the annotations ask something or are refused
// (a typo must reach the engine, to fail the start).
func TestGateDecision(t *testing.T) {
	def := DefaultConfig()
	cases := append(requestCases(),
		requestCase{name: "no-annotations"},
		requestCase{name: "nri-stamps-only", ann: map[string]string{"io.ocisnap.nri.namespace": "team-a"}},
		requestCase{name: "gvisor-prefix-forms", ann: map[string]string{KeyGVisorRestore + ".x": "/g"}},
		requestCase{name: "lookalike-prefix", ann: map[string]string{"io.ocisnapx.restore": "/r", "io.ocisnap": "x"}},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			if cfg == nil {
				cfg = &def
			}
			cc := *cfg
			cfg = &cc
			cfg.StateDir = t.TempDir()
			s := cfg.settings()
			for _, stage := range []struct {
				status specs.ContainerState
				forced string
				name   string
			}{{specs.StateCreating, "", StageCreateRuntime}, {specs.StateCreated, "createContainer", StageCreateContainer},
				{specs.StateStopped, "", StagePoststop}} {
				st := specs.State{Version: "1.0.2", ID: "c1", Status: stage.status, Bundle: "/nonexistent/bundle", Annotations: c.ann}
				data, err := json.Marshal(&st)
				if err != nil {
					t.Fatal(err)
				}
				hooksNoop := !relevant(c.ann, cfg) // Run's rule (no state record exists)
				if got := hookcli.Noop(data, stage.forced, &s); got != hooksNoop {
					t.Errorf("%s: gate no-op = %t, hooks' = %t", stage.name, got, hooksNoop)
				}
				if !hooksNoop {
					continue
				}
				// What the gate skips, the engine would have done nothing
				// for: no request, no refusal, and Run returns nil without
				// looking at the (missing) bundle.
				req, err := parseRequest(container(c.ann), cfg)
				if err != nil || !req.empty() {
					t.Errorf("%s: gate skips a request the engine acts on: %+v, %v", stage.name, req, err)
				}
				cfg.Stage = stage.forced
				if err := Run(t.Context(), *cfg, bytes.NewReader(data)); err != nil {
					t.Errorf("%s: Run of a no-op: %v", stage.name, err)
				}
			}
		})
	}
}

// TestGatePoststopRecord: at poststop a container without annotations
// whose state record exists (an engine that passes none at poststop) is
// not a no-op, for the gate as for Run.
func TestGatePoststopRecord(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StateDir = t.TempDir()
	if err := (statefile.Dir{Path: cfg.StateDir}).Write(&statefile.Record{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	s := cfg.settings()
	st := specs.State{Version: "1.0.2", ID: "c1", Status: specs.StateStopped, Bundle: "/b"}
	data, err := json.Marshal(&st)
	if err != nil {
		t.Fatal(err)
	}
	if hookcli.Noop(data, "", &s) {
		t.Fatal("gate: poststop with a state record is a no-op")
	}
	st.Status = specs.StateCreating
	data, _ = json.Marshal(&st)
	if !hookcli.Noop(data, "", &s) {
		t.Fatal("gate: createRuntime without annotations is not a no-op")
	}
	for _, bad := range []string{`{}`, `not json`, `{"id":"c1","status":"paused","bundle":"/b"}`} {
		if hookcli.Noop([]byte(bad), "", &s) {
			t.Errorf("gate: %s is a no-op; the engine must report it", bad)
		}
	}
	if hookcli.Noop(data, "teardown", &s) {
		t.Error("gate: an unknown stage is a no-op; the engine must report it")
	}
}

// TestGateDefaults: the defaults hookcli holds for the gate are the engine
// packages' own.
func TestGateDefaults(t *testing.T) {
	for _, c := range []struct{ name, got, want string }{
		{"state dir", hookcli.DefaultStateDir, statefile.DefaultDir},
		{"status dir", hookcli.DefaultStatusDir, failurelog.DefaultDir},
		{"spool dir", hookcli.DefaultSpoolDir, location.DefaultSpoolDir},
		{"certs dir", hookcli.DefaultCertsDir, location.DefaultCertsDir},
		{"registries.conf", hookcli.DefaultRegistriesConf, location.DefaultRegistriesConf},
		{"state file", hookcli.StateFile("/d", "c1"), statefile.Dir{Path: "/d"}.File("c1")},
	} {
		if c.got != c.want {
			t.Errorf("%s: hookcli has %q, the engine %q", c.name, c.got, c.want)
		}
	}
}

package ocistate

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocisnap/ocisnap/pkg/containerid"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

func TestReadStateSamples(t *testing.T) {
	tests := []struct {
		file   string
		id     string
		status specs.ContainerState
		pid    int
		name   string // value of the pod container-name annotation
	}{
		{"podman-runc-createruntime.json", "095626f143a0bafc2371c844ff8e1a799dbaa94d71954effac57383535c8bc2c", specs.StateCreating, 7259, "web"},
		{"runc-createruntime.json", "rb1", specs.StateCreating, 7392, "db"},
		{"runc-poststop.json", "rb1", specs.StateStopped, 0, "db"},
		{"crun-createruntime.json", "5f0c8a4e4b7a1c2d", specs.StateCreated, 4711, "app"},
		{"crun-poststop.json", "5f0c8a4e4b7a1c2d", specs.StateStopped, 0, "app"},
		{"podman-poststop.json", "2b34f6a0f44a348de520e268ce5dbeafe336b9b4590316fd1929cd94ef322afe", specs.StateStopped, 0, "web"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			s, err := LoadState(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if s.ID != tt.id || s.Status != tt.status || s.Pid != tt.pid {
				t.Errorf("got id=%q status=%q pid=%d, want %q %q %d", s.ID, s.Status, s.Pid, tt.id, tt.status, tt.pid)
			}
			if !filepath.IsAbs(s.Bundle) {
				t.Errorf("bundle %q not absolute", s.Bundle)
			}
			if n := containerName(s.Annotations); n != tt.name {
				t.Errorf("container name %q, want %q", n, tt.name)
			}
		})
	}
}

func TestReadStateInvalid(t *testing.T) {
	const ok = `"bundle":"/b","status":"creating","pid":1`
	tests := []struct {
		name, in string
		invalid  bool // wraps ErrInvalidState (otherwise a decode error)
	}{
		{"empty input", ``, true},
		{"not json", `hello`, false},
		{"truncated", `{"id":"a",`, false},
		{"array", `[]`, false},
		{"pid as string", `{"id":"a","bundle":"/b","pid":"1"}`, false},
		{"negative pid", `{"id":"a","bundle":"/b","pid":-1}`, true},
		{"no id", `{` + ok + `}`, true},
		{"empty id", `{"id":"",` + ok + `}`, true},
		{"dotdot slash", `{"id":"../x",` + ok + `}`, true},
		{"slash", `{"id":"a/b",` + ok + `}`, true},
		{"dot", `{"id":".",` + ok + `}`, true},
		{"dotdot", `{"id":"..",` + ok + `}`, true},
		{"leading dot", `{"id":".hidden",` + ok + `}`, true},
		{"leading dash", `{"id":"-rf",` + ok + `}`, true},
		{"space", `{"id":"a b",` + ok + `}`, true},
		{"newline", `{"id":"a\nb",` + ok + `}`, true},
		{"nul", `{"id":"a\u0000b",` + ok + `}`, true},
		{"absolute", `{"id":"/etc",` + ok + `}`, true},
		// One past the state files' limit: such an id could never have a
		// record, so the hook refuses it at once.
		{"too long", `{"id":"` + strings.Repeat("a", containerid.MaxLen+1) + `",` + ok + `}`, true},
		{"no bundle", `{"id":"a","status":"creating"}`, true},
		{"relative bundle", `{"id":"a","bundle":"run/b"}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ReadState(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("accepted: %+v", s)
			}
			if got := errors.Is(err, ErrInvalidState); got != tt.invalid {
				t.Errorf("errors.Is(%v, ErrInvalidState) = %v, want %v", err, got, tt.invalid)
			}
		})
	}
}

func TestReadStateAccepts(t *testing.T) {
	tests := []struct{ name, in string }{
		{"max length id", `{"id":"` + strings.Repeat("a", containerid.MaxLen) + `","bundle":"/b"}`},
		{"id punctuation", `{"id":"a_b.c+d-e","bundle":"/b"}`},
		{"unknown keys", `{"id":"a","bundle":"/b","root":"/run/crun","rootfs":"/r","created":"2024-01-01T00:00:00Z"}`},
		{"trailing data not read", `{"id":"a","bundle":"/b"} garbage`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ReadState(strings.NewReader(tt.in)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestReadStateCleansBundle(t *testing.T) {
	s, err := ReadState(strings.NewReader(`{"id":"a","bundle":"/run/x/../b/"}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Bundle != "/run/b" {
		t.Errorf("bundle %q", s.Bundle)
	}
}

func TestLoadStateStdin(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "runc-poststop.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := os.Stdin
	os.Stdin = f
	defer func() { os.Stdin = old }()
	s, err := LoadState("-")
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "rb1" {
		t.Errorf("id %q", s.ID)
	}
}

func TestLoadStateMissingFile(t *testing.T) {
	_, err := LoadState(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want ErrNotExist", err)
	}
}

// TestReadStateIDLimit: the hook's input and its state records share one id
// rule: an id of containerid.MaxLen bytes is read and can be recorded, one
// byte more is refused when the state is read (with both sentinels).
func TestReadStateIDLimit(t *testing.T) {
	state := func(id string) string { return `{"id":"` + id + `","bundle":"/b"}` }
	longest := strings.Repeat("a", containerid.MaxLen)
	s, err := ReadState(strings.NewReader(state(longest)))
	if err != nil {
		t.Fatalf("%d-byte id: %v", len(longest), err)
	}
	if err := (statefile.Dir{Path: t.TempDir()}).Write(&statefile.Record{ID: s.ID}); err != nil {
		t.Errorf("record of the %d-byte id: %v", len(longest), err)
	}
	_, err = ReadState(strings.NewReader(state(longest + "a")))
	if !errors.Is(err, ErrInvalidState) || !errors.Is(err, containerid.ErrInvalid) {
		t.Errorf("%d-byte id: %v, want ErrInvalidState and containerid.ErrInvalid", len(longest)+1, err)
	}
}

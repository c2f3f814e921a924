package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	cihooks "go.podman.io/common/pkg/hooks"
	cihook "go.podman.io/common/pkg/hooks/1.0.0"

	"github.com/ocisnap/ocisnap/hooks"
)

type hooksOpts struct {
	dirs        []string
	annotations []string
	stage       string
	command     string
	asJSON      bool
}

func newHooksCmd(a *app) *cobra.Command {
	o := hooksOpts{dirs: []string{cihooks.DefaultDir, cihooks.OverrideDir}}
	cmd := &cobra.Command{
		Use:   "hooks [--hooks-dir DIR]... [--annotation KEY=VALUE]... [--stage STAGE]",
		Short: "Show which hooks run for a container's annotations, and what ocisnap-hook would do",
		Long: "Load hooks.d directories as CRI-O and Podman do (go.podman.io/common/pkg/hooks; later\n" +
			"directories override files of the same name in earlier ones), report every file they\n" +
			"cannot load, and show which hooks a container with the given annotations gets, in which\n" +
			"stage, and for ocisnap's hooks what the hook would do with those annotations and its\n" +
			"arguments (its policy). The exit status is 1 if a hooks.d file is invalid.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.hooks(cmd.Context(), &o)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.dirs, "hooks-dir", o.dirs, "hooks.d directory, in increasing order of preference (repeatable)")
	// A string slice, as podman's --annotation: a value is split at commas
	// (CSV: a quoted field keeps its commas), so that what works here works
	// with podman and the reverse.
	f.StringSliceVarP(&o.annotations, "annotation", "a", nil,
		"container annotation KEY=VALUE (repeatable; split at commas as podman does: separate list items with ';')")
	f.StringVar(&o.stage, "stage", "", "show only this stage (createRuntime, poststop, ...)")
	f.StringVar(&o.command, "command", "", "the container's command (process.args[0]), for hooks matched on commands")
	f.BoolVar(&o.asJSON, "json", false, "print the report as JSON")
	return cmd
}

// hookFile is one hooks.d file as CRI-O/Podman would read it.
type hookFile struct {
	Dir   string `json:"dir"`
	Name  string `json:"name"`
	Valid bool   `json:"valid"`
	// Error is why the file is not loaded.
	Error string `json:"error,omitempty"`
	// OverriddenBy is the directory whose file of the same name wins.
	OverriddenBy string   `json:"overriddenBy,omitempty"`
	Path         string   `json:"path,omitempty"` // hook.path
	Stages       []string `json:"stages,omitempty"`
	Ocisnap      bool     `json:"ocisnap,omitempty"`
	// When is the file's annotation conditions (key regexp: value regexp).
	When map[string]string `json:"when,omitempty"`

	hook *cihook.Hook
}

// stageHook is one hook injected into a stage.
type stageHook struct {
	File    string         `json:"file"`
	Path    string         `json:"path"`
	Args    []string       `json:"args,omitempty"`
	Ocisnap bool           `json:"ocisnap,omitempty"`
	Actions []hooks.Action `json:"actions,omitempty"`
}

type hooksReport struct {
	Dirs        []string               `json:"dirs"`
	MissingDirs []string               `json:"missingDirs,omitempty"`
	Files       []*hookFile            `json:"files"`
	LoadError   string                 `json:"loadError,omitempty"`
	Annotations map[string]string      `json:"annotations"`
	Stages      map[string][]stageHook `json:"stages"`
}

// stageOrder is the order stages run in.
var stageOrder = []string{"createRuntime", "createContainer", "startContainer", "poststart", "poststop"}

func (a *app) hooks(ctx context.Context, o *hooksOpts) error {
	ann := map[string]string{}
	for _, kv := range o.annotations {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			if len(o.annotations) > 1 {
				return usagef("--annotation %q: want KEY=VALUE (a value with a comma is split there, as podman does: "+
					"separate list items with ';', e.g. io.ocisnap.view-binds=a:/a;b:/b)", kv)
			}
			return usagef("--annotation %q: want KEY=VALUE", kv)
		}
		ann[k] = v
	}
	if o.stage == "prestart" {
		o.stage = "createRuntime" // where CRI-O and Podman put prestart hooks
	}
	if o.stage != "" && !slices.Contains(stageOrder, o.stage) {
		return usagef("--stage %q: want one of %s", o.stage, strings.Join(stageOrder, ", "))
	}
	rep := &hooksReport{Dirs: o.dirs, Annotations: ann, Stages: map[string][]stageHook{}}
	byName := map[string]*hookFile{}
	for _, dir := range o.dirs {
		files, err := readHooksDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			rep.MissingDirs = append(rep.MissingDirs, dir)
			continue
		}
		if err != nil {
			return fmt.Errorf("hooks directory %s: %w", dir, err)
		}
		for _, f := range files {
			if prev := byName[f.Name]; prev != nil && f.Valid {
				prev.OverriddenBy = dir
			}
			if f.Valid {
				byName[f.Name] = f
			}
			rep.Files = append(rep.Files, f)
		}
	}

	mgr, err := cihooks.New(ctx, o.dirs, nil)
	if err != nil {
		rep.LoadError = err.Error()
		// CRI-O and Podman stop here. Go on with the valid files to show
		// what they would do once the bad ones are fixed.
		if mgr, err = validOnlyManager(ctx, o.dirs, rep.Files); err != nil {
			return err
		}
	}
	spec := &rspec.Spec{Annotations: ann}
	if o.command != "" {
		spec.Process = &rspec.Process{Args: []string{o.command}}
	}
	if _, err := mgr.Hooks(spec, ann, false); err != nil {
		return fmt.Errorf("match hooks: %w", err)
	}
	if spec.Hooks != nil {
		for stage, list := range map[string][]rspec.Hook{
			"createRuntime": spec.Hooks.CreateRuntime, "createContainer": spec.Hooks.CreateContainer,
			"startContainer": spec.Hooks.StartContainer, "poststart": spec.Hooks.Poststart, "poststop": spec.Hooks.Poststop,
		} {
			if o.stage != "" && stage != o.stage {
				continue
			}
			for _, h := range list {
				sh := stageHook{File: fileOf(byName, h), Path: h.Path, Args: h.Args, Ocisnap: isOcisnap(h.Path)}
				if sh.Ocisnap {
					sh.Actions = hooks.Explain(h.Args, stage, ann)
				}
				rep.Stages[stage] = append(rep.Stages[stage], sh)
			}
		}
	}

	if o.asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := printHooksReport(a, rep, o); err != nil {
		return err
	}
	var bad []string
	for _, f := range rep.Files {
		if !f.Valid {
			bad = append(bad, filepath.Join(f.Dir, f.Name))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d hooks.d file(s) not loaded: %s", len(bad), strings.Join(bad, ", "))
	}
	return nil
}

// readHooksDir reads every *.json file of dir with cihooks.Read, the
// function CRI-O and Podman load them with, to name each bad one.
func readHooksDir(dir string) ([]*hookFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []*hookFile
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue // cihooks.ReadDir skips these too
		}
		p := filepath.Join(dir, e.Name())
		f := &hookFile{Dir: dir, Name: e.Name()}
		h, err := cihooks.Read(p, nil)
		switch {
		case err == nil:
			f.Valid, f.hook = true, h
		case errors.Is(err, fs.ErrNotExist) && h != nil && h.Hook.Path != "":
			// Read stats hook.path; CRI-O and Podman skip such a file
			// without a word.
			f.Error = fmt.Sprintf("skipped silently by CRI-O and Podman: hook.path %s does not exist", h.Hook.Path)
		default:
			f.Error = err.Error()
		}
		if h != nil {
			f.Path, f.Stages, f.Ocisnap = h.Hook.Path, h.Stages, isOcisnap(h.Hook.Path)
			f.When = h.When.Annotations
		}
		out = append(out, f)
	}
	return out, nil
}

// validOnlyManager loads, through cihooks.New, directories that mirror
// dirs with only their valid files (as symlinks of the same names).
func validOnlyManager(ctx context.Context, dirs []string, files []*hookFile) (*cihooks.Manager, error) {
	tmp, err := os.MkdirTemp("", "ocisnap-hooks-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var mirror []string
	for i, dir := range dirs {
		m := filepath.Join(tmp, fmt.Sprint(i))
		if err := os.Mkdir(m, 0o700); err != nil {
			return nil, err
		}
		mirror = append(mirror, m)
		for _, f := range files {
			if f.Dir == dir && f.Valid {
				if err := os.Symlink(filepath.Join(dir, f.Name), filepath.Join(m, f.Name)); err != nil {
					return nil, err
				}
			}
		}
	}
	return cihooks.New(ctx, mirror, nil)
}

// fileOf names the hooks.d file an injected hook came from.
func fileOf(byName map[string]*hookFile, h rspec.Hook) string {
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if f := byName[n]; f.OverriddenBy == "" && reflect.DeepEqual(f.hook.Hook, h) {
			return filepath.Join(f.Dir, f.Name)
		}
	}
	return "?"
}

func isOcisnap(path string) bool { return filepath.Base(path) == "ocisnap-hook" }

func printHooksReport(a *app, rep *hooksReport, o *hooksOpts) error {
	w := newLineWriter(a.stdout)
	for _, dir := range rep.Dirs {
		if slices.Contains(rep.MissingDirs, dir) {
			w.printf("%s: does not exist\n", dir)
			continue
		}
		w.printf("%s:\n", dir)
		n := 0
		for _, f := range rep.Files {
			if f.Dir != dir {
				continue
			}
			n++
			switch {
			case !f.Valid:
				w.printf("  %s: INVALID: %s\n", f.Name, f.Error)
			case f.OverriddenBy != "":
				w.printf("  %s: overridden by %s\n", f.Name, filepath.Join(f.OverriddenBy, f.Name))
			default:
				kind := ""
				if f.Ocisnap {
					kind = " (ocisnap)"
				}
				w.printf("  %s: ok%s, stages %s, %s\n", f.Name, kind, strings.Join(f.Stages, ","), f.Path)
			}
		}
		if n == 0 {
			w.printf("  (no hook files)\n")
		}
	}
	if rep.LoadError != "" {
		w.printf("\nCRI-O and Podman cannot load these directories (no container starts): %s\n", rep.LoadError)
		w.printf("What follows is for the valid files only.\n")
	}
	keys := make([]string, 0, len(rep.Annotations))
	for k := range rep.Annotations {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	w.printf("\nannotations:")
	if len(keys) == 0 {
		w.printf(" (none)")
	}
	w.printf("\n")
	for _, k := range keys {
		w.printf("  %s=%s\n", k, rep.Annotations[k])
	}
	ocisnapRuns := false
	for _, stage := range stageOrder {
		list := rep.Stages[stage]
		if len(list) == 0 {
			continue
		}
		w.printf("\n%s:\n", stage)
		for _, h := range list {
			w.printf("  %s: %s\n", h.File, strings.Join(append([]string{h.Path}, argsTail(h.Args)...), " "))
			if h.Ocisnap {
				ocisnapRuns = true
			}
			for _, act := range h.Actions {
				detail := act.Detail
				if detail == "" {
					detail, act.Problem = act.Problem, ""
				}
				w.printf("    %s: %s\n", act.Action, detail)
				if act.Problem != "" {
					w.printf("      FAILS: %s\n", act.Problem)
				}
			}
		}
	}
	if !ocisnapRuns {
		what := "no ocisnap hook runs for these annotations"
		if o.stage != "" {
			what += " in stage " + o.stage
		}
		w.printf("\n%s\n", what)
		for _, f := range rep.Files {
			if f.Valid && f.Ocisnap && f.OverriddenBy == "" && len(f.When) > 0 {
				w.printf("  %s runs when an annotation matches:", filepath.Join(f.Dir, f.Name))
				for k, v := range f.When {
					w.printf(" %s = %s", k, v)
				}
				w.printf("\n")
			}
		}
	}
	return w.flush()
}

// argsTail is hook.args without argv[0].
func argsTail(args []string) []string {
	if len(args) == 0 {
		return nil
	}
	return args[1:]
}

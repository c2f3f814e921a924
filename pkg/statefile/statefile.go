// Package statefile keeps what a hook learns at container creation for the
// hooks that run later (poststop) and for `ocisnap gc`: one JSON record per
// container in a root-owned state directory (DefaultDir, a tmpfs, so
// records do not outlive a reboot).
//
// Records are written atomically (a reader sees the old record or the new
// one, never a mix) and container ids are checked (package containerid)
// before they become file names. The state directory itself is the administrator's; the record
// contents come from the runtime's state and config, and are trusted only
// as far as the code that reads them checks them again.
package statefile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocisnap/ocisnap/internal/atomicfile"
	"github.com/ocisnap/ocisnap/pkg/containerid"
)

// DefaultDir is the default state directory (README.md, "Security model"; ocisnap-hook(8), FILES).
const DefaultDir = "/run/ocisnap"

// Record is what createRuntime learned about one container.
type Record struct {
	ID string `json:"id"`
	// Name is the container's name when the engine gives one (a
	// Kubernetes container name), for messages and `ocisnap status`.
	Name string `json:"name,omitempty"`
	Pid  int    `json:"pid"`
	// PidStart is the start time of Pid in clock ticks after boot (field 22
	// of /proc/<pid>/stat), so that a reused pid is not taken for the
	// container's process (see procstat.Alive). 0 if unknown.
	PidStart uint64    `json:"pidStart,omitempty"`
	Bundle   string    `json:"bundle,omitempty"`
	Rootfs   string    `json:"rootfs,omitempty"`
	Created  time.Time `json:"created"`
	// Overlay is the overlay behind the rootfs, recorded because the rootfs
	// may be unmounted by poststop (CRI-O unmounts storage first).
	Overlay *Overlay `json:"overlay,omitempty"`
	// MountDestinations are the container's mount targets: the runtime's
	// mountpoint stubs, left out of an export.
	MountDestinations []string               `json:"mountDestinations,omitempty"`
	UIDMappings       []specs.LinuxIDMapping `json:"uidMappings,omitempty"`
	GIDMappings       []specs.LinuxIDMapping `json:"gidMappings,omitempty"`
	Export            *Export                `json:"export,omitempty"`
	Views             []View                 `json:"views,omitempty"`
	// Namespace is the container's Kubernetes namespace as the hook
	// trusted it at create time ("" for none), which scopes {namespace}
	// directories for the export at poststop.
	Namespace string `json:"namespace,omitempty"`
}

// Overlay describes an overlay mount as found in mountinfo.
type Overlay struct {
	Upper     string   `json:"upper,omitempty"`
	Work      string   `json:"work,omitempty"`
	Lowers    []string `json:"lowers,omitempty"`
	DataDirs  []string `json:"dataDirs,omitempty"`
	Options   []string `json:"options,omitempty"`
	UserXattr bool     `json:"userXattr,omitempty"`
}

// Export is an export requested at creation, done at poststop.
type Export struct {
	Dest        string `json:"dest"`
	Format      string `json:"format,omitempty"`
	Compression string `json:"compression,omitempty"`
	// Persist: the destination is io.ocisnap.persist's, restored at
	// create time; on oci: and docker:// the export adds a layer.
	Persist bool `json:"persist,omitempty"`
	// Exclude are the container paths left out of the export with
	// everything below them (io.ocisnap.export-exclude and the
	// administrator's --export-exclude), absolute and clean.
	Exclude []string `json:"exclude,omitempty"`
	// For oci:/docker:// destinations, what the snapshot manifest's
	// config records: the container's name and its base image (name and
	// digest from the engine's annotations, or the chain of lower layers).
	Container       string `json:"container,omitempty"`
	BaseImage       string `json:"baseImage,omitempty"`
	BaseImageDigest string `json:"baseImageDigest,omitempty"`
	LowerChain      string `json:"lowerChain,omitempty"`
}

// View is a read-only view prepared for the container, with what is needed
// to release it. Mounted flags record progress, so that a release after a
// partial prepare undoes exactly what was done. It is the stored form of
// a view.State (package view works on that; the hooks map one to the
// other), so the record format and the view API change apart.
type View struct {
	Kind       string `json:"kind"`
	Source     string `json:"source,omitempty"`
	Mountpoint string `json:"mountpoint,omitempty"`
	LoopDevice string `json:"loopDevice,omitempty"`
	Binds      []Bind `json:"binds,omitempty"`
	Mounted    bool   `json:"mounted,omitempty"`
}

// Bind is one file or directory of a view bound into the container.
type Bind struct {
	Src string `json:"src"`
	Dst string `json:"dst"`
	// Stubs are the components of Dst that were missing in the rootfs and
	// were created for the bind, outermost first: directories, then the
	// mountpoint itself. Each is recorded before it is created; release
	// removes them deepest first, and only while they are empty.
	Stubs []Stub `json:"stubs,omitempty"`
	// Stub is what versions before Stubs recorded: the outermost component
	// created, "" if none. It is read (a record of an older hook is still
	// released) and never written.
	Stub    string `json:"stub,omitempty"`
	Mounted bool   `json:"mounted,omitempty"`
}

// Stub is one mountpoint component created in a container's rootfs.
type Stub struct {
	// Path is the component's container path, symbolic links resolved.
	Path string `json:"path"`
	// Dir says it was created a directory, else an empty regular file.
	Dir bool `json:"dir,omitempty"`
}

// Dir is a state directory. The zero Dir is DefaultDir.
type Dir struct {
	Path string
}

const (
	suffix    = ".json"
	dirPerm   = 0o700
	filePerm  = 0o600
	aboutFile = "state file"
)

func (d Dir) dir() string {
	if d.Path == "" {
		return DefaultDir
	}
	return d.Path
}

// File returns the record file of id, or "" if id is not a valid id. (It
// is not named Path: that is the field.)
func (d Dir) File(id string) string {
	if containerid.Validate(id) != nil {
		return ""
	}
	return filepath.Join(d.dir(), id+suffix)
}

// UpperFile returns the file of id's upper record (package upperrec:
// what the upper held at create time), or "" if id is not a valid id. It
// lives beside the record and goes with it (Remove).
func (d Dir) UpperFile(id string) string {
	if containerid.Validate(id) != nil {
		return ""
	}
	return filepath.Join(d.dir(), id+upperSuffix)
}

const upperSuffix = ".upper"

// Write stores rec atomically under rec.ID, replacing any previous record
// (package atomicfile: a temporary file in the same directory, synced,
// renamed over the record, the directory synced). The directory is
// created (mode 0700) if missing.
func (d Dir) Write(rec *Record) error {
	if rec == nil {
		return errors.New("statefile: write of a nil record")
	}
	if err := containerid.Validate(rec.ID); err != nil {
		return err
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state of container %q: %w", rec.ID, err)
	}
	data = append(data, '\n')
	if err := os.MkdirAll(d.dir(), dirPerm); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	root, err := os.OpenRoot(d.dir())
	if err != nil {
		return fmt.Errorf("write state of container %q: %w", rec.ID, err)
	}
	defer root.Close()
	if err := atomicfile.WriteFile(root, rec.ID+suffix, data, filePerm); err != nil {
		return fmt.Errorf("write state of container %q in %s: %w", rec.ID, d.dir(), err)
	}
	return nil
}

// Read returns the record of id. A missing record is an error wrapping
// fs.ErrNotExist; an unreadable one names its file.
func (d Dir) Read(id string) (*Record, error) {
	if err := containerid.Validate(id); err != nil {
		return nil, err
	}
	path := d.File(id)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read state of container %q: %w", id, err)
	}
	var rec Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("corrupt %s %s: %w", aboutFile, path, err)
	}
	if rec.ID != id {
		return nil, fmt.Errorf("corrupt %s %s: it records container %q", aboutFile, path, rec.ID)
	}
	return &rec, nil
}

// Remove deletes the record of id; removing a missing record is not an
// error.
func (d Dir) Remove(id string) error {
	if err := containerid.Validate(id); err != nil {
		return err
	}
	if err := os.Remove(d.File(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove state of container %q: %w", id, err)
	}
	if err := os.Remove(d.UpperFile(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove upper record of container %q: %w", id, err)
	}
	return nil
}

// List returns every readable record, in id order, and one error per record
// that could not be read (corrupt, or a file whose name is not a valid id).
// A missing directory holds no records. Temporary files (hidden) are
// skipped.
func (d Dir) List() ([]*Record, []error) {
	entries, err := os.ReadDir(d.dir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, []error{fmt.Errorf("list state directory: %w", err)}
	}
	var recs []*Record
	var errs []error
	for _, e := range entries {
		name := e.Name()
		id, ok := strings.CutSuffix(name, suffix)
		if !ok || strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			continue
		}
		if err := containerid.Validate(id); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", aboutFile, filepath.Join(d.dir(), name), err))
			continue
		}
		rec, err := d.Read(id)
		switch {
		case errors.Is(err, fs.ErrNotExist): // removed meanwhile
		case err != nil:
			errs = append(errs, err)
		default:
			recs = append(recs, rec)
		}
	}
	return recs, errs
}

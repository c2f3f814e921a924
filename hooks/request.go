package hooks

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ocisnap/ocisnap/hooks/hookcli"
	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/ocistate"
)

// Annotation keys (docs/annotations.md, "Keys"). Each also has the
// per-container form "<key>.<container-name>", resolved by ocistate.
const (
	KeyRestore           = "io.ocisnap.restore"
	KeyExport            = "io.ocisnap.export"
	KeyExportFormat      = "io.ocisnap.export-format"
	KeyExportCompression = "io.ocisnap.export-compression"
	KeyExportExclude     = "io.ocisnap.export-exclude"
	KeyView              = "io.ocisnap.view"
	KeyPersist           = "io.ocisnap.persist"
	KeyViewBinds         = "io.ocisnap.view-binds"
	KeyViewMount         = "io.ocisnap.view-mount"
	// KeyGVisorRestore is gVisor's restore annotation, honoured only with
	// --gvisor-compat.
	KeyGVisorRestore = ocistate.AnnotationGVisorRestore

	keyPrefix = hookcli.KeyPrefix
)

// knownKeys are the io.ocisnap.* keys the hook acts on, and plannedKeys
// those specified but not implemented yet (docs/annotations.md, "Keys" and
// "Planned"): any other io.ocisnap.* key is refused (checkKeys).
var (
	knownKeys = []string{KeyRestore, KeyExport, KeyExportFormat, KeyExportCompression, KeyExportExclude, KeyView, KeyViewBinds, KeyViewMount, KeyPersist}
	// plannedKeys: none at the moment (a key specified but not built yet
	// fails as ErrUnsupportedKey rather than as a typo).
	plannedKeys []string
)

// What is wrong with an annotation, for callers to test with errors.Is.
// Each comes inside an *AnnotationError naming the annotation.
var (
	// ErrEmptyValue: the key needs a value and has an empty one.
	ErrEmptyValue = errors.New("hooks: empty annotation value")
	// ErrBadValue: the value is not of the key's form.
	ErrBadValue = errors.New("hooks: invalid annotation value")
	// ErrMissingKey: the key needs another key, which is not set.
	ErrMissingKey = errors.New("hooks: annotation needs another annotation")
	// ErrUnknownKey: an io.ocisnap.* key that is none of the known keys nor
	// one's per-container form (a typo, most likely).
	ErrUnknownKey = errors.New("hooks: unknown annotation")
	// ErrUnsupportedKey: a key that is specified but not implemented by
	// this version.
	ErrUnsupportedKey = errors.New("hooks: annotation not supported yet")
)

// AnnotationError is the error for an annotation the hook refuses: Key as
// the container's creator wrote it (a per-container key with its suffix),
// Kind one of the Err* sentinels of this package, Err the cause in words
// (which may wrap a sentinel of another package, e.g.
// layer.ErrUnknownFormat). errors.Is matches both Kind and Err.
type AnnotationError struct {
	Key   string
	Value string
	Kind  error
	Err   error
}

func (e *AnnotationError) Error() string {
	if e.Value == "" {
		return e.Key + ": " + e.Err.Error()
	}
	return e.Key + "=" + e.Value + ": " + e.Err.Error()
}

func (e *AnnotationError) Unwrap() []error { return []error{e.Kind, e.Err} }

func annotationErr(key, value string, kind error, format string, args ...any) *AnnotationError {
	return &AnnotationError{Key: key, Value: value, Kind: kind, Err: fmt.Errorf(format, args...)}
}

// request is what a container's annotations ask of the hook.
type request struct {
	restore, restoreKey string // source and the annotation it came from
	export              *exportRequest
	view                *viewRequest
}

type exportRequest struct {
	// key is the annotation the destination came from (io.ocisnap.export
	// or io.ocisnap.persist).
	key  string
	dest string
	// persist: the destination is also the restore source; on oci: and
	// docker:// the export adds a layer to what was restored.
	persist     bool
	format      layer.Format
	compression layer.Compression
	exclude     []string // absolute, clean container paths
}

func (r *request) empty() bool { return r.restore == "" && r.export == nil && r.view == nil }

// parseRequest reads and validates the annotations. It touches no file.
// Every error is an *AnnotationError.
func parseRequest(c *ocistate.Container, cfg *Config) (*request, error) {
	if err := checkKeys(c.Annotations()); err != nil {
		return nil, err
	}
	req := &request{}
	key, v, ok := c.AnnotationKey(KeyRestore)
	if !ok && cfg.Policy.GVisorCompat {
		key, v, ok = c.AnnotationKey(KeyGVisorRestore)
	}
	if ok {
		if v == "" {
			return nil, annotationErr(key, "", ErrEmptyValue, "empty value")
		}
		req.restore, req.restoreKey = v, key
	}
	pkey, pv, persist := c.AnnotationKey(KeyPersist)
	if persist {
		if pv == "" {
			return nil, annotationErr(pkey, "", ErrEmptyValue, "empty value")
		}
		for _, k := range []string{KeyRestore, KeyExport} {
			if other, _, ok := c.AnnotationKey(k); ok {
				return nil, annotationErr(pkey, pv, ErrBadValue, "given with %s: persist restores and exports itself", other)
			}
		}
		req.restore, req.restoreKey = pv, pkey
	}
	if key, dest, ok := c.AnnotationKey(KeyExport); ok || persist {
		if persist {
			key, dest = pkey, pv
		}
		if dest == "" {
			return nil, annotationErr(key, "", ErrEmptyValue, "empty value")
		}
		fkey, fv, _ := c.AnnotationKey(KeyExportFormat)
		f, err := layer.ParseFormat(fv)
		if err != nil {
			return nil, &AnnotationError{Key: fkey, Value: fv, Kind: ErrBadValue, Err: err}
		}
		ckey, cv, _ := c.AnnotationKey(KeyExportCompression)
		if cv == "" && location.HoldsManifest(dest) {
			cv = string(layer.CompressionZstd) // the default of oci:/docker:// (docs/locations.md)
		}
		comp, err := layer.ParseCompression(cv)
		if err != nil {
			return nil, &AnnotationError{Key: ckey, Value: cv, Kind: ErrBadValue, Err: err}
		}
		req.export = &exportRequest{key: key, dest: dest, persist: persist, format: f, compression: comp}
		if xkey, xv, ok := c.AnnotationKey(KeyExportExclude); ok {
			ex, err := ParseExcludes(xv)
			if err != nil {
				return nil, &AnnotationError{Key: xkey, Value: xv, Kind: ErrBadValue, Err: err}
			}
			req.export.exclude = ex
		}
	} else if xkey, xv, ok := c.AnnotationKey(KeyExportExclude); ok {
		return nil, annotationErr(xkey, xv, ErrMissingKey, "given without %s", KeyExport)
	}
	view, err := parseViewRequest(c)
	if err != nil {
		return nil, err
	}
	req.view = view
	return req, nil
}

// parseViewRequest parses io.ocisnap.view, -binds and -mount. Paths are only
// checked for form here; they are resolved inside their roots when used.
func parseViewRequest(c *ocistate.Container) (*viewRequest, error) {
	key, v, ok := c.AnnotationKey(KeyView)
	bkey, b, hasBinds := c.AnnotationKey(KeyViewBinds)
	mkey, m, hasMount := c.AnnotationKey(KeyViewMount)
	if !ok {
		switch {
		case hasBinds:
			return nil, annotationErr(bkey, b, ErrMissingKey, "given without %s", KeyView)
		case hasMount:
			return nil, annotationErr(mkey, m, ErrMissingKey, "given without %s", KeyView)
		}
		return nil, nil
	}
	req := &viewRequest{}
	switch {
	case v == string(viewImage):
		req.kind = viewImage
	case strings.HasPrefix(v, "dir:"):
		req.kind, req.source = viewDir, strings.TrimPrefix(v, "dir:")
	case strings.HasPrefix(v, "file:"):
		req.kind, req.source = viewFile, strings.TrimPrefix(v, "file:")
	default:
		return nil, annotationErr(key, v, ErrBadValue, "want image, dir:<abs path> or file:<abs path>")
	}
	if req.kind != viewImage && !filepath.IsAbs(req.source) {
		return nil, annotationErr(key, v, ErrBadValue, "source path must be absolute")
	}
	if hasBinds {
		binds, err := ParseBinds(b)
		if err != nil {
			return nil, &AnnotationError{Key: bkey, Value: b, Kind: ErrBadValue, Err: err}
		}
		req.binds = binds
	}
	if hasMount {
		if !filepath.IsAbs(m) || filepath.Clean(m) == "/" {
			return nil, annotationErr(mkey, m, ErrBadValue, "want an absolute path inside the container other than /")
		}
		req.mount = filepath.Clean(m)
	}
	if len(req.binds) == 0 && req.mount == "" {
		return nil, annotationErr(key, v, ErrMissingKey, "nothing to show: set %s or %s", KeyViewBinds, KeyViewMount)
	}
	return req, nil
}

// ParseBinds parses "<src>:<dst>[;<src>:<dst>...]" (or with ","): src a
// path inside the view, dst an absolute path inside the container.
func ParseBinds(s string) ([]viewBind, error) {
	var out []viewBind
	for _, item := range splitList(s) {
		src, dst, ok := strings.Cut(item, ":")
		if !ok || src == "" || dst == "" {
			return nil, fmt.Errorf("bind %q: want <src>:<dst>", item)
		}
		if !filepath.IsAbs(dst) || filepath.Clean(dst) == "/" {
			return nil, fmt.Errorf("bind %q: destination must be an absolute path other than /", item)
		}
		out = append(out, viewBind{src: src, dst: filepath.Clean(dst)})
	}
	return out, nil
}

// ParseExcludes parses an export-exclude list, "<path>[;<path>...]" (or
// with ","): each an absolute container path other than "/", without NUL
// bytes. The paths are returned clean; they are only ever compared with
// the export's own entry names, never opened (docs/annotations.md).
func ParseExcludes(s string) ([]string, error) {
	var out []string
	for _, item := range splitList(s) {
		p, err := cleanExclude(item)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

func cleanExclude(p string) (string, error) { return hookcli.CleanExclude(p) }

// checkKeys refuses every io.ocisnap.* key that is not a known key or the
// per-container form "<key>.<container-name>" of one (for any container
// name: in a pod, the keys of the other containers are there too). Nothing
// the container's creator wrote is silently ignored: a typo fails the start,
// naming the key and the closest known one. The errors, one per key in key
// order, are *AnnotationError.
func checkKeys(ann map[string]string) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(ann)) {
		rest, ok := strings.CutPrefix(k, keyPrefix)
		if !ok || strings.HasPrefix(k, ocistate.AnnotationNRIPrefix) {
			continue // not ours, or ocisnap-nri's stamps (which it owns)
		}
		// Option keys use hyphens, never dots: what follows the first dot
		// is a container name.
		name, suffix, perContainer := strings.Cut(rest, ".")
		base := keyPrefix + name
		valid := !perContainer || suffix != ""
		switch {
		case valid && slices.Contains(knownKeys, base):
		case valid && slices.Contains(plannedKeys, base):
			errs = append(errs, annotationErr(k, ann[k], ErrUnsupportedKey,
				"not supported by this version of ocisnap (planned; see docs/annotations.md)"))
		default:
			want := closestKey(name)
			if perContainer && suffix != "" {
				want += "." + suffix
			}
			errs = append(errs, annotationErr(k, ann[k], ErrUnknownKey, "unknown annotation; did you mean %s?", want))
		}
	}
	return errors.Join(errs...)
}

// maxSuggestLen bounds the part of an unknown key compared with the known
// ones: far longer than any of them.
const maxSuggestLen = 64

// closestKey returns the known or planned key whose name (after
// "io.ocisnap.") is the fewest edits away from name, the first in table
// order on a tie.
func closestKey(name string) string {
	if len(name) > maxSuggestLen {
		name = name[:maxSuggestLen] // the key is the container creator's: bound the work
	}
	best, bestD := "", -1
	for _, k := range slices.Concat(knownKeys, plannedKeys) {
		if d := editDistance(name, strings.TrimPrefix(k, keyPrefix)); bestD < 0 || d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance of a and b, in
// bytes: insertions, deletions, substitutions and transpositions of two
// adjacent bytes (the usual typos: "restor", "exprot") count one each.
func editDistance(a, b string) int {
	// d[i][j] is the distance of a[:i] and b[:j].
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// splitList splits a list value at each ";" and each "," (docs/annotations.md:
// podman splits an --annotation at commas, so ";" needs no quoting). Empty
// items are kept, for the caller to refuse.
func splitList(s string) []string {
	return strings.Split(strings.ReplaceAll(s, ";", ","), ",")
}

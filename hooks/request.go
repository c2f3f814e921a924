package hooks

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/ocistate"
)

// Annotation keys (docs/annotations.md, "Keys"). Each also has the
// per-container form "<key>.<container-name>", resolved by ocistate.
const (
	KeyRestore           = "io.ocisnap.restore"
	KeyExport            = "io.ocisnap.export"
	KeyExportFormat      = "io.ocisnap.export-format"
	KeyExportCompression = "io.ocisnap.export-compression"
	KeyView              = "io.ocisnap.view"
	KeyViewBinds         = "io.ocisnap.view-binds"
	KeyViewMount         = "io.ocisnap.view-mount"
	// KeyGVisorRestore is gVisor's restore annotation, honoured only with
	// --gvisor-compat.
	KeyGVisorRestore = "dev.gvisor.tar.rootfs.upper"

	keyPrefix = "io.ocisnap."
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
	dest        string
	format      layer.Format
	compression layer.Compression
}

func (r *request) empty() bool { return r.restore == "" && r.export == nil && r.view == nil }

// parseRequest reads and validates the annotations. It touches no file.
// Every error is an *AnnotationError.
func parseRequest(c *ocistate.Container, cfg *Config) (*request, error) {
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
	if key, dest, ok := c.AnnotationKey(KeyExport); ok {
		if dest == "" {
			return nil, annotationErr(key, "", ErrEmptyValue, "empty value")
		}
		fkey, fv, _ := c.AnnotationKey(KeyExportFormat)
		f, err := layer.ParseFormat(fv)
		if err != nil {
			return nil, &AnnotationError{Key: fkey, Value: fv, Kind: ErrBadValue, Err: err}
		}
		ckey, cv, _ := c.AnnotationKey(KeyExportCompression)
		comp, err := layer.ParseCompression(cv)
		if err != nil {
			return nil, &AnnotationError{Key: ckey, Value: cv, Kind: ErrBadValue, Err: err}
		}
		req.export = &exportRequest{dest: dest, format: f, compression: comp}
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

// ParseBinds parses "<src>:<dst>[,<src>:<dst>...]": src a path inside the
// view, dst an absolute path inside the container.
func ParseBinds(s string) ([]viewBind, error) {
	var out []viewBind
	for _, item := range strings.Split(s, ",") {
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

package hooks

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ocisnap/ocisnap/pkg/ocistate"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

type viewKind string

const (
	viewImage viewKind = "image"
	viewDir   viewKind = "dir"
	viewFile  viewKind = "file"
)

type viewBind struct{ src, dst string }

type viewRequest struct {
	kind   viewKind
	source string // host path for dir: and file:
	binds  []viewBind
	mount  string // container path where the whole view appears
}

// parseViewRequest parses io.ocisnap.view, -binds and -mount. Paths are only
// checked for form here; they are resolved inside their roots when used.
func parseViewRequest(c *ocistate.Container) (*viewRequest, error) {
	v, ok := c.Annotation(KeyView)
	_, hasBinds := c.Annotation(KeyViewBinds)
	_, hasMount := c.Annotation(KeyViewMount)
	if !ok {
		if hasBinds || hasMount {
			return nil, fmt.Errorf("%s/%s given without %s", KeyViewBinds, KeyViewMount, KeyView)
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
		return nil, fmt.Errorf("%s=%s: want image, dir:<abs path> or file:<abs path>", KeyView, v)
	}
	if req.kind != viewImage && !filepath.IsAbs(req.source) {
		return nil, fmt.Errorf("%s=%s: source path must be absolute", KeyView, v)
	}
	if b, ok := c.Annotation(KeyViewBinds); ok {
		binds, err := ParseBinds(b)
		if err != nil {
			return nil, fmt.Errorf("%s=%s: %w", KeyViewBinds, b, err)
		}
		req.binds = binds
	}
	if m, ok := c.Annotation(KeyViewMount); ok {
		if !filepath.IsAbs(m) || filepath.Clean(m) == "/" {
			return nil, fmt.Errorf("%s=%s: want an absolute path inside the container other than /", KeyViewMount, m)
		}
		req.mount = filepath.Clean(m)
	}
	if len(req.binds) == 0 && req.mount == "" {
		return nil, fmt.Errorf("%s=%s: nothing to show: set %s or %s", KeyView, v, KeyViewBinds, KeyViewMount)
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

func (h *hook) prepareView(ctx context.Context, c *ocistate.Container, v *viewRequest, rec *statefile.Record, stage string) error {
	return fmt.Errorf("%s: boot views are not implemented yet", KeyView)
}

func (h *hook) releaseViews(ctx context.Context, rec *statefile.Record) error {
	return errors.New("boot views are not implemented yet")
}

package layer

import (
	"errors"
	"fmt"
	"path"
	"reflect"
	"strings"
)

// WriteOpt configures Write. Options validate their arguments and fail
// instead of silently falling back.
//
// WithIDMap and WithProgress are shared with Apply (they are ApplyOpts,
// which are WriteOpts too); for Write, WithIDMap maps the upper's host ids
// to container ids with IDMap.ToContainer, and a file whose owner m does
// not map fails the export with ErrUnmappedID. Apply-only options (limits,
// devices) fail Write with errors.ErrUnsupported.
type WriteOpt interface {
	applyWrite(*writeOptions) error
}

type writeOptions struct {
	format      Format
	compression Compression
	exclude     map[string]bool // cleaned paths relative to the layer root
	idMap       *IDMap
	lowers      []string
	userXattr   bool
	progress    func(Stats)
	delta       Delta
	maxBytes    int64
}

func defaultWriteOptions() writeOptions {
	return writeOptions{format: FormatOverlay, compression: CompressionNone}
}

type writeOptFunc func(*writeOptions) error

func (f writeOptFunc) applyWrite(o *writeOptions) error { return f(o) }

// applyWrite makes the options shared by Apply and Write (WithIDMap,
// WithProgress) usable with Write.
func (f ApplyOpt) applyWrite(o *writeOptions) error {
	var a applyOptions
	if err := f(&a); err != nil {
		return err
	}
	if a.idMap != nil {
		o.idMap = a.idMap
	}
	if a.progress != nil {
		o.progress = a.progress
	}
	a.idMap, a.progress = nil, nil
	if !reflect.ValueOf(a).IsZero() {
		return fmt.Errorf("layer: an Apply-only option passed to Write: %w", errors.ErrUnsupported)
	}
	return nil
}

// WithFormat selects the whiteout format; the default is FormatOverlay.
func WithFormat(f Format) WriteOpt {
	return writeOptFunc(func(o *writeOptions) error {
		pf, err := ParseFormat(string(f))
		if err != nil {
			return err
		}
		o.format = pf
		return nil
	})
}

// WithCompression compresses the snapshot with c (default
// CompressionNone). Write closes the compressor, never the writer it was
// given.
func WithCompression(c Compression) WriteOpt {
	return writeOptFunc(func(o *writeOptions) error {
		pc, err := ParseCompression(string(c))
		if err != nil {
			return err
		}
		o.compression = pc
		return nil
	})
}

// WithExclude leaves out the entries at the given container paths
// ("/etc/hosts", "/dev") and everything beneath them: the stubs the runtime
// created in the upper layer as mountpoints for the container's mounts.
// Paths are relative to the upper's root whether or not they start with
// "/"; excluding "/" is refused.
func WithExclude(paths ...string) WriteOpt {
	return writeOptFunc(func(o *writeOptions) error {
		for _, p := range paths {
			rel := strings.TrimPrefix(path.Clean("/"+p), "/")
			if rel == "" {
				return fmt.Errorf("exclude %q: cannot exclude the root", p)
			}
			if o.exclude == nil {
				o.exclude = make(map[string]bool)
			}
			o.exclude[rel] = true
		}
		return nil
	})
}

// WithLowers names the overlay's lower directories, top first, as in the
// mount's lowerdir option (data-only lower directories may follow). Write
// needs them only for metacopy files (whose data is in a lower layer) and
// redirected directories (exported with their lower content); without
// them, such an upper fails the export.
func WithLowers(dirs ...string) WriteOpt {
	return writeOptFunc(func(o *writeOptions) error {
		for _, d := range dirs {
			if !path.IsAbs(d) {
				return fmt.Errorf("lower directory %q: not an absolute path", d)
			}
		}
		o.lowers = append(o.lowers, dirs...)
		return nil
	})
}

// WithUserXattr tells Write that the overlay was mounted with the userxattr
// option: then user.overlay.* xattrs are overlay metadata (as
// trusted.overlay.* are otherwise). Without it, user.overlay.* xattrs are
// exported as ordinary xattrs. trusted.overlay.* xattrs are never exported.
func WithUserXattr(on bool) WriteOpt {
	return writeOptFunc(func(o *writeOptions) error {
		o.userXattr = on
		return nil
	})
}

// WithMaxExportBytes bounds the file content bytes Write exports: the file
// that would pass n fails the export, before any of it is written, with an
// error wrapping ErrLimitExceeded that names the file and the limit. Zero
// or negative means no limit (the default).
func WithMaxExportBytes(n int64) WriteOpt {
	return writeOptFunc(func(o *writeOptions) error {
		o.maxBytes = n
		return nil
	})
}

package layer

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Convert re-encodes the snapshot r (any whiteout format, also mixed;
// plain, gzip or zstd) as a snapshot in format f with compression c,
// streaming: nothing is held in memory but the Reader's whiteout names.
//
// The encoding is Writer's canonical one, so converting a snapshot that
// Write or Writer produced to the other format and back gives the original
// bytes. r is hostile: Reader checks every name and the stream's integrity,
// and Convert fails at the first error, having written an invalid snapshot
// to w. Convert closes the compressor, never w.
func Convert(ctx context.Context, w io.Writer, r io.Reader, f Format, c Compression) (Stats, error) {
	f, err := ParseFormat(string(f))
	if err != nil {
		return Stats{}, err
	}
	if c, err = ParseCompression(string(c)); err != nil {
		return Stats{}, err
	}
	rd, err := NewReader(r)
	if err != nil {
		return Stats{}, fmt.Errorf("convert: %w", err)
	}
	defer rd.Close()
	return encode(w, f, c, func(tw *Writer) error { return convertEntries(ctx, tw, rd) })
}

func convertEntries(ctx context.Context, tw *Writer, rd *Reader) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("convert: %w", err)
		}
		var content io.Reader
		if !e.Whiteout && e.Header != nil && e.Header.Size > 0 {
			content = ctxReader{ctx: ctx, r: rd}
		}
		if err := tw.WriteEntry(e, content); err != nil {
			return fmt.Errorf("convert: %w", err)
		}
	}
}

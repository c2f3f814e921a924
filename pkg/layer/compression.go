package layer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// decompressBufferSize is the read-ahead used to sniff the magic bytes and
// to feed the decoders: large reads keep a zstd or gzip decoder busy instead
// of waiting on small reads from the snapshot file.
const decompressBufferSize = 1 << 20

// zstdMaxWindow bounds the memory a hostile zstd frame can make the decoder
// allocate. 128 MiB is the zstd CLI's own default decompression limit
// (--memory=128MB), which covers every level up to --ultra -22 and
// --long=27.
const zstdMaxWindow = 128 << 20

// zstdWindow is the window the zstd encoder writes with: the zstd CLI's own
// for its default level 3 (--zstd=wlog=21), where the library's default is
// 8 MiB. Measured on a real tree (1.4 GiB of /usr/lib and /usr/share,
// 60,700 entries): peak RSS of an export 79-83 MiB with 8 MiB, 53-57 MiB
// with this, whatever GOMAXPROCS (2-32), and of the restore of what it
// wrote 67 MiB against 57 MiB; the layer is 1.8 % larger, the time the
// same. A restore's memory follows the window of whoever wrote the
// snapshot, up to zstdMaxWindow.
const zstdWindow = 2 << 20

// Magic numbers: RFC 1952 section 2.3.1 (gzip ID1 ID2) and RFC 8878 section
// 3.1.1 (zstd frame magic 0xFD2FB528, little endian).
var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// Decompress detects the compression of r from its first bytes (gzip, zstd,
// or none) and returns a reader of the decompressed stream. Closing it
// releases the decoder; it does not close r.
//
// The compressed formats' checksums are verified when the stream is read to
// its end; a reader that stops early (as tar readers do at the end-of-archive
// blocks) has not verified them. Reader drains the stream for that reason.
func Decompress(r io.Reader) (io.ReadCloser, Compression, error) {
	br := bufio.NewReaderSize(r, decompressBufferSize)
	magic, err := br.Peek(len(zstdMagic))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, "", fmt.Errorf("read snapshot header: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, "", fmt.Errorf("gzip: %w", err)
		}
		return zr, CompressionGzip, nil
	case bytes.HasPrefix(magic, zstdMagic):
		zr, err := zstd.NewReader(br,
			zstd.WithDecoderLowmem(false),
			zstd.WithDecoderMaxWindow(zstdMaxWindow),
			zstd.WithDecoderMaxMemory(zstdMaxWindow))
		if err != nil {
			return nil, "", fmt.Errorf("zstd: %w", err)
		}
		return zstdReadCloser{zr}, CompressionZstd, nil
	}
	return io.NopCloser(br), CompressionNone, nil
}

// zstdReadCloser adapts *zstd.Decoder, whose Close returns nothing. It hides
// the decoder's WriteTo so that readers always pull through Read.
type zstdReadCloser struct{ d *zstd.Decoder }

func (z zstdReadCloser) Read(p []byte) (int, error) { return z.d.Read(p) }
func (z zstdReadCloser) Close() error               { z.d.Close(); return nil }

// Compress returns a writer that compresses into w with c. Close flushes the
// compressed stream (and writes its checksum) but does not close w.
// CompressionNone (or "") passes the bytes through.
func Compress(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case "", CompressionNone:
		return nopWriteCloser{w}, nil
	case CompressionGzip:
		return gzip.NewWriterLevel(w, gzip.DefaultCompression)
	case CompressionZstd:
		zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithWindowSize(zstdWindow))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zw, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownCompression, c)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

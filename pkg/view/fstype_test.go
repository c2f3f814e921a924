package view

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestDetectFS(t *testing.T) {
	img := func(off int, magic []byte, size int) []byte {
		b := make([]byte, size)
		copy(b[off:], magic)
		return b
	}
	le32 := binary.LittleEndian.AppendUint32(nil, erofsMagic)
	le16 := binary.LittleEndian.AppendUint16(nil, extMagic)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"erofs", img(1024, le32, 4096), FSErofs},
		{"squashfs", img(0, []byte("hsqs"), 96), FSSquashfs},
		{"ext4", img(1080, le16, 4096), FSExt4},
		{"empty", nil, ""},
		{"zeros", make([]byte, 8192), ""},
		{"short erofs", img(1024, le32, 4096)[:1026], ""},
		{"big-endian erofs", img(1024, binary.BigEndian.AppendUint32(nil, erofsMagic), 4096), ""},
		{"tar", img(257, []byte("ustar\x0000"), 1024), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DetectFS(bytes.NewReader(tc.data))
			if tc.want == "" {
				if !errors.Is(err, ErrUnknownImage) {
					t.Fatalf("DetectFS = %q, %v; want ErrUnknownImage", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("DetectFS = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

package overlay

import (
	"reflect"
	"testing"
)

func TestSplitLowerdir(t *testing.T) {
	tests := []struct {
		name, raw     string
		lowers, datas []string
	}{
		{"one", "/a", []string{"/a"}, nil},
		{"three", "/a:/b:/c", []string{"/a", "/b", "/c"}, nil},
		{"relative", "l/AAA:l/BBB", []string{"l/AAA", "l/BBB"}, nil},
		{"data-only", "/a:/b::/d1::/d2", []string{"/a", "/b"}, []string{"/d1", "/d2"}},
		{"raw escaped colon", `/a\:b:/c`, []string{"/a:b", "/c"}, nil},
		{"old kernel escaped colon", `/a\134:b:/c`, []string{"/a:b", "/c"}, nil},
		{"new kernel escaped colon", `/a\072b:/c`, []string{"/a:b", "/c"}, nil},
		{"comma and space", `/a\054b:/c\040d`, []string{"/a,b", "/c d"}, nil},
		{"equals", `/a\075b`, []string{"/a=b"}, nil},
		{"literal backslash new kernel", `/a\134b`, []string{`/a\b`}, nil},
		{"not octal", `/a\8`, []string{"/a8"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, d, err := splitLowerdir(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(l, tt.lowers) || !reflect.DeepEqual(d, tt.datas) {
				t.Errorf("got %q %q, want %q %q", l, d, tt.lowers, tt.datas)
			}
		})
	}
	for _, bad := range []string{"", ":", "/a:", "/a::", ":/a", "/a:::/b"} {
		if l, d, err := splitLowerdir(bad); err == nil {
			t.Errorf("%q accepted: %q %q", bad, l, d)
		}
	}
}

func TestUnescapeOctal(t *testing.T) {
	tests := map[string]string{
		`plain`:             "plain",
		`a\040b`:            "a b",
		`a\054b\134c\011d`:  "a,b\\c\td",
		`trailing\`:         `trailing\`,
		`short\04`:          `short\04`,
		`\400 is not octal`: `\400 is not octal`,
		`\134040`:           `\040`, // decoded once, not twice
	}
	for in, want := range tests {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseOptionsFlags(t *testing.T) {
	tests := []struct {
		opts                           string
		userXattr, metacopy, redirects bool
	}{
		{"rw,lowerdir=/a", false, false, false},
		{"rw,lowerdir=/a,userxattr", true, false, false},
		{"rw,lowerdir=/a,metacopy=on", false, true, true},
		{"rw,lowerdir=/a,metacopy=off", false, false, false},
		{"rw,lowerdir=/a,redirect_dir=on", false, false, true},
		{"rw,lowerdir=/a,redirect_dir=follow", false, false, true},
		{"rw,lowerdir=/a,redirect_dir=nofollow,userxattr", true, false, false},
		{"rw,lowerdir=/a,redirect_dir=off", false, false, false},
	}
	for _, tt := range tests {
		p, err := parseOptions(tt.opts)
		if err != nil {
			t.Fatal(err)
		}
		if p.userXattr != tt.userXattr || p.metacopy != tt.metacopy || p.redirectDir != tt.redirects {
			t.Errorf("%q: userxattr=%v metacopy=%v redirect=%v", tt.opts, p.userXattr, p.metacopy, p.redirectDir)
		}
	}
}

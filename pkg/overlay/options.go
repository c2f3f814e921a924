package overlay

import (
	"fmt"
	"strings"
)

// layerOption is a path-valued overlay option before resolution: the option
// name is kept for error messages.
type layerOption struct {
	opt  string // "lowerdir", "lowerdir+", "datadir+", "upperdir", "workdir"
	path string // decoded, possibly relative
}

// parsedOptions is the result of parseOptions, before paths are resolved.
type parsedOptions struct {
	upper, work   *layerOption
	lowers, datas []layerOption
	userXattr     bool
	metacopy      bool
	redirectDir   bool
	raw           []string
}

// parseOptions parses overlayfs super options as mountinfo shows them (the
// VFSOptions field, which moby/sys/mountinfo leaves undecoded). The kernel
// escapes space, tab, newline, backslash, comma and "=" in values as octal
// \ooo (seq_escape), so splitting at raw commas is safe and values are decoded
// here, once.
func parseOptions(vfsOptions string) (*parsedOptions, error) {
	p := &parsedOptions{raw: strings.Split(vfsOptions, ",")}
	redirectSet := false
	for _, o := range p.raw {
		key, val, _ := strings.Cut(o, "=")
		switch key {
		case "lowerdir":
			lowers, datas, err := splitLowerdir(val)
			if err != nil {
				return nil, err
			}
			// lowerdir= replaces what came before, as in the kernel.
			p.lowers, p.datas = nil, nil
			for _, l := range lowers {
				p.lowers = append(p.lowers, layerOption{"lowerdir", l})
			}
			for _, d := range datas {
				p.datas = append(p.datas, layerOption{"lowerdir", d})
			}
		case "lowerdir+", "datadir+":
			// One layer per option: colons are literal here.
			v := unescapeOctal(val)
			if v == "" {
				return nil, fmt.Errorf("overlay option %s= is empty", key)
			}
			if key == "lowerdir+" {
				p.lowers = append(p.lowers, layerOption{key, v})
			} else {
				p.datas = append(p.datas, layerOption{key, v})
			}
		case "upperdir", "workdir":
			v := unescapeOctal(val)
			if v == "" {
				return nil, fmt.Errorf("overlay option %s= is empty", key)
			}
			if key == "upperdir" {
				p.upper = &layerOption{key, v}
			} else {
				p.work = &layerOption{key, v}
			}
		case "userxattr":
			p.userXattr = true
		case "metacopy":
			p.metacopy = val == "on"
		case "redirect_dir":
			redirectSet = true
			p.redirectDir = val == "on" || val == "follow"
		}
	}
	if p.metacopy && !redirectSet {
		// The kernel turns redirect_dir on with metacopy=on unless told
		// otherwise (and refuses the conflicting combinations).
		p.redirectDir = true
	}
	return p, nil
}

// splitLowerdir splits a lowerdir= value from mountinfo into regular and
// data-only layers. Layers are separated by ":", data-only layers follow the
// first "::". A colon inside a path reaches us in one of three spellings:
//
//   - "\072": kernels >= 6.5 escape ":" when showing lowerdir=;
//   - "\134:": older kernels show the path as the mounter spelled it, "\:",
//     with the backslash octal-escaped;
//   - "\:": the mounter's own spelling, for input that was not through
//     the kernel's escaping.
//
// A raw backslash escapes the next character (as the kernel's ovl_unescape
// does); an octal-escaped backslash is a literal backslash unless a raw colon
// follows. Old kernels showed a literal backslash given as "\\" as
// "\134\134", which decodes to two backslashes here: paths with backslashes
// are not worth more.
func splitLowerdir(raw string) (lowers, datas []string, err error) {
	if raw == "" {
		return nil, nil, fmt.Errorf("overlay option lowerdir= is empty")
	}
	var cur strings.Builder
	data := false
	flush := func() error {
		if cur.Len() == 0 {
			return fmt.Errorf("overlay option lowerdir=%q has an empty layer", raw)
		}
		if data {
			datas = append(datas, cur.String())
		} else {
			lowers = append(lowers, cur.String())
		}
		cur.Reset()
		return nil
	}
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '\\' && isOctal(raw, i+1):
			b := octal(raw[i+1 : i+4])
			i += 4
			if b == '\\' && i < len(raw) && raw[i] == ':' {
				b = ':'
				i++
			}
			cur.WriteByte(b)
		case c == '\\' && i+1 < len(raw):
			cur.WriteByte(raw[i+1])
			i += 2
		case c == ':':
			if err := flush(); err != nil {
				return nil, nil, err
			}
			i++
			if i < len(raw) && raw[i] == ':' {
				data = true
				i++
			}
		default:
			cur.WriteByte(c)
			i++
		}
	}
	if err := flush(); err != nil {
		return nil, nil, err
	}
	return lowers, datas, nil
}

// unescapeOctal decodes the \ooo escapes of a mountinfo field. Anything
// else, including a backslash not followed by three octal digits, is kept.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] == '\\' && isOctal(s, i+1) {
			b.WriteByte(octal(s[i+1 : i+4]))
			i += 4
			continue
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

// isOctal reports whether s[i:i+3] are three octal digits encoding a byte.
func isOctal(s string, i int) bool {
	if i+3 > len(s) {
		return false
	}
	for _, c := range []byte(s[i : i+3]) {
		if c < '0' || c > '7' {
			return false
		}
	}
	return s[i] <= '3'
}

func octal(s string) byte {
	return (s[0]-'0')<<6 | (s[1]-'0')<<3 | (s[2] - '0')
}

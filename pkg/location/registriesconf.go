package location

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// DefaultRegistriesConf is containers-registries.conf(5)'s system file;
// its drop-in directory is the same name with ".d" appended.
const DefaultRegistriesConf = "/etc/containers/registries.conf"

// registriesConf is the part of containers-registries.conf(5) ocisnap
// reads: which registries are "insecure" (docs/locations.md, "TLS").
type registriesConf struct {
	Registries []struct {
		Prefix   string `toml:"prefix"`
		Location string `toml:"location"`
		Insecure *bool  `toml:"insecure"`
	} `toml:"registry"`
	// Version 1 format: [registries.insecure] registries = [...].
	V1 struct {
		Insecure struct {
			Registries []string `toml:"registries"`
		} `toml:"insecure"`
	} `toml:"registries"`
}

// insecureEntry is one registry's insecure setting: the prefix (its
// location, or its prefix when it has one) and the value.
type insecureEntry struct {
	prefix   string
	insecure bool
}

// loadInsecure reads file and then every *.conf in file + ".d", in name
// order; a later entry for the same prefix replaces an earlier one, as
// containers-registries.conf(5) merges drop-ins. A missing file or
// directory adds nothing; a file that does not parse is an error naming
// it.
func loadInsecure(file string) ([]insecureEntry, error) {
	if file == "" {
		file = DefaultRegistriesConf
	}
	files := []string{file}
	ents, err := os.ReadDir(file + ".d")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("registries.conf drop-ins %s.d: %w", file, unwrapPathErr(err))
	}
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".conf") {
			files = append(files, filepath.Join(file+".d", e.Name()))
		}
	}
	var out []insecureEntry
	set := func(prefix string, insecure bool) {
		prefix = strings.TrimSuffix(prefix, "/")
		out = slices.DeleteFunc(out, func(e insecureEntry) bool { return e.prefix == prefix })
		out = append(out, insecureEntry{prefix: prefix, insecure: insecure})
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("registries.conf %s: %w", f, unwrapPathErr(err))
		}
		var c registriesConf
		if _, err := toml.Decode(string(data), &c); err != nil {
			return nil, fmt.Errorf("registries.conf %s: %w", f, err)
		}
		for _, r := range c.V1.Insecure.Registries {
			set(r, true)
		}
		for _, r := range c.Registries {
			p := r.Prefix
			if p == "" {
				p = r.Location
			}
			if p != "" && r.Insecure != nil {
				set(p, *r.Insecure)
			}
		}
	}
	return out, nil
}

// insecureRegistry reports whether registries.conf (file, "" for
// DefaultRegistriesConf) marks host/repo insecure: the entry with the
// longest prefix matching it decides, a prefix matching host/repo at a
// path boundary, or "*.domain" matching a host below domain (as
// containers-registries.conf(5) matches). Insecure means only that the
// registry's TLS certificate is not verified: ocisnap still speaks https
// only.
func insecureRegistry(file, host, repo string) (bool, error) {
	ents, err := loadInsecure(file)
	if err != nil {
		return false, err
	}
	ref := host + "/" + repo
	best, insecure := -1, false
	for _, e := range ents {
		n := matchPrefix(e.prefix, host, ref)
		if n > best {
			best, insecure = n, e.insecure
		}
	}
	return insecure, nil
}

// matchPrefix returns the length of prefix when it matches ref (whose
// host part is host), else -1.
func matchPrefix(prefix, host, ref string) int {
	if wild, ok := strings.CutPrefix(prefix, "*."); ok {
		h, _, _ := strings.Cut(wild, "/")
		if h == wild && strings.HasSuffix(host, "."+wild) {
			return len(prefix)
		}
		return -1
	}
	if ref == prefix || strings.HasPrefix(ref, prefix+"/") {
		return len(prefix)
	}
	return -1
}

package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// WriteFuzzSeedsEnv names the environment variable that makes AddSeed also
// write each seed into the package's testdata/fuzz/<target>/ directory
// (`make fuzz-seeds`), where `go test` runs it as part of the seed corpus
// and the fuzzer keeps the failing inputs it finds next to it.
const WriteFuzzSeedsEnv = "OCISNAP_WRITE_FUZZ_SEEDS"

// AddSeed adds a named seed to the fuzz target f (f.Add(args...)) and,
// with OCISNAP_WRITE_FUZZ_SEEDS=1, writes it as
// testdata/fuzz/<target>/seed-<name> in the "go test fuzz v1" format.
// Arguments may be []byte, string, bool, int or int64.
func AddSeed(f *testing.F, name string, args ...any) {
	f.Helper()
	f.Add(args...)
	if os.Getenv(WriteFuzzSeedsEnv) != "1" {
		return
	}
	var sb strings.Builder
	sb.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&sb, "[]byte(%s)\n", strconv.Quote(string(v)))
		case string:
			fmt.Fprintf(&sb, "string(%s)\n", strconv.Quote(v))
		case bool:
			fmt.Fprintf(&sb, "bool(%t)\n", v)
		case int:
			fmt.Fprintf(&sb, "int(%d)\n", v)
		case int64:
			fmt.Fprintf(&sb, "int64(%d)\n", v)
		default:
			f.Fatalf("AddSeed %s: unsupported argument type %T", name, a)
		}
	}
	dir := filepath.Join("testdata", "fuzz", f.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(sb.String()), 0o644); err != nil {
		f.Fatal(err)
	}
}

package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// childEnv makes TestSkipOrFail, run again as its own test binary, be the
// test that calls SkipOrFail.
const childEnv = "OCISNAP_TESTUTIL_CHILD"

// TestSkipOrFail runs itself as a child test binary that calls SkipOrFail:
// with CI=true the child fails with the reason, without CI it skips, and
// never does it go on.
func TestSkipOrFail(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		SkipOrFail(t, "needs %s", "something")
		t.Error("SkipOrFail returned")
		return
	}
	for _, c := range []struct {
		ci       string
		fail     bool
		want     string
		notWants []string
	}{
		{"true", true, "--- FAIL: TestSkipOrFail", []string{"SKIP", "returned"}},
		{"", false, "--- SKIP: TestSkipOrFail", []string{"FAIL", "returned"}},
		{"false", false, "--- SKIP: TestSkipOrFail", []string{"FAIL", "returned"}},
	} {
		t.Run("CI="+c.ci, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run", "^TestSkipOrFail$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), childEnv+"=1", "CI="+c.ci)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if failed := errors.As(err, &ee); failed != c.fail || (err != nil && ee == nil) {
				t.Errorf("child exit: %v, want failure %v\n%s", err, c.fail, out)
			}
			if !strings.Contains(string(out), c.want) || !strings.Contains(string(out), "needs something") {
				t.Errorf("child output lacks %q and the reason:\n%s", c.want, out)
			}
			for _, nw := range c.notWants {
				if strings.Contains(string(out), nw) {
					t.Errorf("child output has %q:\n%s", nw, out)
				}
			}
		})
	}
}

// TestSkipIfShort runs itself as a child test binary that calls
// SkipIfShort: with -test.short it skips, CI=true or not, and without it
// goes on.
func TestSkipIfShort(t *testing.T) {
	if os.Getenv(childEnv) == "short" {
		SkipIfShort(t, "podman")
		t.Log("went on")
		return
	}
	for _, c := range []struct {
		short bool
		ci    string
		want  string
	}{
		{true, "true", "--- SKIP: TestSkipIfShort"},
		{true, "", "--- SKIP: TestSkipIfShort"},
		{false, "true", "went on"},
	} {
		t.Run(fmt.Sprintf("short=%v,CI=%s", c.short, c.ci), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run", "^TestSkipIfShort$", "-test.v", "-test.count=1",
				fmt.Sprintf("-test.short=%v", c.short))
			cmd.Env = append(os.Environ(), childEnv+"=short", "CI="+c.ci)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("child exit: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("child output lacks %q:\n%s", c.want, out)
			}
			if c.short && (strings.Contains(string(out), "went on") || !strings.Contains(string(out), "-short: skipped, it drives podman")) {
				t.Errorf("child did not skip with the reason:\n%s", out)
			}
		})
	}
}

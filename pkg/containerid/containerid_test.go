package containerid

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// TestValidate: the runtimes' id rule, one name component that is never
// hidden, at most MaxLen bytes.
func TestValidate(t *testing.T) {
	for _, id := range []string{
		"", ".", "..", "../x", "a/b", "/abs", "-flag", ".hidden", "_x", "+x",
		"a\x00b", "a b", "a\nb", "a:b", "a*", "é", strings.Repeat("a", MaxLen+1),
	} {
		if err := Validate(id); !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%.20q) = %v, want ErrInvalid", id, err)
		}
	}
	for _, id := range []string{"a", "0", "abc.def", "a+b-c_d.e", "x..", strings.Repeat("f", 64), strings.Repeat("a", MaxLen)} {
		if err := Validate(id); err != nil {
			t.Errorf("Validate(%s): %v", fmt.Sprintf("%.20q", id), err)
		}
	}
}

// TestValidMatchesPattern: the hand-written check accepts exactly what the
// documented pattern matches, over every string of up to 3 bytes from an
// alphabet holding each class of the rule and its neighbours.
func TestValidMatchesPattern(t *testing.T) {
	re := regexp.MustCompile(pattern)
	alphabet := []byte("aZz09_.+-/ \x00\n:*@[`{\xc3\xa9\x7f")
	var check func(s []byte)
	n := 0
	check = func(s []byte) {
		if got, want := valid(string(s)), re.Match(s); got != want {
			t.Errorf("valid(%q) = %v, pattern says %v", s, got, want)
		}
		n++
		if len(s) == 3 {
			return
		}
		for _, c := range alphabet {
			check(append(s, c))
		}
	}
	check(nil)
	if n < 1000 {
		t.Fatalf("checked only %d strings", n)
	}
}

package containerid

import (
	"errors"
	"fmt"
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

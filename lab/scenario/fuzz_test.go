package scenario

import (
	"errors"
	"testing"
)

// FuzzLoad feeds arbitrary YAML to Load: it must never panic, every error
// must be one of the package's positioned error types, and every plan must
// have cells with an id and variables. The seed corpus is in
// testdata/fuzz/FuzzLoad (nat-paws.yaml and small valid and broken variants).
func FuzzLoad(f *testing.F) {
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := Load("f.yaml", src, Options{})
		if err != nil {
			if p != nil {
				t.Fatalf("plan and error: %v", err)
			}
			var e *Error
			var es Errors
			switch {
			case errors.As(err, &es):
				if len(es) == 0 {
					t.Fatal("empty Errors")
				}
			case errors.As(err, &e):
			default:
				t.Fatalf("error %T is not *Error or Errors: %v", err, err)
			}
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		if len(p.Cells) == 0 || len(p.Cells) > MaxCells {
			t.Fatalf("%d cells", len(p.Cells))
		}
		for i, c := range p.Cells {
			if c.ID == "" || len(c.Vars) == 0 || c.S == nil {
				t.Fatalf("cell %d: id %q, %d vars", i, c.ID, len(c.Vars))
			}
			if c.Index != i {
				t.Fatalf("cell %s: index %d, want %d", c.ID, c.Index, i)
			}
		}
	})
}

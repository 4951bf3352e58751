package diag

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSortDedupes(t *testing.T) {
	l := List{
		Errorf(Pos{File: "b.cconf", Line: 1, Col: 1}, "second file"),
		Errorf(Pos{File: "a.cconf", Line: 10, Col: 2}, "later line"),
		Errorf(Pos{File: "a.cconf", Line: 2, Col: 5}, "shared module error"),
		Errorf(Pos{File: "a.cconf", Line: 2, Col: 5}, "shared module error"),
		Errorf(Pos{File: "a.cconf", Line: 2, Col: 1}, "earlier column"),
	}
	l.Sort()
	want := "a.cconf:2:1: earlier column\na.cconf:2:5: shared module error\na.cconf:10:2: later line\nb.cconf:1:1: second file"
	if diff := cmp.Diff(want, l.Error()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestPosString(t *testing.T) {
	for _, tt := range []struct {
		p    Pos
		want string
	}{{Pos{File: "f"}, "f"}, {Pos{File: "f", Line: 3}, "f:3"}, {Pos{File: "f", Line: 3, Col: 4}, "f:3:4"}} {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.p, got, tt.want)
		}
	}
}

func TestDidYouMean(t *testing.T) {
	fields := []string{"name", "owner", "priority", "memory_mb"}
	for _, tt := range []struct{ in, want string }{
		{"nmae", ` (did you mean "name"?)`},
		{"memroy_mb", ` (did you mean "memory_mb"?)`},
		{"prio", ""},
		{"zzzzzz", ""},
	} {
		if got := DidYouMean(tt.in, fields); got != tt.want {
			t.Errorf("DidYouMean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

package suggest

import (
	"slices"
	"testing"
)

func TestDistance(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"listen", "listen", 0}, {"lisen", "listen", 1}, {"", "abc", 3},
		{"kitten", "sitting", 3}, {"eastus22", "eastus2", 1}, {"abc", "", 3},
	}
	for _, c := range cases {
		if got := Distance(c.a, c.b); got != c.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestNearest(t *testing.T) {
	words := []string{"listen", "limits.dial_timeout", "mode", "model"}
	if got := Nearest("lisen", words, 3, 1, nil); !slices.Equal(got, []string{"listen"}) {
		t.Errorf("got %v", got)
	}
	if got := Nearest("mod", words, 2, 3, nil); !slices.Equal(got, []string{"mode", "model"}) {
		t.Errorf("ties and order: got %v", got)
	}
	if got := Nearest("zzzzzz", words, 2, 3, nil); len(got) != 0 {
		t.Errorf("nothing is near: got %v", got)
	}
}

package kver

import "testing"

func TestParse(t *testing.T) {
	for _, c := range []struct {
		rel          string
		major, minor int
		ok           bool
	}{
		{"4.10.17", 4, 10, true}, {"6.1.0-57-amd64", 6, 1, true}, {"5.13.0-rc1+", 5, 13, true},
		{"6.18.44-fc-v1098", 6, 18, true}, {"4.9", 4, 9, true}, {"5.4-rc7", 5, 4, true},
		{"", 0, 0, false}, {"garbage", 0, 0, false}, {"4", 0, 0, false}, {"4.x", 0, 0, false},
	} {
		ma, mi, ok := Parse(c.rel)
		if ok != c.ok || ok && (ma != c.major || mi != c.minor) {
			t.Errorf("Parse(%q) = %d, %d, %v; want %d, %d, %v", c.rel, ma, mi, ok, c.major, c.minor, c.ok)
		}
	}
	if b, ok := Before("4.9.337", 4, 12); !b || !ok {
		t.Error("4.9 is before 4.12")
	}
	if b, ok := Before("5.13.0", 5, 13); b || !ok {
		t.Error("5.13 is not before 5.13")
	}
}

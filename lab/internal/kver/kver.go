// Package kver reads a kernel release ("4.10.17", "6.1.0-57-amd64",
// "5.13.0-rc1+"): the one parser of major and minor for the packages that
// decide by kernel version.
package kver

import (
	"strconv"
	"strings"
)

// Parse returns the release's major and minor numbers; ok is false when
// it does not start with two of them.
func Parse(rel string) (major, minor int, ok bool) {
	a, rest, ok1 := strings.Cut(rel, ".")
	b := rest
	if i := strings.IndexFunc(b, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		b = b[:i]
	}
	var err1, err2 error
	major, err1 = strconv.Atoi(a)
	minor, err2 = strconv.Atoi(b)
	return major, minor, ok1 && err1 == nil && err2 == nil
}

// Before says whether rel is older than major.minor; ok is false when rel
// cannot be read.
func Before(rel string, major, minor int) (before, ok bool) {
	ma, mi, ok := Parse(rel)
	return ma < major || ma == major && mi < minor, ok
}

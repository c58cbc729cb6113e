// Package scenarios holds the scenario files shipped with twlab, embedded so
// that `twlab run nat-paws.yaml` works from any directory.
package scenarios

import (
	"bufio"
	"bytes"
	"embed"
	"io/fs"
	"slices"
	"strings"
)

//go:embed *.yaml
var files embed.FS

// Names lists the shipped scenarios' file names.
func Names() []string {
	ents, _ := fs.ReadDir(files, ".")
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

// Read returns a shipped scenario by file name, with or without ".yaml".
func Read(name string) ([]byte, bool) {
	if !strings.HasSuffix(name, ".yaml") {
		name += ".yaml"
	}
	if strings.ContainsAny(name, "/\\") {
		return nil, false
	}
	b, err := files.ReadFile(name)
	return b, err == nil
}

// Summary is the first sentence of a scenario's description, for listings.
// It reads the YAML text instead of decoding it so that a listing never
// depends on the scenario being valid.
func Summary(src []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(src))
	in := false
	var b strings.Builder
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "description:") {
			in = true
			rest := strings.TrimSpace(strings.TrimPrefix(line, "description:"))
			if rest != ">" && rest != "|" && rest != ">-" && rest != "|-" {
				b.WriteString(rest)
				break
			}
			continue
		}
		if in {
			if line != "" && line[0] != ' ' {
				break
			}
			t := strings.TrimSpace(line)
			if t == "" {
				break
			}
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(t)
		}
	}
	s := b.String()
	if i := strings.Index(s, ". "); i >= 0 {
		s = s[:i+1]
	}
	return s
}

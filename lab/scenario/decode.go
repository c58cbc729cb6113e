package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// ReadFile reads a scenario file with the size and encoding checks applied
// before any parsing.
func ReadFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot read scenario: " + unwrap(err).Error()}
	}
	if st.IsDir() {
		return nil, &Error{File: path, Msg: "is a directory, want a scenario YAML file"}
	}
	if st.Size() > MaxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("file is %d bytes; scenarios are limited to %d", st.Size(), MaxFileSize)}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot read scenario: " + unwrap(err).Error()}
	}
	return b, nil
}

func unwrap(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// parseTree parses YAML text into a node tree with the basic checks.
func parseTree(file string, src []byte) (*yaml.Node, error) {
	if len(src) > MaxFileSize {
		return nil, &Error{File: file, Msg: fmt.Sprintf("scenario is %d bytes; the limit is %d", len(src), MaxFileSize)}
	}
	if !utf8.Valid(src) {
		bad := firstInvalid(src)
		line := 1 + bytes.Count(src[:bad], []byte("\n"))
		col := 1 + utf8.RuneCount(src[bytes.LastIndexByte(src[:bad], '\n')+1:bad])
		return nil, &Error{File: file, Line: line, Col: col, Msg: "not valid UTF-8; scenarios are UTF-8 text"}
	}
	if len(bytes.TrimSpace(src)) == 0 {
		return nil, &Error{File: file, Msg: "empty scenario; want at least name, clients and load (see `twlab list` for examples)"}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, &Error{File: file, Msg: "no YAML content (only comments); want at least name, clients and load"}
	} else if err != nil {
		return nil, yamlSyntaxError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{File: file, Line: extra.Line, Col: extra.Column, Msg: "more than one YAML document; a scenario is one document"}
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlSyntaxError(file, err) // a broken second document is still broken
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		n := &doc
		if len(doc.Content) == 1 {
			n = doc.Content[0]
		}
		return nil, &Error{File: file, Line: n.Line, Col: n.Column, Msg: "the top level must be a mapping (name:, clients:, load:, …)"}
	}
	if err := checkAliases(file, doc.Content[0], 0); err != nil {
		return nil, err
	}
	return doc.Content[0], nil
}

// checkAliases refuses anchors/aliases (billion-laughs) and absurd nesting.
func checkAliases(file string, n *yaml.Node, depth int) error {
	if depth > 32 {
		return &Error{File: file, Line: n.Line, Col: n.Column, Msg: "nesting deeper than 32 levels"}
	}
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return &Error{File: file, Line: n.Line, Col: n.Column, Msg: "YAML anchors and aliases are not supported in scenarios"}
	}
	for _, c := range n.Content {
		if err := checkAliases(file, c, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func firstInvalid(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

func yamlSyntaxError(file string, err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ":"); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line = n
				msg = strings.TrimSpace(rest[i+1:])
			}
		}
	}
	return &Error{File: file, Line: line, Msg: "YAML syntax: " + msg}
}

// decode turns a tree into a validated Scenario with defaults.
func decode(file string, root *yaml.Node) (*Scenario, Errors) {
	var s Scenario
	if err := root.Decode(&s); err != nil {
		return nil, Errors{decodeError(file, root, err)}
	}
	// A field written as 0 (or "") is validated, not replaced by its default.
	given := map[string]bool{}
	for p, n := range indexTree(root) {
		given[p] = n.ShortTag() != "!!null"
	}
	defaults(&s, given)
	return &s, validate(file, root, &s)
}

func decodeError(file string, root *yaml.Node, err error) *Error {
	var pe *posError
	if errors.As(err, &pe) {
		field, _ := fieldAt(root, pe.line, func(n *yaml.Node) bool { return n.Column == pe.col })
		return &Error{File: file, Line: pe.line, Col: pe.col, Field: field, Msg: pe.msg}
	}
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		at := func(line int, match func(*yaml.Node) bool, msg string) *Error {
			e := &Error{File: file, Line: line, Msg: msg}
			var n *yaml.Node
			if e.Field, n = fieldAt(root, line, match); n != nil {
				e.Col = n.Column
			}
			return e
		}
		if m := typeErrRE.FindStringSubmatch(te.Errors[0]); m != nil {
			line, _ := strconv.Atoi(m[1])
			// yaml.v3 quotes long values as "1234567..."
			val, cut := strings.CutSuffix(m[3], "...")
			match := func(n *yaml.Node) bool {
				return n.Kind == yaml.ScalarNode && (n.Value == val || cut && strings.HasPrefix(n.Value, val))
			}
			return at(line, match, fmt.Sprintf("%q is not valid here: want %s", m[3], kindWord(m[4])))
		}
		if m := lineErrRE.FindStringSubmatch(te.Errors[0]); m != nil {
			line, _ := strconv.Atoi(m[1])
			return at(line, nil, m[2])
		}
		return &Error{File: file, Msg: te.Errors[0]}
	}
	return &Error{File: file, Msg: err.Error()}
}

var (
	typeErrRE = regexp.MustCompile("^line (\\d+): cannot unmarshal (!!\\w+) `(.*)` into (.+)$")
	lineErrRE = regexp.MustCompile(`^line (\d+): (.*)$`)
)

func kindWord(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "an integer"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "bool":
		return "true or false"
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "map"), strings.HasPrefix(goType, "scenario."):
		return "a mapping"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	}
	return goType
}

// fieldAt finds the dotted path of a node on line, and the node (for its
// column): the first value node on line that match accepts, else (or with a
// nil match) the first scalar value or key on line.
func fieldAt(root *yaml.Node, line int, match func(*yaml.Node) bool) (string, *yaml.Node) {
	var walk func(n *yaml.Node, path string, exact bool) (string, *yaml.Node)
	walk = func(n *yaml.Node, path string, exact bool) (string, *yaml.Node) {
		hit := func(v *yaml.Node) bool {
			if exact {
				return v.Line == line && match(v)
			}
			return v.Kind == yaml.ScalarNode && v.Line == line
		}
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := join(path, k.Value)
				if hit(v) {
					return p, v
				}
				if !exact && k.Line == line {
					return p, k
				}
				if r, rn := walk(v, p, exact); rn != nil {
					return r, rn
				}
			}
		case yaml.SequenceNode:
			for i, e := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if hit(e) {
					return p, e
				}
				if r, rn := walk(e, p, exact); rn != nil {
					return r, rn
				}
			}
		}
		return "", nil
	}
	if match != nil {
		if p, n := walk(root, "", true); n != nil {
			return p, n
		}
	}
	return walk(root, "", false)
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// indexTree maps dotted paths to their value nodes (key nodes for positions).
func indexTree(root *yaml.Node) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			pos := v
			if v.Kind != yaml.ScalarNode || v.Line == 0 {
				pos = k
			}
			out[p] = pos
			walk(v, p)
		}
	}
	walk(root, "")
	return out
}

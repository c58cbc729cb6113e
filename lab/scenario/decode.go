package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
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
	// The size above is 0 for a pipe or a device (/dev/zero, <(…)): the
	// read itself is bounded too.
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot read scenario: " + unwrap(err).Error()}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot read scenario: " + unwrap(err).Error()}
	}
	if len(b) > MaxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("more than %d bytes; scenarios are limited to %d", MaxFileSize, MaxFileSize)}
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
func parseTree(file string, src []byte) (*node, error) {
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
		return nil, yamlSyntaxError(file, src, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{File: file, Line: extra.Line, Col: extra.Column, Msg: "more than one YAML document; a scenario is one document"}
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlSyntaxError(file, src, err) // a broken second document is still broken
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
	return fromYAML(doc.Content[0], bytes.Split(src, []byte("\n"))), nil
}

// fromYAML copies the library's tree; aliases were refused before. lines
// are the source's, to tell where a scalar's text is the source's own.
func fromYAML(y *yaml.Node, lines [][]byte) *node {
	n := &node{Value: y.Value, Line: y.Line, Column: y.Column,
		Quoted: y.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 || y.Style&yaml.TaggedStyle != 0 && y.ShortTag() == "!!str"}
	n.TextCol = y.Column
	if y.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		n.TextCol++
	}
	n.Verbatim = verbatim(y, n.TextCol, lines)
	switch y.Kind {
	case yaml.MappingNode:
		n.Kind = mappingNode
	case yaml.SequenceNode:
		n.Kind = sequenceNode
	default:
		n.Kind = scalarNode
	}
	for _, c := range y.Content {
		n.Content = append(n.Content, fromYAML(c, lines))
	}
	return n
}

// verbatim reports whether a scalar's value is its source text as written,
// on its line from column col: then a column within the value is one in the
// file. Escapes, folded lines and block scalars are not.
func verbatim(y *yaml.Node, col int, lines [][]byte) bool {
	if y.Kind != yaml.ScalarNode || y.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 || y.Line < 1 || y.Line > len(lines) || col < 1 {
		return false
	}
	line := lines[y.Line-1]
	if !isASCII(line) || col-1+len(y.Value) > len(line) {
		return false // columns count runes; values are matched as bytes
	}
	return string(line[col-1:col-1+len(y.Value)]) == y.Value
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// checkAliases refuses anchors/aliases (billion-laughs), absurd nesting and
// local tags.
func checkAliases(file string, n *yaml.Node, depth int) error {
	if depth > 32 {
		return &Error{File: file, Line: n.Line, Col: n.Column, Msg: "nesting deeper than 32 levels"}
	}
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return &Error{File: file, Line: n.Line, Col: n.Column, Msg: "YAML anchors and aliases are not supported in scenarios"}
	}
	// `when: !lvs.random` is a YAML tag on an empty value, not a negation:
	// kept, the selector would be empty and select every cell.
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		text := n.Tag
		if n.Value != "" {
			text += " " + n.Value
		}
		return &Error{File: file, Line: n.Line, Col: n.Column, Msg: fmt.Sprintf("YAML reads %q as a tag, not as text; quote it: '%s'", n.Tag, text)}
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

// parserProblems are the YAML library's parser errors (as opposed to its
// scanner errors). It numbers their lines from 0 and its scanner errors'
// from 1, in the same "line N:" prefix; the problems of the two do not
// overlap, so the message tells which numbering the line is in.
var parserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"did not find expected node content":     true,
	"did not find expected key":              true,
	"did not find expected '-' indicator":    true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found undefined tag handle":             true,
	"found incompatible YAML document":       true,
	"found duplicate %YAML directive":        true,
	"found duplicate %TAG directive":         true,
}

func yamlSyntaxError(file string, src []byte, err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ":"); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line = n
				msg = strings.TrimSpace(rest[i+1:])
				if parserProblems[msg] {
					line++
				}
			}
		}
	}
	// A problem found at the end of the input is numbered as the line
	// after the last one; name the last line instead, and say why.
	if last := bytes.Count(bytes.TrimRight(src, "\n"), []byte("\n")) + 1; line > last {
		line = last
		if !strings.Contains(msg, "end of stream") {
			msg += " at the end of the file"
		}
		msg += " (something opened above is not closed)"
	}
	return &Error{File: file, Line: line, Msg: "YAML syntax: " + msg}
}

// decode turns a tree into a validated Scenario with defaults.
func decode(file string, root *node) (*Scenario, Errors) {
	var s Scenario
	if err := decodeNode(root, reflect.ValueOf(&s).Elem(), ""); err != nil {
		var pe *posError
		if errors.As(err, &pe) {
			return nil, Errors{{File: file, Line: pe.line, Col: pe.col, Field: pe.field, Msg: pe.msg}}
		}
		return nil, Errors{{File: file, Msg: err.Error()}}
	}
	// A field written as 0 (or "") is validated, not replaced by its default.
	given := map[string]bool{}
	for p, n := range indexTree(root) {
		given[p] = !n.null()
	}
	defaults(&s, given)
	return &s, validate(file, root, &s)
}

// pathAt is the dotted path of the node at line:col under n (at path), for
// an error a self-decoding type raises about a part of its node.
func pathAt(n *node, path string, line, col int) (string, bool) {
	if n.Line == line && n.Column == col {
		return path, true
	}
	switch n.Kind {
	case mappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if p, ok := pathAt(n.Content[i+1], join(path, k.Value), line, col); ok {
				return p, true
			}
		}
	case sequenceNode:
		for i, e := range n.Content {
			if p, ok := pathAt(e, fmt.Sprintf("%s[%d]", path, i), line, col); ok {
				return p, true
			}
		}
	}
	return "", false
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// indexTree maps dotted paths to their value nodes (key nodes for positions).
func indexTree(root *node) map[string]*node {
	out := map[string]*node{}
	var walk func(n *node, path string)
	walk = func(n *node, path string) {
		if n.Kind != mappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			pos := v
			// A value set into the cell keeps its Field (where it was
			// written) even when it has no line of its own.
			if (v.Kind != scalarNode || v.Line == 0) && v.Field == "" {
				pos = k
			}
			out[p] = pos
			walk(v, p)
		}
	}
	walk(root, "")
	return out
}

package scenario

import (
	"encoding"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// node is the scenario's own YAML tree. The YAML library only parses; the
// strict checks, --set, the matrix and decoding all work on this tree, so
// every error is built from a node's position and the Go type it was meant
// for, never from the library's error text.
type node struct {
	Kind         nodeKind
	Value        string // a scalar's text, a key's name
	Line, Column int
	Content      []*node // a mapping's keys and values in turn, a list's items
	// Quoted: written in quotes or as a block scalar, so always a string.
	Quoted bool
	// TextCol is the column its text starts at: after the opening quote
	// of a quoted scalar (an expression's error column counts from there).
	TextCol int
	// Verbatim: the value is the source text at Line, TextCol as written
	// (no escapes, no folded lines), so columns within it are the file's.
	Verbatim bool
	// Field names the node in errors when it stands for something else
	// ("matrix.lvs.snat_ports[1]" for a matrix value set into a cell).
	Field string
}

type nodeKind int

const (
	scalarNode nodeKind = iota + 1
	mappingNode
	sequenceNode
)

func (k nodeKind) String() string {
	switch k {
	case mappingNode:
		return "mapping"
	case sequenceNode:
		return "list"
	}
	return "value"
}

// null: an empty, ~ or null plain scalar, which leaves a field unset.
func (n *node) null() bool {
	if n.Kind != scalarNode || n.Quoted {
		return false
	}
	switch n.Value {
	case "", "~", "null", "Null", "NULL":
		return true
	}
	return false
}

// nodeUnmarshaler is a type that decodes itself from a node, for values
// that need positions or more than one form.
type nodeUnmarshaler interface {
	unmarshalNode(n *node) error
}

var (
	nodeUnmarshalerType = reflect.TypeOf((*nodeUnmarshaler)(nil)).Elem()
	textUnmarshalerType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

// selfDecoding: the type checks its own node, so the generic walks stop at it.
func selfDecoding(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	return p.Implements(nodeUnmarshalerType) || p.Implements(textUnmarshalerType)
}

// decodeNode sets v from n. path names v in errors. The strict checks ran
// before, so a shape mismatch here only comes from a --set or matrix value.
func decodeNode(n *node, v reflect.Value, path string) error {
	if n.Field != "" {
		path = n.Field
	}
	if v.Kind() == reflect.Pointer {
		if n.null() {
			return nil
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return decodeNode(n, v.Elem(), path)
	}
	if u, ok := v.Addr().Interface().(nodeUnmarshaler); ok {
		if err := u.unmarshalNode(n); err != nil {
			if pe, ok := err.(*posError); ok {
				if pe.field == "" {
					pe.field = path
					if p, ok := pathAt(n, path, pe.line, pe.col); ok {
						pe.field = p
					}
				}
				return pe
			}
			return &posError{n.Line, n.Column, path, err.Error()}
		}
		return nil
	}
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		if n.null() {
			return nil
		}
		if n.Kind != scalarNode {
			return &posError{n.Line, n.Column, path, "want a single value, not a " + n.Kind.String()}
		}
		if err := u.UnmarshalText([]byte(n.Value)); err != nil {
			return &posError{n.Line, n.Column, path, err.Error()}
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.null() {
			return nil
		}
		if n.Kind != mappingNode {
			return &posError{n.Line, n.Column, path, "want a mapping with fields " + strings.Join(fieldNames(v.Type()), ", ")}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			f, ok := fieldByTag(v.Type(), k.Value)
			if !ok {
				return &posError{k.Line, k.Column, join(path, k.Value), "unknown field; valid fields here: " + strings.Join(fieldNames(v.Type()), ", ")}
			}
			if err := decodeNode(n.Content[i+1], v.FieldByIndex(f.Index), join(path, k.Value)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		if n.null() {
			return nil
		}
		if n.Kind != mappingNode {
			return &posError{n.Line, n.Column, path, "want a mapping"}
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			e := reflect.New(v.Type().Elem()).Elem()
			if err := decodeNode(n.Content[i+1], e, join(path, n.Content[i].Value)); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(n.Content[i].Value).Convert(v.Type().Key()), e)
		}
		v.Set(m)
		return nil
	case reflect.Slice:
		if n.null() {
			return nil
		}
		if n.Kind != sequenceNode {
			return &posError{n.Line, n.Column, path, "want a list"}
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, e := range n.Content {
			if err := decodeNode(e, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	}
	if n.Kind != scalarNode {
		return &posError{n.Line, n.Column, path, "want a single value, not a " + n.Kind.String()}
	}
	if n.null() {
		return nil
	}
	if !setScalar(n, v) {
		return &posError{n.Line, n.Column, path, fmt.Sprintf("%q is not valid here: want %s", n.Value, kindWord(v.Kind()))}
	}
	return nil
}

// setScalar resolves a scalar for the type it is meant for, with YAML's
// plain-scalar forms: a quoted scalar is a string and nothing else.
func setScalar(n *node, v reflect.Value) bool {
	s := n.Value
	if v.Kind() == reflect.String {
		v.SetString(s)
		return true
	}
	if n.Quoted {
		return false
	}
	num := strings.ReplaceAll(s, "_", "")
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(num, intBase(num), 64)
		if err != nil {
			f, ok := parseFloat(num)
			if !ok || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
				return false
			}
			i = int64(f)
		}
		if v.OverflowInt(i) {
			return false
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u, err := strconv.ParseUint(num, intBase(num), 64)
		if err != nil || v.OverflowUint(u) {
			return false
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		f, ok := parseFloat(num)
		if !ok {
			return false
		}
		v.SetFloat(f)
	case reflect.Bool:
		switch s {
		// YAML 1.2's booleans, and YAML 1.1's for a field that can only be
		// a boolean, as yaml.v3 accepted.
		case "true", "True", "TRUE", "y", "Y", "yes", "Yes", "YES", "on", "On", "ON":
			v.SetBool(true)
		case "false", "False", "FALSE", "n", "N", "no", "No", "NO", "off", "Off", "OFF":
			v.SetBool(false)
		default:
			return false
		}
	default:
		return false
	}
	return true
}

// parseFloat reads YAML's number forms: Go's own words for infinity and NaN
// are not YAML, its .inf and .nan are.
func parseFloat(s string) (float64, bool) {
	switch strings.ToLower(s) {
	case ".nan":
		return math.NaN(), true
	case ".inf", "+.inf":
		return math.Inf(1), true
	case "-.inf":
		return math.Inf(-1), true
	}
	if strings.ContainsAny(strings.ToLower(s), "inty") { // inf, infinity, nan
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		if i, err := strconv.ParseInt(s, 0, 64); err == nil {
			return float64(i), true
		}
		return 0, false
	}
	return f, true
}

func kindWord(k reflect.Kind) string {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer of 0 or more"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	case reflect.Slice:
		return "a list"
	}
	return k.String()
}

func cloneNode(n *node) *node {
	c := *n
	c.Content = make([]*node, len(n.Content))
	for i, k := range n.Content {
		c.Content[i] = cloneNode(k)
	}
	return &c
}

// intBase reads 0x, 0o and 0b prefixes as YAML 1.2 does, and every other
// integer as decimal: with Go's base 0, "01024" was octal 532 and "010"
// eight connections, while "0800" (no octal) fell back to 800.
func intBase(num string) int {
	d := strings.TrimLeft(num, "+-")
	if len(d) > 1 && d[0] == '0' && strings.ContainsRune("xXoObB", rune(d[1])) {
		return 0
	}
	return 10
}

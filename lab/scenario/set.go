package scenario

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/twlab/twlab/lab/sysctl"
)

// scalarStruct is implemented by structs written as one scalar (TSOffset).
type scalarStruct interface{ scalarStruct() }

var scalarStructType = reflect.TypeFor[scalarStruct]()

// checkKey says whether a matrix or --set key names something settable.
func checkKey(key string) error {
	role, rest, _ := strings.Cut(key, ".")
	if slices.Contains(Roles, role) && strings.HasPrefix(rest, "net.") {
		return sysctl.ValidName(rest)
	}
	t := reflect.TypeOf(Scenario{})
	segs := strings.Split(key, ".")
	for i, seg := range segs {
		f, ok := fieldByTag(t, seg)
		if !ok {
			return fmt.Errorf("unknown key; want a sysctl of a role (clients.net.…, lvs.net.…, server.net.…) or a field such as lvs.snat_ports, load.connections, server.keepalive_requests")
		}
		t = f.Type
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if i < len(segs)-1 && (t.Kind() != reflect.Struct || t.Implements(scalarStructType)) {
			return fmt.Errorf("%s is not a section", strings.Join(segs[:i+1], "."))
		}
	}
	switch t.Kind() {
	case reflect.Slice:
		return fmt.Errorf("%s is a list, not a single value", key)
	case reflect.Struct, reflect.Map:
		if !t.Implements(scalarStructType) {
			return fmt.Errorf("%s is a section, not a single value", key)
		}
	}
	if key == "name" || key == "description" {
		return fmt.Errorf("%s cannot vary", key)
	}
	return nil
}

// setPath sets key to value in the tree: sysctls of a role go under
// sysctl.ROLE, fields under their section. New nodes carry line/col so that
// errors in an overridden value point at the override; field, if set, names
// the value in decoding errors (a matrix value is not written at its key).
func setPath(root *node, key, value string, line, col int, field string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	var segs []string
	role, rest, _ := strings.Cut(key, ".")
	if slices.Contains(Roles, role) && strings.HasPrefix(rest, "net.") {
		segs = []string{"sysctl", role, rest}
	} else {
		segs = strings.Split(key, ".")
	}
	n := root
	for i, seg := range segs {
		last := i == len(segs)-1
		var found, key *node
		for j := 0; j+1 < len(n.Content); j += 2 {
			if n.Content[j].Value == seg {
				key, found = n.Content[j], n.Content[j+1]
			}
		}
		if last {
			v := &node{Kind: scalarNode, Value: value, Line: line, Column: col, Field: field}
			if found != nil {
				if line == 0 { // --set: point at what it overrides
					v.Line, v.Column = key.Line, key.Column
				}
				*found = *v
			} else {
				n.Content = append(n.Content, &node{Kind: scalarNode, Value: seg, Line: line, Column: col}, v)
			}
			return nil
		}
		if found == nil {
			found = &node{Kind: mappingNode, Line: line, Column: col}
			n.Content = append(n.Content, &node{Kind: scalarNode, Value: seg, Line: line, Column: col}, found)
		}
		if found.Kind != mappingNode {
			return fmt.Errorf("%s is not a mapping", strings.Join(segs[:i+1], "."))
		}
		n = found
	}
	return nil
}

// nullable says whether key may be given no value (~, null, empty) in
// --set, a matrix or an include: an optional field whose absence means
// something (lvs.conntrack_tw_timeout: the kernel's default) or a text
// that may be empty (lvs.vip). A number or a sysctl may not: an empty
// value there quietly ran the built-in default.
func nullable(key string) bool {
	role, rest, _ := strings.Cut(key, ".")
	if slices.Contains(Roles, role) && strings.HasPrefix(rest, "net.") {
		return false
	}
	t := reflect.TypeOf(Scenario{})
	var f reflect.StructField
	for _, seg := range strings.Split(key, ".") {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return false
		}
		var ok bool
		if f, ok = fieldByTag(t, seg); !ok {
			return false
		}
		t = f.Type
	}
	return t.Kind() == reflect.Pointer || t.Kind() == reflect.String
}

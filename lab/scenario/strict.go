package scenario

import (
	"fmt"
	"reflect"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// checkFields reports every unknown key, with the valid ones, before decoding.
func checkFields(file string, n *yaml.Node, t reflect.Type, path string) Errors {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()) {
		return nil // validates itself
	}
	var errs Errors
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return Errors{{File: file, Line: n.Line, Col: n.Column, Field: path, Msg: "want a mapping with fields " + strings.Join(fieldNames(t), ", ")}}
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if seen[k.Value] {
				errs = append(errs, &Error{File: file, Line: k.Line, Col: k.Column, Field: join(path, k.Value), Msg: "given twice"})
				continue
			}
			seen[k.Value] = true
			f, ok := fieldByTag(t, k.Value)
			if !ok {
				errs = append(errs, &Error{File: file, Line: k.Line, Col: k.Column, Field: join(path, k.Value),
					Msg: "unknown field; valid fields here: " + strings.Join(fieldNames(t), ", ")})
				continue
			}
			errs = append(errs, checkFields(file, v, f.Type, join(path, k.Value))...)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return Errors{{File: file, Line: n.Line, Col: n.Column, Field: path, Msg: "want a mapping"}}
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if seen[k.Value] {
				errs = append(errs, &Error{File: file, Line: k.Line, Col: k.Column, Field: join(path, k.Value), Msg: "given twice"})
				continue
			}
			seen[k.Value] = true
			errs = append(errs, checkFields(file, n.Content[i+1], t.Elem(), join(path, k.Value))...)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return Errors{{File: file, Line: n.Line, Col: n.Column, Field: path, Msg: "want a list"}}
		}
		for i, e := range n.Content {
			errs = append(errs, checkFields(file, e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			return Errors{{File: file, Line: n.Line, Col: n.Column, Field: path, Msg: "want a single value, not a " + kindName(n.Kind)}}
		}
	}
	return errs
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag := strings.Split(f.Tag.Get("yaml"), ",")[0]; tag == name && tag != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func fieldNames(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		if tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	return out
}

package scenario

import (
	"fmt"
	"reflect"
	"strings"
)

// checkFields reports every unknown key, with the valid ones, before decoding.
func checkFields(file string, n *node, t reflect.Type, path string) Errors {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if selfDecoding(t) {
		return nil // validates itself, with its position, when decoded
	}
	var errs Errors
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != mappingNode {
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
		if n.Kind != mappingNode {
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
		if n.Kind != sequenceNode {
			return Errors{{File: file, Line: n.Line, Col: n.Column, Field: path, Msg: "want a list"}}
		}
		for i, e := range n.Content {
			errs = append(errs, checkFields(file, e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
	default:
		if n.Kind != scalarNode {
			return Errors{{File: file, Line: n.Line, Col: n.Column, Field: path, Msg: "want a single value, not a " + n.Kind.String()}}
		}
	}
	return errs
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

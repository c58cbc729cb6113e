package result_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/twlab/twlab/lab/result"
)

// testdata/v1 holds run.json files that twlab wrote before the run
// document's types moved into this package: two real runs (trimmed by
// decoding and writing them again with the types of then), one with every
// optional field and a vm block, and what twlab vm's host made of that one
// (it decoded the guest's run.json into maps and sorted their keys).
var v1Goldens = []string{"nat-paws.json", "nat-paws-fixed-skew.json", "vm-all-fields.json"}

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "v1", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSchemaV1Bytes: schema v1 does not change by a byte. A golden decodes
// into Run, through the plain decoder and through ParseRun, and the writer
// gives back the same file.
func TestSchemaV1Bytes(t *testing.T) {
	for _, name := range v1Goldens {
		t.Run(name, func(t *testing.T) {
			want := readGolden(t, name)
			var plain result.Run
			if err := json.Unmarshal(want, &plain); err != nil {
				t.Fatal(err)
			}
			parsed, err := result.ParseRun(name, want)
			if err != nil {
				t.Fatal(err)
			}
			if len(parsed.Warnings) > 0 {
				t.Errorf("warnings: %v", parsed.Warnings)
			}
			for how, r := range map[string]*result.Run{"json.Unmarshal": &plain, "ParseRun": parsed} {
				path := filepath.Join(t.TempDir(), "run.json")
				if err := r.WriteJSON(path); err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s, then WriteJSON: not the bytes of v1; first difference at %s", how, firstDiff(got, want))
				}
			}
		})
	}
}

func firstDiff(a, b []byte) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	line := bytes.Count(b[:i], []byte("\n")) + 1
	clipAt := func(s []byte) string { return string(s[max(0, i-40):min(len(s), i+40)]) }
	return "line " + strconv.Itoa(line) + ": got …" + clipAt(a) + "…, want …" + clipAt(b) + "…"
}

// TestSchemaV1OldVMHost: a run.json of today's twlab vm host, whose scenario
// and kernel_features have their keys sorted, reads as the same run.
func TestSchemaV1OldVMHost(t *testing.T) {
	guest, err := result.ParseRun("guest", readGolden(t, "vm-all-fields.json"))
	if err != nil {
		t.Fatal(err)
	}
	host, err := result.ParseRun("host", readGolden(t, "vm-host-old.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(host.Warnings) > 0 {
		t.Errorf("warnings: %v", host.Warnings)
	}
	if !reflect.DeepEqual(host.ScenarioView(), guest.ScenarioView()) {
		t.Errorf("scenario view %+v, want %+v", host.ScenarioView(), guest.ScenarioView())
	}
	host.Scenario, guest.Scenario = nil, nil
	if !reflect.DeepEqual(host, guest) {
		t.Error("the host's run.json decodes differently from the guest's")
	}
}

// TestSchemaV1GoldensComplete: every field of the run document is in some
// golden, so that the byte test covers it.
func TestSchemaV1GoldensComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, name := range v1Goldens {
		var doc any
		if err := json.Unmarshal(readGolden(t, name), &doc); err != nil {
			t.Fatal(err)
		}
		collectKeys(doc, "", seen)
	}
	var missing []string
	for _, k := range fieldPaths(reflect.TypeFor[result.Run](), "", nil) {
		if !seen[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		t.Errorf("no golden has %s", strings.Join(missing, ", "))
	}
}

// collectKeys notes every object key of doc by path; map entries (cells'
// knobs, nodes by name, …) and array elements are "*".
func collectKeys(doc any, path string, seen map[string]bool) {
	switch v := doc.(type) {
	case map[string]any:
		for k, e := range v {
			seen[path+k] = true
			collectKeys(e, path+k+".", seen)
			collectKeys(e, path+"*.", seen)
		}
	case []any:
		for _, e := range v {
			collectKeys(e, path+"*.", seen)
		}
	}
}

// fieldPaths lists the JSON paths of t's fields, by the same naming.
func fieldPaths(t reflect.Type, path string, out []string) []string {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		if t.Kind() != reflect.Pointer {
			if t.Elem().Kind() == reflect.Uint8 {
				return out // raw JSON
			}
			path += "*."
		}
		return fieldPaths(t.Elem(), path, out)
	case reflect.Map:
		return fieldPaths(t.Elem(), path+"*.", out)
	case reflect.Struct:
		if t == reflect.TypeFor[json.RawMessage]() || t.PkgPath() == "time" {
			return out
		}
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch {
			case name == "-" || !f.IsExported():
			case f.Anonymous && name == "":
				out = fieldPaths(f.Type, path, out)
			default:
				if name == "" {
					name = f.Name
				}
				out = append(out, path+name)
				out = fieldPaths(f.Type, path+name+".", out)
			}
		}
	}
	return slices.Compact(out)
}

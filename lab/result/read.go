package result

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"time"
)

// A run folder is untrusted input: CI jobs pass it around as an artifact,
// people mail it, and `twlab report` and `twlab compare` must neither crash
// nor run out of memory or time on whatever it holds. These limits bound
// what a reader takes in. twlab's own files stay far below them: nat-paws
// writes about 350 KB of run.json (some 10 000 JSON values) and 60 KB of
// timeseries.csv; the largest run a scenario allows (256 cells, 1 h of
// load) writes about 1 million rows of time series.
const (
	// MaxRunJSONBytes bounds the size of run.json.
	MaxRunJSONBytes = 128 << 20
	// MaxRunJSONValues bounds the JSON values (objects, arrays, keys,
	// strings, numbers, literals) of run.json: decoded, none takes more
	// than about 100 bytes, which bounds the memory a reader needs.
	MaxRunJSONValues = 2 << 20
	// MaxRunJSONElems bounds the values directly in one array or object
	// (keys count too). twlab's longest array is a TIME_WAIT series of a
	// 10-minute cell, 6064 samples; decoding one huge array takes long.
	MaxRunJSONElems = 1 << 17
	// MaxRunJSONDepth bounds the nesting of run.json (twlab writes 8).
	MaxRunJSONDepth = 64
	// MaxRunCells bounds the cells of a run (a scenario has at most 256).
	MaxRunCells = 4096
	// MaxRunString bounds a string of run.json (twlab writes at most a few
	// hundred bytes): a report shows an id or a note several times, and a
	// huge one would be copied into every place.
	MaxRunString = 4096

	// MaxTimeseriesBytes and MaxTimeseriesRows bound what is read of
	// timeseries.csv; MaxTimeseriesSeries the distinct (cell, series,
	// node) triples (a cell writes at most 19).
	MaxTimeseriesBytes  = 256 << 20
	MaxTimeseriesRows   = 4 << 20
	MaxTimeseriesSeries = 1 << 16
)

// NotRunError says that a file is not a run.json twlab can read: missing,
// not a regular file, too large, not JSON, or of another schema.
type NotRunError struct {
	Path   string
	Reason string
	Err    error
}

func (e *NotRunError) Error() string {
	if e.Err != nil {
		return e.Path + ": " + e.Reason + ": " + e.Err.Error()
	}
	return e.Path + ": " + e.Reason
}

func (e *NotRunError) Unwrap() error { return e.Err }

// openRegular opens path for reading like openRegularIn, confined to the
// folder path names it in.
func openRegular(path string) (*os.File, int64, error) {
	return openRegularIn(filepath.Dir(path), filepath.Base(path))
}

// openRegularIn opens name (relative, perhaps with subfolders) in dir for
// reading, refusing anything but a regular file: a FIFO named run.json
// would block the reader for ever, a device would never end. O_NONBLOCK
// makes the open itself return at once on a FIFO. A run folder comes from
// anywhere, and twlab report runs as root: a symbolic link in it that
// leads out of dir (run.json -> /root/.ssh/id_rsa) is refused, so nothing
// outside the folder ends up in a report; links within it still work.
func openRegularIn(dir, name string) (*os.File, int64, error) {
	path := filepath.Join(dir, name)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, 0, err
	}
	defer root.Close()
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
			if st, lerr := os.Lstat(path); lerr == nil && st.Mode()&fs.ModeSymlink != 0 {
				return nil, 0, fmt.Errorf("%s: a symbolic link that leads out of the run folder %s; twlab reads only the folder's own files", path, dir)
			}
		}
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s: not a regular file (%s)", path, st.Mode().Type())
	}
	return f, st.Size(), nil
}

// readCapped reads a whole file of at most max bytes.
func readCapped(path string, max int64) ([]byte, error) {
	f, size, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > max {
		return nil, fmt.Errorf("%d bytes, more than the %d a twlab run holds", size, max)
	}
	// The size can change under the reader (a run still writing, /proc):
	// the limit holds whatever stat said.
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("more than the %d bytes a twlab run holds", max)
	}
	return b, nil
}

// ReadRun loads a run.json, which may come from anywhere. It returns a
// *NotRunError when the file cannot be taken for a run at all; otherwise the
// run, with what was odd about it in Warnings. Fields of the wrong type, bad
// times and cells that are not objects are dropped and reported there, so
// that one damaged figure does not cost the whole report.
func ReadRun(path string) (*Run, error) {
	b, err := readCapped(path, MaxRunJSONBytes)
	if err != nil {
		return nil, &NotRunError{Path: path, Reason: "cannot read", Err: err}
	}
	return ParseRun(path, b)
}

// ParseRun decodes run.json's bytes like ReadRun; path names it in errors.
func ParseRun(path string, b []byte) (*Run, error) {
	if len(b) > MaxRunJSONBytes {
		return nil, &NotRunError{Path: path, Reason: fmt.Sprintf("%d bytes, more than the %d a twlab run holds", len(b), MaxRunJSONBytes)}
	}
	if err := checkJSONShape(b); err != nil {
		return nil, &NotRunError{Path: path, Reason: "not a run.json twlab wrote", Err: err}
	}
	// The embedded *Run takes every field (the scenario as the raw JSON it
	// is, never expanded); the fields declared here hide the ones that
	// would need trust to decode: times (a bad one would end decoding) and
	// cells, decoded one by one.
	type runIn struct {
		*Run
		Started  json.RawMessage   `json:"started"`
		Finished json.RawMessage   `json:"finished"`
		Cells    []json.RawMessage `json:"cells"`
	}
	var in runIn
	var warnings []string
	err := decodeLenient(b, "", func() any { in = runIn{Run: &Run{}}; return &in }, &warnings)
	if err != nil {
		reason := "not JSON"
		var se *json.SyntaxError
		if errors.As(err, &se) && se.Offset > 0 && se.Offset <= int64(len(b)) {
			// Where, as an editor shows it: a truncated or hand-edited file.
			at := b[:se.Offset]
			reason = fmt.Sprintf("not JSON at line %d, column %d", bytes.Count(at, []byte("\n"))+1, se.Offset-int64(bytes.LastIndexByte(at, '\n')+1))
		}
		return nil, &NotRunError{Path: path, Reason: reason, Err: err}
	}
	r := in.Run
	if r.Schema != Schema {
		return nil, &NotRunError{Path: path, Reason: fmt.Sprintf("schema %q, want %q", clip(Printable(r.Schema), 80), Schema)}
	}
	r.Warnings = append(r.Warnings, warnings...)
	switch r.Status {
	case "":
		r.Warnings = append(r.Warnings, "run.json: no status; the run's outcome is unknown")
	case RunRunning, RunOK, RunFailed, RunInterrupted, RunNA:
	default:
		// A status is a word twlab writes; anything else is shown as
		// what it is, not passed on into tables and headings.
		r.Warnings = append(r.Warnings, fmt.Sprintf("run.json: status %q is none twlab writes; shown as \"unknown\"", clip(Printable(r.Status), 40)))
		r.Status = "unknown"
	}
	if !hasKey(b, "cells") {
		r.Warnings = append(r.Warnings, "run.json: no cells; nothing of the run was recorded")
	}
	r.Started = readTime(r, "started", in.Started)
	if len(in.Finished) > 0 && string(in.Finished) != "null" {
		if t := readTime(r, "finished", in.Finished); !t.IsZero() {
			r.Finished = &t
		}
	}
	if string(r.Scenario) == "null" {
		r.Scenario = nil
	}
	r.Cells = make([]*Cell, 0, len(in.Cells))
	dropped := 0
	for i, raw := range in.Cells {
		where := fmt.Sprintf("cells[%d]", i)
		if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
			dropped++
			continue
		}
		type cellIn struct {
			*Cell
			Started json.RawMessage `json:"started"`
		}
		var c cellIn
		// A cell without an index must not take cell 0's time series.
		err := decodeLenient(raw, where, func() any { c = cellIn{Cell: &Cell{Index: -1}}; return &c }, &r.Warnings)
		if err != nil {
			dropped++
			continue
		}
		switch c.Status {
		case CellOK, CellNA, CellFailed, CellInterrupted:
		case "":
			r.Warnings = append(r.Warnings, fmt.Sprintf("run.json: %s has no status", where))
		default:
			r.Warnings = append(r.Warnings, fmt.Sprintf("run.json: %s.status %q is none twlab writes; shown as \"unknown\"", where, clip(Printable(c.Status), 40)))
			c.Status = "unknown"
		}
		if c.ID == "" {
			r.Warnings = append(r.Warnings, fmt.Sprintf("run.json: %s has no id", where))
		}
		c.Cell.Started = readTime(r, where+".started", c.Started)
		r.Cells = append(r.Cells, c.Cell)
	}
	if dropped > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("run.json: %d of %d cells are not objects and were left out", dropped, len(in.Cells)))
	}
	// Scenario is raw JSON ([]byte), which fixStrings leaves alone.
	cut := func(s string) string {
		if len(s) > MaxRunString {
			return clip(s, MaxRunString)
		}
		return s
	}
	if n := fixStrings(reflect.ValueOf(r).Elem(), cut); n > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("run.json: %d strings longer than %d bytes were cut", n, MaxRunString))
	}
	// Cell ids, reasons and names reach terminals: an escape sequence in
	// them (ESC ] 52 writes the clipboard, ESC [ 2J clears the screen)
	// must arrive as text, not as a command.
	if n := fixStrings(reflect.ValueOf(r).Elem(), Printable); n > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("run.json: %d strings held control characters, shown as \uFFFD", n))
	}
	return r, nil
}

// Printable replaces the control characters of s (C0 but newline and
// tab, DEL, C1) with U+FFFD: text from a run folder or a guest reaches
// terminals, where ESC sequences are commands.
func Printable(s string) string {
	bad := func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' || r >= 0x7f && r <= 0x9f }
	if strings.IndexFunc(s, bad) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if bad(r) {
			return '\uFFFD'
		}
		return r
	}, s)
}

// fixStrings applies fix to every string in v, map keys included, and says
// how many it changed. v must be settable.
func fixStrings(v reflect.Value, fix func(string) string) int {
	n := 0
	switch v.Kind() {
	case reflect.String:
		if v.CanSet() {
			if f := fix(v.String()); f != v.String() {
				v.SetString(f)
				n++
			}
		}
	case reflect.Pointer:
		if !v.IsNil() {
			n += fixStrings(v.Elem(), fix)
		}
	case reflect.Interface:
		// Expect.Value and Bound: a decoded JSON value, copied to be set.
		if !v.IsNil() && v.CanSet() {
			e := reflect.New(v.Elem().Type()).Elem()
			e.Set(v.Elem())
			if k := fixStrings(e, fix); k > 0 {
				v.Set(e)
				n += k
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				n += fixStrings(v.Field(i), fix)
			}
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return 0 // raw JSON
		}
		for i := range v.Len() {
			n += fixStrings(v.Index(i), fix)
		}
	case reflect.Array:
		for i := range v.Len() {
			n += fixStrings(v.Index(i), fix)
		}
	case reflect.Map:
		if v.IsNil() {
			return 0
		}
		kt, et := v.Type().Key(), v.Type().Elem()
		type kv struct{ k, v reflect.Value }
		var redo []kv
		iter := v.MapRange()
		for iter.Next() {
			k := reflect.New(kt).Elem()
			k.Set(iter.Key())
			e := reflect.New(et).Elem()
			e.Set(iter.Value())
			kn, en := fixStrings(k, fix), fixStrings(e, fix)
			if kn+en > 0 {
				redo = append(redo, kv{iter.Key(), e})
				if kn > 0 {
					redo[len(redo)-1].k = k
					v.SetMapIndex(iter.Key(), reflect.Value{}) // the long key goes
				}
				n += kn + en
			}
		}
		for _, r := range redo {
			v.SetMapIndex(r.k, r.v)
		}
	}
	return n
}

// readTime decodes a time that may be anything; what is not a time is zero,
// with a warning.
func readTime(r *Run, field string, raw json.RawMessage) time.Time {
	var t time.Time
	if len(raw) == 0 || string(raw) == "null" {
		return t
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		r.Warnings = append(r.Warnings, fmt.Sprintf("run.json: %s is not a time (%s); left out", field, clip(string(raw), 40)))
		return time.Time{}
	}
	return t
}

// clip shortens what an untrusted file says before it is quoted back.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut-- // not inside a UTF-8 sequence
	}
	return s[:cut] + "…"
}

// checkJSONShape bounds what decoding b can cost before anything is
// decoded: at most MaxRunJSONValues values, MaxRunJSONElems in one array or
// object, nesting at most MaxRunJSONDepth, and at most MaxRunCells
// elements in top-level "cells" arrays. It looks at the structure only;
// the decoder checks the syntax.
func checkJSONShape(b []byte) error {
	type frame struct {
		array bool
		cells bool // a top-level "cells" array
		n     int  // values directly in it (an object's keys too)
	}
	var stack []*frame
	values, cells := 0, 0
	var key []byte // the last string of the top-level object: before a '[', its key
	for i := 0; i < len(b); i++ {
		ch := b[i]
		switch ch {
		case ' ', '\t', '\n', '\r', ',', ':':
			continue
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		// A value starts here, in the container on top of the stack.
		if values++; values > MaxRunJSONValues {
			return fmt.Errorf("more than %d values", MaxRunJSONValues)
		}
		if len(stack) > 0 {
			parent := stack[len(stack)-1]
			if parent.n++; parent.n > MaxRunJSONElems {
				return fmt.Errorf("more than %d values in one array or object", MaxRunJSONElems)
			}
			if parent.cells {
				if cells++; cells > MaxRunCells {
					return fmt.Errorf("more than %d cells", MaxRunCells)
				}
			}
		}
		switch ch {
		case '"':
			start := i
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if len(stack) == 1 && !stack[0].array {
				key = b[start:min(i+1, len(b))]
			}
		case '{', '[':
			top := &frame{array: ch == '['}
			if ch == '[' && len(stack) == 1 && !stack[0].array && isCellsKey(key) {
				top.cells = true
			}
			stack = append(stack, top)
			if len(stack) > MaxRunJSONDepth {
				return fmt.Errorf("nested more than %d deep", MaxRunJSONDepth)
			}
		default:
			// A number or literal: skip to its end.
			for i+1 < len(b) && !endsLiteral(b[i+1]) {
				i++
			}
		}
	}
	return nil
}

func endsLiteral(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', ',', ':', ']', '}', '"', '[', '{':
		return true
	}
	return false
}

// isCellsKey says whether a quoted key decodes to a name the decoder
// matches with "cells" (it ignores case and undoes escapes).
func isCellsKey(quoted []byte) bool {
	if !bytes.ContainsRune(quoted, '\\') {
		return len(quoted) >= 2 && strings.EqualFold(string(quoted[1:len(quoted)-1]), "cells")
	}
	var s string
	return json.Unmarshal(quoted, &s) == nil && strings.EqualFold(s, "cells")
}

// decodeLenient decodes b into what fresh returns (a new value each call).
// A member of the wrong type is dropped whole and reported in warnings with
// where it was: decoding in one go keeps only the first such error, and
// leaves the objects it had begun filling as zeros that read like measured
// figures ("load": "nope" became 0 connections, 0 ok). A document with
// such a member is decoded a member at a time, each tried on its own
// first, in key order (the decoder matches keys without regard to case,
// and of two that match, the later wins): about three decodes of the
// document, whatever the number of bad members. Errors are those of b not
// being JSON.
func decodeLenient(b []byte, where string, fresh func() any, warnings *[]string) error {
	err := json.Unmarshal(b, fresh())
	var typeErr *json.UnmarshalTypeError
	if err == nil || !errors.As(err, &typeErr) {
		return err
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(b, &members) != nil {
		// Not an object: the caller's type is wrong for the whole of it.
		*warnings = append(*warnings, badMember(where, typeErr))
		return nil
	}
	keys := make([]string, 0, len(members))
	for k := range members {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	one := func(k string) []byte {
		kb, _ := json.Marshal(k)
		return append(append(append(append([]byte{'{'}, kb...), ':'), members[k]...), '}')
	}
	var good []string
	for _, k := range keys {
		if err := json.Unmarshal(one(k), fresh()); err != nil {
			if errors.As(err, &typeErr) {
				*warnings = append(*warnings, badMember(where, typeErr))
			}
			continue
		}
		good = append(good, k)
	}
	// The callers' fresh resets the value they read: the last call's is
	// theirs.
	final := fresh()
	for _, k := range good {
		json.Unmarshal(one(k), final)
	}
	return nil
}

// badMember words a type error for the warnings.
func badMember(where string, typeErr *json.UnmarshalTypeError) string {
	// The path names the embedded structs decoded through ("Cell.").
	path := typeErr.Field
	for _, emb := range []string{"Run.", "Cell."} {
		path = strings.TrimPrefix(path, emb)
	}
	if path == "Run" || path == "Cell" {
		path = ""
	}
	field := strings.Trim(where+"."+path, ".")
	if field == "" {
		field = "(top level)"
	}
	return fmt.Sprintf("run.json: %s holds %s where %s belongs; it was left out", clip(field, 120), clip(typeErr.Value, 40), typeName(typeErr.Type))
}

// typeName says what a Go type is in JSON words (not Go's: a reader of a
// damaged run.json need not know twlab's structs).
func typeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if w, ok := jsonWords[t.Kind()]; ok {
		return w
	}
	if t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64 {
		return "an integer"
	}
	return "another type"
}

var jsonWords = map[reflect.Kind]string{reflect.Struct: "an object", reflect.Map: "an object", reflect.Slice: "a list",
	reflect.Array: "a list", reflect.String: "a string", reflect.Bool: "true or false", reflect.Float32: "a number", reflect.Float64: "a number"}

// hasKey says whether the top-level object b has the member key.
func hasKey(b []byte, key string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return false
	}
	for k := range m {
		if strings.EqualFold(k, key) { // as the decoder matches it
			return true
		}
	}
	return false
}

package runner

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/twlab/twlab/lab/capture"
	"github.com/twlab/twlab/lab/kernel"
	"github.com/twlab/twlab/lab/load"
	"github.com/twlab/twlab/lab/skew"
)

// fill gives every exported field of v a value other than zero, one
// element to every slice and map, so that a copy that forgets a field
// shows it.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1.5)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0))
	case reflect.Array:
		for i := range v.Len() {
			fill(v.Index(i))
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k)
		fill(e)
		v.SetMapIndex(k, e)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	}
}

// zeroField names an exported field of v left zero, or "".
func zeroField(v reflect.Value, path string) string {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return path
		}
		return zeroField(v.Elem(), path)
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Type().Field(i); f.IsExported() {
				if z := zeroField(v.Field(i), path+"."+f.Name); z != "" {
					return z
				}
			}
		}
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 {
			return path
		}
		if v.Kind() == reflect.Slice {
			return zeroField(v.Index(0), path+"[0]")
		}
		iter := v.MapRange()
		iter.Next()
		return zeroField(iter.Value(), path+"[k]")
	default:
		if v.IsZero() {
			return path
		}
	}
	return ""
}

// TestRecordKernel: run.json's kernel_features are the bytes lab/kernel's
// Facts encode to (what run.json held before it had a type of its own, and
// what twlab doctor --json prints), full or empty.
func TestRecordKernel(t *testing.T) {
	var full kernel.Facts
	fill(reflect.ValueOf(&full).Elem())
	for name, f := range map[string]*kernel.Facts{"every field": &full, "zero": {}} {
		want, _ := json.Marshal(f)
		got, err := json.Marshal(recordKernel(f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: kernel_features\n%s\nwant (kernel.Facts)\n%s", name, got, want)
		}
	}
}

// TestRecordCopiesAll: every field of the generators' values reaches the
// run document.
func TestRecordCopiesAll(t *testing.T) {
	var l load.Result
	fill(reflect.ValueOf(&l).Elem())
	if z := zeroField(reflect.ValueOf(recordLoad(&l)), "Load"); z != "" {
		t.Errorf("%s not copied from load.Result", z)
	}
	var c capture.Stats
	fill(reflect.ValueOf(&c).Elem())
	if z := zeroField(reflect.ValueOf(recordCapture(c)), "Capture"); z != "" {
		t.Errorf("%s not copied from capture.Stats", z)
	}
	var s skew.Stats
	fill(reflect.ValueOf(&s).Elem())
	if z := zeroField(reflect.ValueOf(recordSkew(s)), "SkewStats"); z != "" {
		t.Errorf("%s not copied from skew.Stats", z)
	}
}

// TestRecordLoadNil: what was nil stays null in run.json, what was empty
// stays {}.
func TestRecordLoadNil(t *testing.T) {
	got, _ := json.Marshal(recordLoad(&load.Result{PerClient: map[string]*load.ClientStats{"c1": {}}}))
	want := `{"attempts":0,"ok":0,"failed":0,"failures":null,"cut_short":0,"requests":0,"connect_ms":{"p50":0,"p90":0,"p99":0,"max":0},"conn_per_s":0,"elapsed_s":0,"per_client":{"c1":{"attempts":0,"ok":0,"failures":null,"cut_short":0}},"handoffs":null}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

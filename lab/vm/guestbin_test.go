package vm

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestStripSignature(t *testing.T) {
	body := []byte("\x7fELF module body")
	signer, keyID, sig := []byte("build key"), []byte("12345678"), bytes.Repeat([]byte{0xAB}, 512)
	info := make([]byte, 12)
	info[3], info[4] = byte(len(signer)), byte(len(keyID))
	binary.BigEndian.PutUint32(info[8:], uint32(len(sig)))
	signed := bytes.Join([][]byte{body, signer, keyID, sig, info, []byte(sigMarker)}, nil)
	if got := stripSignature(signed); !bytes.Equal(got, body) {
		t.Fatalf("stripped: %q, want %q", got, body)
	}
	// Unsigned, or a marker whose lengths do not fit: left alone.
	if got := stripSignature(body); !bytes.Equal(got, body) {
		t.Errorf("unsigned module changed: %q", got)
	}
	binary.BigEndian.PutUint32(info[8:], 1<<20)
	bad := bytes.Join([][]byte{body, info, []byte(sigMarker)}, nil)
	if got := stripSignature(bad); !bytes.Equal(got, bad) {
		t.Errorf("module with an impossible signature length changed: %q", got)
	}
}

// A stand-in twlab-guest (a script printing a stamp) decides which /init
// twlab vm uses: only one that prints this build's stamp is taken.
func TestGuestBinary(t *testing.T) {
	dir := t.TempDir()
	self := filepath.Join(dir, "twlab")
	guest := filepath.Join(dir, GuestName)
	old := BuildStamp
	defer func() { BuildStamp = old }()

	BuildStamp = "abc123"
	if got := GuestBinary(self); got != self {
		t.Errorf("no guest next to twlab: got %s, want %s", got, self)
	}
	write := func(stamp string) {
		if err := os.WriteFile(guest, []byte("#!/bin/sh\necho "+stamp+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("other")
	if got := GuestBinary(self); got != self {
		t.Errorf("guest of other sources: got %s, want %s", got, self)
	}
	write("abc123")
	// The script is not a static ELF: refused all the same.
	if got := GuestBinary(self); got != self {
		t.Errorf("guest that is no static binary: got %s, want %s", got, self)
	}
	BuildStamp = ""
	if got := GuestBinary(self); got != self {
		t.Errorf("unstamped build: got %s, want %s", got, self)
	}
	if testing.Short() {
		return
	}
	// The real one, built as make build does.
	os.Remove(guest)
	BuildStamp = "abc123"
	build := exec.Command("go", "build", "-ldflags=-s -w -X github.com/twlab/twlab/lab/vm.BuildStamp=abc123", "-o", guest, "../../cmd/twlab-guest")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build twlab-guest: %v\n%s", err, out)
	}
	if got := GuestBinary(self); got != guest {
		t.Errorf("twlab-guest of this build: got %s, want %s", got, guest)
	}
	BuildStamp = "abc124"
	if got := GuestBinary(self); got != self {
		t.Errorf("twlab-guest of another build: got %s, want %s", got, self)
	}
}

package vm

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// BuildStamp identifies the sources twlab was built from; make build sets
// it (-X) in twlab and twlab-guest alike. Empty in a plain go build.
var BuildStamp string

// StampFlag makes twlab-guest print its BuildStamp and exit.
const StampFlag = "--build-stamp"

// GuestName is the lean guest binary's file name, looked for next to twlab.
const GuestName = "twlab-guest"

// GuestBinary chooses the guest's /init for the twlab executable self:
// twlab-guest from the same folder when its build stamp equals this
// build's, else self. Host and guest speak a protocol of their own (the
// arguments, the result frames), so a guest from other sources is never
// used; a plain go build has no stamp and always uses itself.
func GuestBinary(self string) string {
	if BuildStamp == "" {
		return self
	}
	cand := filepath.Join(filepath.Dir(self), GuestName)
	if _, err := os.Stat(cand); err != nil {
		return self
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cand, StampFlag).Output()
	if err != nil || string(bytes.TrimSpace(out)) != BuildStamp {
		return self
	}
	if CheckStatic(cand) != nil {
		return self
	}
	return cand
}

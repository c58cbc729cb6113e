// Package result defines the run document (run.json, schema twlab.run/v1)
// and writes it atomically.
//
// Other tools read run.json; the names below are a contract. Add fields,
// never rename or repurpose one within v1. Every type of the document is
// declared in this package (testdata/v1 holds it to the bytes v1 has always
// had); the packages that measure return plain values, copied in by the
// runner.
package result

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/twlab/twlab/lab/tmpfile"
)

// Schema names this document's version.
const Schema = "twlab.run/v1"

// Run statuses.
const (
	RunRunning     = "running"
	RunOK          = "ok"
	RunFailed      = "failed"
	RunInterrupted = "interrupted"
	// RunNA: every cell was n/a on this kernel, so nothing was measured;
	// not a success (exit code 4).
	RunNA = "n/a"
)

// Error kinds of a broken cell.
const (
	ErrorInput    = "input"
	ErrorInternal = "internal"
)

// Cell statuses.
const (
	CellOK     = "ok"
	CellNA     = "n/a"
	CellFailed = "failed"
	// CellInterrupted: the run was interrupted during the cell's teardown,
	// after every figure was read; the figures and expectations are
	// complete, the reason says how they came out.
	CellInterrupted = "interrupted"
)

// Run is one twlab run.
type Run struct {
	Schema       string `json:"schema"`
	Tool         string `json:"tool"`
	RunID        string `json:"run_id"`
	ScenarioFile string `json:"scenario_file"`
	// Scenario is the scenario as lab/scenario encodes it, kept as raw JSON:
	// it is the scenario file's own format, and a reader takes what it
	// needs through ScenarioView.
	Scenario  json.RawMessage `json:"scenario"`
	Overrides []string        `json:"overrides,omitempty"`
	Only      string          `json:"only,omitempty"`
	Kernel    string          `json:"kernel"`
	// KernelFeatures is what detection found.
	KernelFeatures *KernelFeatures `json:"kernel_features,omitempty"`
	Host           Host            `json:"host"`
	// VM is what a twlab VM cost beyond the cells (twlab vm only; written by
	// the host).
	VM       *VMTiming  `json:"vm,omitempty"`
	Started  time.Time  `json:"started"`
	Finished *time.Time `json:"finished,omitempty"`
	Status   string     `json:"status"`
	Error    string     `json:"error,omitempty"`
	// CellsPlanned is how many cells the plan has (after --only): an
	// interrupted run records fewer: those it never started and the one it
	// was in, which measured nothing complete.
	CellsPlanned int     `json:"cells_planned,omitempty"`
	Cells        []*Cell `json:"cells"`
	// Timeseries describes timeseries.csv, the 10 Hz readings of every cell.
	Timeseries *TimeseriesFile `json:"timeseries,omitempty"`
	// Warnings says what ReadRun found odd and left out; never in run.json.
	Warnings []string `json:"-"`
}

// Host describes where the run happened.
type Host struct {
	Hostname string `json:"hostname"`
	CPUs     int    `json:"cpus"`
	VM       bool   `json:"vm"` // the whole machine is the lab (twlab vm guest)
}

// VMTiming splits a kernel's time in twlab vm: everything but Cells is the
// VM's overhead. Seconds.
type VMTiming struct {
	Accel    string `json:"accel"`             // tcg or kvm
	BootFrom string `json:"boot_from"`         // pvh (the unpacked ELF) or bzImage
	Machine  string `json:"machine,omitempty"` // QEMU's machine: microvm or pc
	// BootAttempts is 2 when the first boot hung silent and was redone.
	BootAttempts int     `json:"boot_attempts,omitempty"`
	Boot         float64 `json:"boot_s"`     // QEMU start until /init speaks
	Modules      float64 `json:"modules_s"`  // seeding the random pool and loading modules
	Detect       float64 `json:"detect_s"`   // kernel feature detection
	Cells        float64 `json:"cells_s"`    // the scenario's cells
	Transfer     float64 `json:"transfer_s"` // the last cell's end until the result is on the host
	Exit         float64 `json:"exit_s"`     // the result on the host until QEMU has exited
	Total        float64 `json:"total_s"`    // QEMU start until QEMU exit
	Overhead     float64 `json:"overhead_s"` // Total - Cells
}

// Cell is one matrix cell.
type Cell struct {
	ID     string `json:"id"`
	Index  int    `json:"index"`
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// ErrorKind classifies a cell that broke: "input" (the scenario asked
	// for something the kernel refused), "internal" (a twlab bug).
	ErrorKind string `json:"error_kind,omitempty"`
	// Knobs are the values asked for: every sysctl as ROLE.NAME plus the
	// matrix's field keys.
	Knobs map[string]string `json:"knobs"`
	// KnobsActual are the values the kernel held during the cell, read back
	// after writing; "absent" where the kernel lacks a knob whose absence
	// means the requested value (tcp_tw_recycle=0 on Linux >= 4.12).
	KnobsActual map[string]string `json:"knobs_actual,omitempty"`
	Matrix      map[string]string `json:"matrix"`
	Started     time.Time         `json:"started"`
	DurationS   float64           `json:"duration_s"`
	Load        *Load             `json:"load,omitempty"`
	SYN         *SYN              `json:"syn,omitempty"`
	Nodes       map[string]*Node  `json:"nodes,omitempty"`
	Expect      []Expect          `json:"expect"`
	Notes       []string          `json:"notes,omitempty"`
	// Skew describes the clock offsets in force (ts_skew: fixed) and proves
	// them with the program's rewrite counters.
	Skew *Skew `json:"skew,omitempty"`
	// Pcap lists the captures written for this cell (--pcap).
	Pcap []Capture `json:"pcap,omitempty"`
	// Timeseries says what the cell wrote to timeseries.csv.
	Timeseries *CellTimeseries `json:"timeseries,omitempty"`
	// Series holds the cell's readings until they are appended to
	// timeseries.csv; never in run.json.
	Series []*Series `json:"-"`
}

// Skew is the clock skew of a cell.
type Skew struct {
	Mode string `json:"mode"` // kernel | fixed
	// Method of fixed skew: ebpf (a tc program rewrites the timestamps) or
	// socket (each socket's own offset, set before connect; kernels before
	// 4.10 without eBPF on tc).
	Method  string                 `json:"method,omitempty"`
	Clients map[string]*SkewClient `json:"clients,omitempty"`
}

// Fixed skew methods.
const (
	SkewEBPF   = "ebpf"
	SkewSocket = "socket"
)

// SkewClient is one client's offset and what the eBPF program did.
type SkewClient struct {
	OffsetTicks int32 `json:"offset_ticks"` // in ticks of the kernel's timestamp clock
	// TSHz is that clock's rate (1000 since Linux 4.13, HZ before) and
	// OffsetMS the offset in milliseconds, whatever the rate.
	TSHz     int   `json:"ts_hz,omitempty"`
	OffsetMS int64 `json:"offset_ms"`
	// Sockets: connections whose socket got the offset (method socket).
	Sockets int64 `json:"sockets,omitempty"`
	// SkewStats: what the eBPF program did (method ebpf); embedded, so its
	// counters are fields of the client in run.json.
	SkewStats
}

// SYN is what the server's nftables counters saw during the cell.
type SYN struct {
	In        int64 `json:"in"`
	SynAckOut int64 `json:"synack_out"`
	// SynAckRetrans: the SYN-ACKs among synack_out that the server sent
	// again (its TcpExt.TCPSynRetrans, read together with the nftables
	// counters): on its timer, for a handshake whose final ACK it dropped
	// (a full accept queue), or for a SYN that came again. Absent in
	// run.json when 0, and in runs of a twlab before it.
	SynAckRetrans int64 `json:"synack_retrans,omitempty"`
	// Unanswered: in - synack_out, floored at 0, as in every v1 run. A
	// SYN-ACK sent again on the timer answers no new SYN, so with
	// synack_retrans > 0 this may be low by up to synack_retrans; one sent
	// for a SYN that came again does answer it. Which of the two it was,
	// only a capture tells.
	Unanswered int64 `json:"unanswered"`
	RSTIn      int64 `json:"rst_in"`
	RSTOut     int64 `json:"rst_out"`
}

// Node is one namespace's measurements over the cell.
type Node struct {
	// Counters are deltas of every /proc/net/netstat and /proc/net/snmp
	// field, as "Group.Field".
	Counters map[string]int64 `json:"counters"`
	// Summary picks the fields of the TIME_WAIT story by name (present ones
	// only) plus "paws", the sum of the PAWS* family this kernel has.
	Summary  map[string]int64 `json:"summary"`
	TimeWait TimeWait         `json:"time_wait"`
}

// TimeWait summarises TIME_WAIT sockets sampled during the cell.
type TimeWait struct {
	Max     int      `json:"max"`
	Final   int      `json:"final"`
	Samples int      `json:"samples"`
	Series  [][2]int `json:"series,omitempty"` // [ms since sampling started (just before the load), count]
}

// Expect is one evaluated assertion.
type Expect struct {
	Name  string `json:"name,omitempty"`
	Expr  string `json:"expr"`
	OK    bool   `json:"ok"`
	Value any    `json:"value"`           // the measured figure (left side)
	Bound any    `json:"bound,omitempty"` // the right side of a comparison
	Error string `json:"error,omitempty"`
}

// SummaryFields are the counters shown by name.
var SummaryFields = []string{
	"TcpExt.PAWSPassive", "TcpExt.PAWSActive", "TcpExt.PAWSEstab", "TcpExt.PAWSTimewait",
	"TcpExt.TW", "TcpExt.TWRecycled", "TcpExt.TWKilled", "TcpExt.TCPTimeWaitOverflow",
	"TcpExt.ListenDrops", "TcpExt.ListenOverflows", "TcpExt.TCPSynRetrans",
	"TcpExt.TCPACKSkippedTimeWait", "Tcp.OutRsts", "Tcp.AttemptFails", "Tcp.ActiveOpens", "Tcp.PassiveOpens",
}

// PAWSFields are summed into the kernel-independent "paws" figure
// (PAWSEstab only on kernels without PAWSTimewait: see Summarize).
var PAWSFields = []string{"TcpExt.PAWSPassive", "TcpExt.PAWSActive", "TcpExt.PAWSEstab", "TcpExt.PAWSTimewait"}

// PAWS is the "paws" figure of a node's counters, less before's (nil: none):
// the PAWS rejects of SYNs and of segments to TIME_WAIT, read from whichever
// counter the kernel keeps them in. From 6.16 on that is PAWSTimewait, and
// PAWSEstab counts only established sockets' PAWS discards: a stale
// handshake ACK that a busy machine delivered after the request made one
// now and then (on 5.10: 236 "rejects" for 233 unanswered SYNs), which is no
// rejected SYN. Before 6.16 the TIME_WAIT rejects are in PAWSEstab, and
// those discards with them.
func PAWS(counters, before map[string]int64) int64 {
	_, hasTW := counters["TcpExt.PAWSTimewait"]
	var paws int64
	for _, f := range PAWSFields {
		if f == "TcpExt.PAWSEstab" && hasTW {
			continue
		}
		paws += counters[f] - before[f]
	}
	return paws
}

// Summarize fills Summary from Counters.
func (n *Node) Summarize() {
	n.Summary = map[string]int64{}
	for _, f := range SummaryFields {
		if v, ok := n.Counters[f]; ok {
			n.Summary[f] = v
		}
	}
	n.Summary["paws"] = PAWS(n.Counters, nil)
}

// WriteFileAtomic writes data to path through a temporary file in the same
// folder and a rename, so a reader never sees a torn file. A temporary file
// of this path that a killed writer left is removed first.
func WriteFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmpfile.Sweep(dir, filepath.Base(path))
	f, err := tmpfile.Create(dir, filepath.Base(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	// Mode and owner are set on the open file, never by name after the
	// rename: in a folder another user can write, the name could by then
	// be a symlink to a file of root's.
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if uid, gid, ok := sudoUser(); ok {
		f.Chown(uid, gid)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	return nil
}

// WriteUserFile writes a file whose path the user gave (--junit, --html):
// atomically when it is a regular file or new, and through it when it is
// something else - a rename put a plain file in place of /dev/stdout (a
// symlink) or /dev/null (a device), and a FIFO's reader got nothing. Files
// twlab names itself (run.json in a results folder) keep WriteFileAtomic,
// which replaces a symlink found at the name rather than follow it: under
// sudo, following one planted there would write root's file.
func WriteUserFile(path string, data []byte) error {
	if st, err := os.Lstat(path); err == nil && !st.Mode().IsRegular() {
		if st.IsDir() {
			return fmt.Errorf("write %s: is a directory", path)
		}
		return writeThrough(path, data)
	}
	return WriteFileAtomic(path, data)
}

// writeThrough writes data into what path names (a device, a pipe, a link's
// target) as it is: there is nothing to replace atomically.
func writeThrough(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// WriteJSON writes r as indented JSON, atomically.
func (r *Run) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode run: %w", err)
	}
	return WriteFileAtomic(path, append(b, '\n'))
}

// MkdirAll creates dir and its missing parents, each owned by the invoking
// user under sudo, so that results can be removed without root.
func MkdirAll(dir string) error {
	var missing []string
	for d := filepath.Clean(dir); d != "." && d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range missing {
		ChownToSudoUser(d)
	}
	return nil
}

// ChownToSudoUser gives path (not what a symlink there points to) to the
// user who ran sudo.
func ChownToSudoUser(path string) {
	if uid, gid, ok := sudoUser(); ok {
		os.Lchown(path, uid, gid)
	}
}

// sudoUser is the invoking user under sudo.
func sudoUser() (uid, gid int, ok bool) {
	uid, err1 := strconv.Atoi(os.Getenv("SUDO_UID"))
	gid, err2 := strconv.Atoi(os.Getenv("SUDO_GID"))
	return uid, gid, err1 == nil && err2 == nil && uid > 0
}

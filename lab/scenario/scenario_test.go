package scenario

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func readShipped(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "scenarios", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustLoad(t *testing.T, file string, src []byte, opt Options) *Plan {
	t.Helper()
	p, err := Load(file, src, opt)
	if err != nil {
		t.Fatalf("Load(%s, %+v): %v", file, opt, err)
	}
	return p
}

func cellIDs(p *Plan) []string {
	var ids []string
	for _, c := range p.Cells {
		ids = append(ids, c.ID)
	}
	return ids
}

func expectNames(c *Cell) []string {
	var out []string
	for _, e := range c.Expect {
		out = append(out, e.Name)
	}
	return out
}

func TestNatPaws(t *testing.T) {
	p := mustLoad(t, "nat-paws.yaml", readShipped(t, "nat-paws.yaml"), Options{})
	if p.Scenario.Name != "nat-paws" {
		t.Errorf("name = %q", p.Scenario.Name)
	}
	// The first matrix axis varies slowest; the includes come last.
	want := []string{
		"tw_recycle=0,timestamps=2,rfc1337=0",
		"tw_recycle=0,timestamps=2,rfc1337=1",
		"tw_recycle=0,timestamps=0,rfc1337=0",
		"tw_recycle=0,timestamps=0,rfc1337=1",
		"tw_recycle=1,timestamps=2,rfc1337=0,bind_port=0",
		"tw_recycle=1,timestamps=0,rfc1337=0,bind_port=0",
	}
	if got := cellIDs(p); !slices.Equal(got, want) {
		t.Fatalf("cells:\n got %q\nwant %q", got, want)
	}
	for i, c := range p.Cells {
		if c.Index != i {
			t.Errorf("cell %s: Index %d, want %d", c.ID, c.Index, i)
		}
		var parts []string
		for _, kv := range c.Matrix {
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		recycle := c.Matrix[0].Value == "1"
		bind := "50000"
		if recycle {
			bind = "0"
		}
		wantVars := map[string]string{
			// from the matrix or an include
			"server.net.ipv4.tcp_tw_recycle":  c.Matrix[0].Value,
			"clients.net.ipv4.tcp_timestamps": c.Matrix[1].Value,
			"server.net.ipv4.tcp_rfc1337":     c.Matrix[2].Value,
			"load.bind_port":                  bind,
			// from the sysctl and field sections
			"lvs.net.netfilter.nf_conntrack_tcp_timeout_syn_sent": "1",
			"lvs.snat_ports":       "0",
			"lvs.mode":             "snat",
			"load.connections":     "100",
			"load.duration":        "8s",
			"load.connect_timeout": "3.5s",
			"server.close":         "server",
			"clients.count":        "2",
			"clients.ts_skew":      "fixed",
		}
		for k, v := range wantVars {
			if got, ok := c.Vars[k]; !ok || got != v {
				t.Errorf("cell %s (%s): Vars[%s] = %q, %v; want %q", c.ID, strings.Join(parts, " "), k, got, ok, v)
			}
		}
		if c.S.Load.Connections != 100 || c.S.LVS.SNATPorts != 0 {
			t.Errorf("cell %s: typed scenario not filled: %+v", c.ID, c.S.Load)
		}

		// Expectations that need kernel facts are kept for the runner,
		// unless no kernel could select them here (the tw_recycle one in the
		// cell with tw_recycle=1 and timestamps on); the others are selected
		// now.
		ts, rfc := c.Vars["clients.net.ipv4.tcp_timestamps"], c.Vars["server.net.ipv4.tcp_rfc1337"]
		var wantExp []string
		switch {
		case recycle && ts == "2":
			wantExp = []string{"the clocks are in force", "tw_recycle=1 with timestamps"}
		case recycle:
			wantExp = []string{"where the kernel has tw_recycle", "timestamps off", "tw_recycle=1 without timestamps"}
		case ts == "2" && rfc == "0":
			wantExp = []string{"the clocks are in force", "timestamps on, rfc1337=0", "where the kernel has tw_recycle"}
		case ts == "2" && rfc == "1":
			wantExp = []string{"the clocks are in force", "timestamps on, rfc1337=1", "where the kernel has tw_recycle"}
		case ts == "0":
			wantExp = []string{"where the kernel has tw_recycle", "timestamps off", "timestamps off, the same 4-tuple reused"}
		}
		names := expectNames(c)
		if len(names) != len(wantExp) {
			t.Errorf("cell %s: expectations %q, want %q", c.ID, names, wantExp)
			continue
		}
		for j, n := range names {
			if !strings.HasPrefix(n, wantExp[j]) {
				t.Errorf("cell %s: expectation %d is %q, want one starting %q", c.ID, j, n, wantExp[j])
			}
		}
		for _, e := range c.Expect {
			if len(e.Asserts) == 0 || e.When == nil || e.Line == 0 {
				t.Errorf("cell %s: expectation %q not parsed fully: %+v", c.ID, e.Name, e)
			}
		}
	}
}

// Every shipped scenario must load, so a new one cannot ship broken.
func TestShippedScenariosLoad(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "scenarios", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no shipped scenarios found")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			p := mustLoad(t, filepath.Base(f), src, Options{})
			seen := map[string]bool{}
			for _, c := range p.Cells {
				if c.ID == "" || len(c.Vars) == 0 {
					t.Errorf("cell %d: ID %q, %d vars", c.Index, c.ID, len(c.Vars))
				}
				if seen[c.ID] {
					t.Errorf("duplicate cell id %q", c.ID)
				}
				seen[c.ID] = true
			}
			// Every cell alone, by --only and by --set of its matrix
			// values: what the whole scenario passes, a part of it must
			// (a check over "the cells" once refused nat-paws under
			// --only for the expectations the --only left without a cell).
			for _, c := range p.Cells {
				var only, set []string
				for _, kv := range c.Matrix {
					only = append(only, kv.Key+" == "+strconv.Quote(kv.Value))
					set = append(set, kv.Key+"="+kv.Value)
				}
				if len(only) == 0 {
					continue
				}
				for _, opt := range []Options{{Only: strings.Join(only, " && ")}, {Set: set}} {
					if _, err := Load(filepath.Base(f), src, opt); err != nil {
						t.Errorf("cell %s alone (%+v): %v", c.ID, opt, err)
					}
				}
			}
		})
	}
}

func TestSetOverrides(t *testing.T) {
	src := readShipped(t, "nat-paws.yaml")
	p := mustLoad(t, "nat-paws.yaml", src, Options{Set: []string{
		"load.connections=50",
		"server.net.ipv4.tcp_rfc1337=1",
		"lvs.net.netfilter.nf_conntrack_tcp_timeout_syn_sent = 5",
		"server.net.ipv4.tcp_max_tw_buckets=1000", // a sysctl the file does not set
	}})
	if p.Scenario.Load.Connections != 50 {
		t.Errorf("plan scenario: connections = %d, want 50", p.Scenario.Load.Connections)
	}
	// tcp_rfc1337 is a matrix axis; --set pins it in the matrix's cells,
	// and an include that names its own value keeps it.
	want := []string{
		"tw_recycle=0,timestamps=2,rfc1337=1",
		"tw_recycle=0,timestamps=0,rfc1337=1",
		"tw_recycle=1,timestamps=2,rfc1337=0,bind_port=0",
		"tw_recycle=1,timestamps=0,rfc1337=0,bind_port=0",
	}
	if got := cellIDs(p); !slices.Equal(got, want) {
		t.Fatalf("cells:\n got %q\nwant %q", got, want)
	}
	// ... and the user is told so, once per include that keeps its own.
	if len(p.Warnings) != 2 || !strings.Contains(p.Warnings[0], "include[0] keeps its own server.net.ipv4.tcp_rfc1337=0") {
		t.Errorf("warnings: %q", p.Warnings)
	}
	for _, c := range p.Cells {
		rfc := "1"
		if strings.HasSuffix(c.ID, "bind_port=0") {
			rfc = "0"
		}
		for k, v := range map[string]string{
			"load.connections":                                    "50",
			"server.net.ipv4.tcp_rfc1337":                         rfc,
			"lvs.net.netfilter.nf_conntrack_tcp_timeout_syn_sent": "5",
			"server.net.ipv4.tcp_max_tw_buckets":                  "1000",
			"load.duration":                                       "8s", // untouched
		} {
			if c.Vars[k] != v {
				t.Errorf("cell %s: Vars[%s] = %q, want %q", c.ID, k, c.Vars[k], v)
			}
		}
		if c.S.Load.Connections != 50 {
			t.Errorf("cell %s: S.Load.Connections = %d", c.ID, c.S.Load.Connections)
		}
		names := expectNames(c)
		if c.Vars["server.net.ipv4.tcp_tw_recycle"] == "0" && c.Vars["clients.net.ipv4.tcp_timestamps"] == "2" && !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "timestamps on, rfc1337=1") }) {
			t.Errorf("cell %s: expectations %q", c.ID, names)
		}
	}
}

// TestSetClockStep: ts_offset_step is a struct written as one scalar;
// --set must take it like any single value (it was refused as a section),
// and still refuse the list ts_offsets.
func TestSetClockStep(t *testing.T) {
	src := readShipped(t, "nat-paws-fixed-skew.yaml")
	p := mustLoad(t, "nat-paws-fixed-skew.yaml", src, Options{Set: []string{"clients.ts_offset_step=-30s"}})
	if st := p.Scenario.Clients.TSOffsetStep; st == nil || st.TicksAt(1000) != -30000 {
		t.Fatalf("ts_offset_step = %+v, want -30 s", st)
	}
	_, err := Load("nat-paws-fixed-skew.yaml", src, Options{Set: []string{"clients.ts_offsets=0s"}})
	if err == nil || !strings.Contains(err.Error(), "is a list, not a single value") {
		t.Errorf("--set of the list ts_offsets: %v", err)
	}
}

// small is a valid scenario to vary in tests.
const small = `name: small
lvs:
  snat_ports: 4
sysctl:
  server:
    net.ipv4.tcp_timestamps: 1
`

func TestMatrixOverField(t *testing.T) {
	src := small + `matrix:
  lvs.snat_ports: [1, 8]
  server.net.ipv4.tcp_rfc1337: [0, 1]
expect:
  - name: many ports
    when: lvs.snat_ports > 1
    assert: server.paws == 0
`
	p := mustLoad(t, "s.yaml", []byte(src), Options{})
	want := []string{"snat_ports=1,rfc1337=0", "snat_ports=1,rfc1337=1", "snat_ports=8,rfc1337=0", "snat_ports=8,rfc1337=1"}
	if got := cellIDs(p); !slices.Equal(got, want) {
		t.Fatalf("cells %q, want %q", got, want)
	}
	for _, c := range p.Cells {
		wantPorts := map[string]int{"1": 1, "8": 8}[c.Matrix[0].Value]
		if c.S.LVS.SNATPorts != wantPorts || c.Vars["lvs.snat_ports"] != c.Matrix[0].Value {
			t.Errorf("cell %s: SNATPorts %d, Vars %q", c.ID, c.S.LVS.SNATPorts, c.Vars["lvs.snat_ports"])
		}
		if c.Vars["server.net.ipv4.tcp_timestamps"] != "1" {
			t.Errorf("cell %s lost the file's sysctl", c.ID)
		}
		if got := len(c.Expect) == 1; got != (wantPorts > 1) {
			t.Errorf("cell %s: expectations %q", c.ID, expectNames(c))
		}
	}
	// The plan's scenario is the one before the matrix.
	if p.Scenario.LVS.SNATPorts != 4 {
		t.Errorf("plan scenario snat_ports = %d, want 4", p.Scenario.LVS.SNATPorts)
	}
}

func TestExcludeIncludeOnly(t *testing.T) {
	src := small + `matrix:
  lvs.snat_ports: [1, 8]
  server.net.ipv4.tcp_rfc1337: [0, 1]
exclude:
  - {lvs.snat_ports: 8, server.net.ipv4.tcp_rfc1337: "1"}
  - {lvs.snat_ports: 1, server.net.ipv4.tcp_rfc1337: 0}
include:
  - {lvs.snat_ports: 16, server.net.ipv4.tcp_rfc1337: 1, load.connections: 10}
`
	p := mustLoad(t, "s.yaml", []byte(src), Options{})
	want := []string{"snat_ports=1,rfc1337=1", "snat_ports=8,rfc1337=0", "snat_ports=16,rfc1337=1,connections=10"}
	if got := cellIDs(p); !slices.Equal(got, want) {
		t.Fatalf("cells %q, want %q", got, want)
	}
	inc := p.Cells[2]
	if inc.Index != 2 || inc.S.LVS.SNATPorts != 16 || inc.S.Load.Connections != 10 || inc.Vars["server.net.ipv4.tcp_rfc1337"] != "1" {
		t.Errorf("include cell: %+v %+v", inc.S.LVS, inc.Vars)
	}
	if p.Cells[0].S.Load.Connections != 200 {
		t.Errorf("include leaked into other cells: connections %d", p.Cells[0].S.Load.Connections)
	}

	p = mustLoad(t, "s.yaml", []byte(src), Options{Only: "lvs.snat_ports >= 8"})
	want = []string{"snat_ports=8,rfc1337=0", "snat_ports=16,rfc1337=1,connections=10"}
	if got := cellIDs(p); !slices.Equal(got, want) {
		t.Fatalf("--only: cells %q, want %q", got, want)
	}
	for i, c := range p.Cells {
		if c.Index != i {
			t.Errorf("--only: cell %s has Index %d, want %d", c.ID, c.Index, i)
		}
	}

	p = mustLoad(t, "nat-paws.yaml", readShipped(t, "nat-paws.yaml"),
		Options{Only: "server.net.ipv4.tcp_rfc1337 == 0 && clients.net.ipv4.tcp_timestamps == 2"})
	want = []string{"tw_recycle=0,timestamps=2,rfc1337=0", "tw_recycle=1,timestamps=2,rfc1337=0,bind_port=0"}
	if got := cellIDs(p); !slices.Equal(got, want) {
		t.Fatalf("--only on nat-paws: cells %q, want %q", got, want)
	}
}

func TestDefaults(t *testing.T) {
	p := mustLoad(t, "s.yaml", []byte("name: d\nclients:\n  count: ~\n"), Options{})
	if len(p.Cells) != 1 || p.Cells[0].ID != "default" {
		t.Fatalf("cells %q", cellIDs(p))
	}
	s := p.Cells[0].S
	if s.Clients.Count != 2 || s.Load.Connections != 200 || s.Server.Port != 8080 || s.LVS.Mode != "snat" ||
		s.Load.Order != "round-robin" || s.Load.Duration.D().String() != "10s" || s.Seed != 1 {
		t.Errorf("defaults not applied: %+v", s)
	}
}

// lvs.vip in a scenario where no cell is fullnat does nothing: a warning
// says so; with a fullnat cell (the matrix may vary the mode) there is none.
func TestVIPWithoutFullNATWarns(t *testing.T) {
	p := mustLoad(t, "v.yaml", []byte("name: v\nlvs: {mode: snat, vip: 198.18.0.100}\n"), Options{})
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "lvs.vip 198.18.0.100 is used only with lvs.mode: fullnat") {
		t.Errorf("warnings %q", p.Warnings)
	}
	p = mustLoad(t, "v.yaml", []byte("name: v\nlvs: {vip: 198.18.0.100}\nmatrix: {lvs.mode: [snat, fullnat]}\n"), Options{})
	if len(p.Warnings) != 0 {
		t.Errorf("warnings %q with a fullnat cell", p.Warnings)
	}
}

// An exclude entry a --set leaves nothing to remove is fine: the --set
// pinned the axis it names.
func TestExcludeUnderSet(t *testing.T) {
	src := "name: x\nmatrix:\n  lvs.random: [true, false]\n  load.concurrency: [1, 2]\nexclude:\n  - {lvs.random: false, load.concurrency: 2}\n"
	p, err := Load("s.yaml", []byte(src), Options{Set: []string{"lvs.random=true"}})
	if err != nil || len(p.Cells) != 2 {
		t.Fatalf("cells %v, %v; want 2 and no error", cellIDs(p), err)
	}
}

// A key only an include names gets a label of its own when an axis has
// the same short name: the two cells are distinct, not "listed twice".
func TestIncludeKeyLabelUnique(t *testing.T) {
	src := "name: x\nmatrix:\n  server.net.ipv4.tcp_timestamps: [0, 1]\ninclude:\n  - {clients.net.ipv4.tcp_timestamps: 1}\n"
	p, err := Load("s.yaml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ids := cellIDs(p); len(ids) != 3 || ids[2] != "clients.timestamps=1" {
		t.Errorf("cells %q; want the include's labelled clients.timestamps=1", ids)
	}
}

// Offsets in raw ticks and in time are different experiments on a jiffies
// clock, though their Vars agree.
func TestRawAndTimedOffsetsDiffer(t *testing.T) {
	src := "name: x\nclients: {count: 2, ts_skew: fixed}\nmatrix:\n  clients.ts_offset_step: [60000, 60s]\n"
	if p, err := Load("s.yaml", []byte(src), Options{}); err != nil || len(p.Cells) != 2 {
		t.Errorf("cells %v, %v; want 2", cellIDs(p), err)
	}
}

// An optional field may be given no value, which means what leaving it
// out means (conntrack_tw_timeout: the kernel's default).
func TestNullForOptionalFields(t *testing.T) {
	src := "name: x\nlvs: {conntrack_tw_timeout: 0s}\nmatrix:\n  lvs.conntrack_tw_timeout: [~, 0s]\n"
	p, err := Load("s.yaml", []byte(src), Options{})
	if err != nil || len(p.Cells) != 2 || p.Cells[0].S.LVS.ConntrackTWTimeout != nil || p.Cells[1].S.LVS.ConntrackTWTimeout == nil {
		t.Fatalf("cells %v, %v; want the kernel default in the first", cellIDs(p), err)
	}
	p, err = Load("s.yaml", []byte("name: x\nlvs: {conntrack_tw_timeout: 0s}\n"), Options{Set: []string{"lvs.conntrack_tw_timeout=~"}})
	if err != nil || p.Cells[0].S.LVS.ConntrackTWTimeout != nil {
		t.Fatalf("--set lvs.conntrack_tw_timeout=~: %v", err)
	}
}

// A clock offset given as a time compares in seconds like every duration;
// one given as raw ticks compares as ticks.
func TestOffsetStepComparesAsDuration(t *testing.T) {
	src := "name: x\nclients: {count: 2, ts_skew: fixed}\nmatrix:\n  clients.ts_offset_step: [-30s, -30000]\n" +
		"expect:\n  - {when: clients.ts_offset_step == -30, assert: load.ok >= 0}\n  - {when: clients.ts_offset_step == -30000, assert: load.ok >= 0}\n"
	p, err := Load("s.yaml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Cells[0].Expect) != 1 || p.Cells[0].Expect[0].Line != 6 || len(p.Cells[1].Expect) != 1 || p.Cells[1].Expect[0].Line != 7 {
		t.Errorf("expectations: %d and %d", len(p.Cells[0].Expect), len(p.Cells[1].Expect))
	}
}

// A knob written in another base is the number the kernel reads: 0x1 is
// selected by "== 1" (it was text to expressions and matched nothing), and
// 010 is 8, which a 0-or-1 knob refuses.
func TestKnobValuesInTheKernelsBase(t *testing.T) {
	src := []byte("name: t\nsysctl:\n  server:\n    net.ipv4.tcp_rfc1337: 0x1\nexpect:\n  - when: server.net.ipv4.tcp_rfc1337 == 1\n    assert: load.ok >= 0\n")
	p, err := Load("s.yaml", src, Options{Only: "server.net.ipv4.tcp_rfc1337 == 1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Cells) != 1 || len(p.Cells[0].Expect) != 1 {
		t.Errorf("0x1: %d cells, want the one, with its expectation", len(p.Cells))
	}
	_, err = Load("s.yaml", src, Options{Set: []string{"server.net.ipv4.tcp_rfc1337=010"}})
	if err == nil || !strings.Contains(err.Error(), "want 0 or 1") {
		t.Errorf("010 (8 to the kernel): %v", err)
	}
}

// A scenario path with no size to check first (a device, a pipe) is read
// only up to the limit: /dev/zero ran validate out of memory.
func TestReadFileBoundsWhatHasNoSize(t *testing.T) {
	_, err := ReadFile("/dev/zero")
	if err == nil || !strings.Contains(err.Error(), "scenarios are limited to") {
		t.Errorf("/dev/zero: %v", err)
	}
}

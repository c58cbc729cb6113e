package scenario

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// firstError is the first *Error in err (an *Error or Errors).
func firstError(t *testing.T, err error) *Error {
	t.Helper()
	var es Errors
	if errors.As(err, &es) && len(es) > 0 {
		return es[0]
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	t.Fatalf("error %v (%T) is neither *Error nor Errors", err, err)
	return nil
}

const name = "name: x\n"

// loadErrorCases is the bad-input table. Each case states where the error
// must point (file:line:col, col 0 when the source gives none) and a
// fragment saying what would be valid; testdata/load_errors.golden pins the
// whole message, so a change of wording shows in review.
var loadErrorCases = []struct {
	name string
	src  string
	opt  Options
	pos  string // File:Line:Col
	frag string
}{
	{"unknown top-level field", name + "bogus: 1\n", Options{}, "s.yaml:2:1",
		"bogus: unknown field; valid fields here: name, description, seed, clients, lvs, server, load, sysctl, matrix, exclude, include, expect"},
	{"unknown nested field", name + "load:\n  conections: 5\n", Options{}, "s.yaml:3:3",
		"load.conections: unknown field; valid fields here: connections, duration, rate, concurrency, order, connect_timeout, io_timeout, bind_port, gap"},
	{"field given twice", name + "load:\n  connections: 1\n  connections: 2\n", Options{}, "s.yaml:4:3", "load.connections: given twice"},
	{"role given twice", name + "sysctl:\n  server: {net.a: 1}\n  server: {net.b: 1}\n", Options{}, "s.yaml:4:3", "sysctl.server: given twice"},
	{"wrong type", name + "load:\n  connections: lots\n", Options{}, "s.yaml:3:16", `load.connections: "lots" is not valid here: want an integer`},
	{"wrong type in flow mapping", name + "clients: {count: many}\n", Options{}, "s.yaml:2:18", `clients.count: "many" is not valid here: want an integer`},
	{"negative seed", name + "seed: -1\n", Options{}, "s.yaml:2:7", `seed: "-1" is not valid here: want an integer of 0 or more`},
	{"list for a value", name + "load:\n  connections: [1]\n", Options{}, "s.yaml:3:16", "load.connections: want a single value, not a list"},
	{"scalar for a section", name + "load: 5\n", Options{}, "s.yaml:2:7", "load: want a mapping with fields connections, duration"},
	{"clients count zero", name + "clients: {count: 0}\n", Options{}, "s.yaml:2:18", "clients.count: 0 is out of range; want 1..64"},
	{"clients count huge", name + "clients:\n  count: 100000\n", Options{}, "s.yaml:3:10", "clients.count: 100000 is out of range; want 1..64"},
	{"connections zero", name + "load:\n  connections: 0\n", Options{}, "s.yaml:3:16", "load.connections: 0 is out of range; want 1..1000000"},
	{"connections huge", name + "load:\n  connections: 1000000000000\n", Options{}, "s.yaml:3:16", "load.connections: 1000000000000 is out of range; want 1..1000000"},
	{"duration a year", name + "load:\n  duration: 8760h\n", Options{}, "s.yaml:3:13", "load.duration: 8760h0m0s is out of range; want 100ms..10m0s"},
	{"duration zero", name + "load:\n  duration: 0s\n", Options{}, "s.yaml:3:13", "load.duration: 0s is out of range; want 100ms..10m0s"},
	{"duration negative", name + "load:\n  duration: -1s\n", Options{}, "s.yaml:3:13", "out of range; want 100ms..10m0s"},
	{"duration text", name + "load:\n  duration: 8 seconds\n", Options{}, "s.yaml:3:13", `load.duration: "8 seconds" is not a duration: want e.g. 500ms, 8s, 2m`},
	{"duration overflow", name + "load:\n  duration: 1e400\n", Options{}, "s.yaml:3:13", "is not a duration"},
	{"rate NaN", name + "load:\n  rate: .nan\n", Options{}, "s.yaml:3:9", "load.rate: NaN is out of range; want 0 (unpaced) to 1000000"},
	{"rate negative", name + "load:\n  rate: -1\n", Options{}, "s.yaml:3:9", "load.rate: -1 is out of range"},
	{"conntrack timeout fraction", name + "lvs:\n  conntrack_tw_timeout: 1.5\n", Options{}, "s.yaml:3:25", "want whole seconds from 0s to 1h"},
	{"close mode", name + "server:\n  close: later\n", Options{}, "s.yaml:3:10", `server.close: "later": want server, client or reset`},
	{"close mode empty", name + "server:\n  close: \"\"\n", Options{}, "s.yaml:3:10", `server.close: "": want server, client or reset`},
	{"order", name + "load:\n  order: sideways\n", Options{}, "s.yaml:3:10", `load.order: "sideways": want round-robin or random`},
	{"lvs mode", name + "lvs:\n  mode: dnat\n", Options{}, "s.yaml:3:9", `lvs.mode: "dnat": want snat, fullnat or route`},
	{"name missing", "clients:\n  count: 1\n", Options{}, "s.yaml:0:0", "name: missing; give the scenario a short name"},
	{"name invalid", "name: Nat Paws\n", Options{}, "s.yaml:1:7", `name: "Nat Paws": want lowercase letters, digits`},
	{"sysctl dotdot", name + "sysctl:\n  server:\n    net.ipv4/../../x: 1\n", Options{}, "s.yaml:4:5",
		`sysctl.server.net.ipv4/../../x: sysctl name "net.ipv4/../../x" is not valid: want dotted segments of letters, digits, '_' or '-' under net.`},
	{"sysctl relative path", name + "sysctl:\n  lvs:\n    ../etc: 1\n", Options{}, "s.yaml:4:5", `sysctl name "../etc" is not valid: want dotted segments`},
	{"sysctl with space", name + "sysctl:\n  clients:\n    net.ipv4.tcp rfc: 1\n", Options{}, "s.yaml:4:5", `sysctl name "net.ipv4.tcp rfc" is not valid`},
	{"sysctl outside net", name + "sysctl:\n  server:\n    kernel.panic: 1\n", Options{}, "s.yaml:4:5", `under net., e.g. net.ipv4.tcp_rfc1337`},
	{"sysctl empty value", name + "sysctl:\n  server:\n    net.ipv4.tcp_rfc1337: \"\"\n", Options{}, "s.yaml:4:5", "want a non-empty single-line value"},
	{"sysctl list value", name + "sysctl:\n  server:\n    net.ipv4.tcp_rfc1337: [1]\n", Options{}, "s.yaml:4:27", "sysctl net.ipv4.tcp_rfc1337: want a scalar value"},
	{"sysctl twice", name + "sysctl:\n  server:\n    net.ipv4.tcp_rfc1337: 1\n    net.ipv4.tcp_rfc1337: 0\n", Options{}, "s.yaml:5:5", "sysctl.server.net.ipv4.tcp_rfc1337: given twice"},
	// A known knob's value is checked before any lab is built: the kernel
	// took "yes" only to refuse it when the cell ran, and took 3 for a switch.
	{"sysctl word for a switch", name + "sysctl:\n  server:\n    net.ipv4.tcp_timestamps: yes\n", Options{}, "s.yaml:4:5",
		`sysctl.server.net.ipv4.tcp_timestamps: value "yes": want 0, 1 or 2; 0 off`},
	{"sysctl switch out of range", name + "matrix:\n  server.net.ipv4.tcp_rfc1337: [0, 3]\n", Options{}, "s.yaml:3:36",
		`matrix.server.net.ipv4.tcp_rfc1337[1]: value "3": want 0 or 1`},
	{"sysctl bad include value", name + "include:\n  - {server.net.ipv4.tcp_tw_recycle: on}\n", Options{}, "s.yaml:3:38",
		`include[0].server.net.ipv4.tcp_tw_recycle: value "on": want 0 or 1`},
	{"sysctl bad --set value", name, Options{Set: []string{"clients.net.ipv4.ip_local_port_range=40063 40000"}}, "s.yaml:0:0",
		`--set clients.net.ipv4.ip_local_port_range: value "40063 40000": want two ports "LOW HIGH"`},
	{"sysctl negative timeout", name + "sysctl:\n  lvs:\n    net.netfilter.nf_conntrack_tcp_timeout_close: -1\n", Options{}, "s.yaml:4:5",
		`value "-1": want a whole number from 0 to 2147483`},
	{"sysctl unknown role", name + "sysctl:\n  router:\n    net.ipv4.tcp_rfc1337: 1\n", Options{}, "s.yaml:3:3", "sysctl.router: unknown role; want one of clients, lvs, server"},
	{"matrix unknown key", name + "matrix:\n  lvs.bogus: [1, 2]\n", Options{}, "s.yaml:3:3",
		"matrix.lvs.bogus: unknown key; want a sysctl of a role (clients.net.…, lvs.net.…, server.net.…) or a field such as lvs.snat_ports"},
	{"matrix section key", name + "matrix:\n  lvs: [1]\n", Options{}, "s.yaml:3:3", "matrix.lvs: lvs is a section, not a single value"},
	{"matrix name", name + "matrix:\n  name: [a, b]\n", Options{}, "s.yaml:3:3", "name cannot vary"},
	{"matrix empty list", name + "matrix:\n  lvs.snat_ports: []\n", Options{}, "s.yaml:3:3", "matrix.lvs.snat_ports: no values; want a non-empty list"},
	{"matrix axis twice", name + "matrix:\n  lvs.snat_ports: [1]\n  lvs.snat_ports: [2]\n", Options{}, "s.yaml:4:3", "matrix.lvs.snat_ports: given twice"},
	{"matrix nested value", name + "matrix:\n  lvs.snat_ports: [[1]]\n", Options{}, "s.yaml:3:20", "values must be scalars"},
	{"matrix not a mapping", name + "matrix: [1]\n", Options{}, "s.yaml:2:9", "want a mapping of keys to lists of values"},
	{"matrix bad value", name + "matrix:\n  lvs.snat_ports: [1, lots]\n", Options{}, "s.yaml:3:23", `matrix.lvs.snat_ports[1]: "lots" is not valid here: want an integer`},
	{"matrix value out of range", name + "matrix:\n  clients.count: [1, 0]\n", Options{}, "s.yaml:3:22", "matrix.clients.count[1]: 0 is out of range; want 1..64"}, // at the value, not its key
	{"too many cells", name + "matrix:\n" +
		"  server.net.ipv4.a: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n" +
		"  server.net.ipv4.b: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n" +
		"  server.net.ipv4.c: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n", Options{}, "s.yaml:0:0",
		"matrix: 1000 cells after exclude; a scenario runs at most 256"},
	{"too many combinations", name + "matrix:\n" +
		"  server.net.ipv4.a: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31]\n" +
		"  server.net.ipv4.b: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31]\n" +
		"  server.net.ipv4.c: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]\n", Options{}, "s.yaml:5:3",
		"matrix: more than 16384 combinations"},
	{"exclude that excludes nothing", name + "matrix:\n  lvs.random: [true, false]\nexclude:\n  - {lvs.random: yes}\n", Options{}, "s.yaml:5:5",
		"exclude[0]: lvs.random=yes matches no cell of the matrix, so it excludes nothing; write the values as the matrix does (lvs.random: true, false)"},
	{"too many cells by include", name + "matrix:\n" +
		"  server.net.ipv4.a: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]\n" +
		"  server.net.ipv4.b: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]\n" +
		"include:\n  - {server.net.ipv4.a: 99}\n", Options{}, "s.yaml:6:5", "more than 256 cells"},
	{"run too long", name + "load:\n  duration: 10m\nmatrix:\n  server.net.ipv4.x: [1, 2, 3, 4, 5, 6, 7]\n", Options{}, "s.yaml:0:0",
		"load.duration: 7 cells × their durations add up to 1h10m0s; a run is limited to 1h0m0s"},
	{"exclude names no axis", name + "matrix:\n  lvs.snat_ports: [1, 2]\nexclude:\n  - {lvs.random: true}\n", Options{}, "s.yaml:5:18",
		"exclude[0].lvs.random: not a matrix key; exclude entries name matrix keys"},
	{"include unknown key", name + "include:\n  - {lvs.bogus: 1}\n", Options{}, "s.yaml:3:17", "include[0].lvs.bogus: unknown key"},
	{"expect bad assert syntax", name + "expect:\n  - name: e\n    assert: server.paws > > 0\n", Options{}, "s.yaml:4:27",
		`expect[0].assert[0]: expected operand after ">", found ">"`},
	{"expect bad assert in list", name + "expect:\n  - name: e\n    assert:\n      - server.paws > 0\n      - load.failed == == 0\n", Options{}, "s.yaml:6:24",
		`expect[0].assert[1]: expected operand after "==", found "=="`},
	{"expect bad when syntax", name + "expect:\n  - when: (lvs.mode == \"snat\"\n    assert: server.paws > 0\n", Options{}, "s.yaml:3:30", // just past the end
		`expect[0].when: expected ")" to close "(" at col 1, found end of expression`},
	{"expect no asserts", name + "expect:\n  - name: e\n    assert: []\n", Options{}, "s.yaml:0:0",
		"expect[0].assert: no assertions; want e.g. `server.TcpExt.PAWSTimewait > 0`"},
	{"when unknown variable", name + "expect:\n  - when: lvs.snat_port == 1\n    assert: server.paws > 0\n", Options{}, "s.yaml:3:11",
		`expect[0].when: unknown name "lvs.snat_port"; a selector may use scenario fields (lvs.snat_ports) and sysctls`},
	{"when unknown variable behind ||", name + "expect:\n  - when: lvs.mode == \"snat\" || server.net.ipv4.tcp_rfc1377 == 1\n    assert: server.paws > 0\n", Options{}, "s.yaml:3:11",
		`unknown name "server.net.ipv4.tcp_rfc1377"`},
	{"when type error", name + "expect:\n  - when: lvs.mode > 1\n    assert: server.paws > 0\n", Options{}, "s.yaml:3:11", "expect[0].when: "},
	{"cell twice", name + "matrix:\n  lvs.snat_ports: [1, 1]\n", Options{}, "s.yaml:0:0",
		"matrix: cell snat_ports=1 is listed twice"},
	{"too many assertions", name + "expect:\n  - name: e\n    assert: [" + strings.Repeat("1,", 1000) + "1]\n", Options{}, "s.yaml:0:0",
		"expect: 1001 assertions; a scenario may have at most 1000"},
	// A selector that no cell meets would leave its assertions unchecked
	// and the run green.
	{"when selects no cell", name + "expect:\n  - when: lvs.mode == \"SNAT\"\n    assert: server.paws > 0\n", Options{}, "s.yaml:3:11",
		`expect[0].when: "lvs.mode == \"SNAT\"" selects no cell of this scenario, so its assertions would never be checked; the cells are default`},
	{"when not a string", name + "expect:\n  - {when: [1], assert: a}\n", Options{}, "s.yaml:3:12", "expect[0].when: want a string"},
	// A misspelt figure is found when the scenario is read, not after the
	// load: load., syn. and skew. figures have fixed shapes.
	{"assert misspelt figure", name + "expect:\n  - assert:\n      - load.faild == 0\n", Options{}, "s.yaml:4:9",
		"expect[0].assert[0]: load.faild: not a figure a cell measures; did you mean load.failed?"},
	{"assert figure of no client", name + "clients: {count: 2}\nexpect:\n  - assert: [load.clients.c3.ok > 0]\n", Options{}, "s.yaml:4:",
		"expect[0].assert[0]: load.clients.c3.ok: not a figure a cell measures; did you mean load.clients.c1.ok?"},
	{"assert syn typo", name + "expect:\n  - assert: [syn.unanswerd == 0]\n", Options{}, "s.yaml:3:",
		"syn.unanswerd: not a figure a cell measures; did you mean syn.unanswered?"},
	{"empty file", "", Options{}, "s.yaml:0:0", "empty scenario; want at least name, clients and load"},
	{"only whitespace", " \n\t\n", Options{}, "s.yaml:0:0", "empty scenario"},
	{"only a comment", "# nothing\n", Options{}, "s.yaml:0:0", "no YAML content (only comments); want at least name, clients and load"},
	{"not UTF-8", name + "description: caf\xe9\n", Options{}, "s.yaml:2:17", "not valid UTF-8; scenarios are UTF-8 text"},
	{"YAML syntax", name + "load: [\n", Options{}, "s.yaml:2:0", "YAML syntax: did not find expected node content at the end of the file"},
	// The library numbers its parser errors' lines from 0, its scanner
	// errors' from 1: both come out 1-based.
	{"YAML bad indentation", name + "load:\n  connections: 1\n duration: 8s\n", Options{}, "s.yaml:4:0", "YAML syntax: did not find expected key"},
	{"YAML unclosed flow sequence", name + "load: {connections: [1, 2\n}\nclients: {count: 1}\n", Options{}, "s.yaml:2:0", "YAML syntax: did not find expected ',' or ']'"},
	{"YAML tab", name + "load:\n\tconnections: 1\n", Options{}, "s.yaml:3:0", "YAML syntax: found character that cannot start any token"},
	{"two documents", name + "---\nname: y\n", Options{}, "s.yaml:2:1", "more than one YAML document; a scenario is one document"},
	{"broken second document", name + "---\n[\n", Options{}, "s.yaml:3:0", "YAML syntax: did not find expected node content at the end of the file"},
	{"anchor", "name: &a x\ndescription: *a\n", Options{}, "s.yaml:1:7", "YAML anchors and aliases are not supported"},
	{"anchor on mapping", name + "load: &l\n  connections: 1\n", Options{}, "s.yaml:2:7", "YAML anchors and aliases are not supported"},
	{"top level list", "- name: x\n", Options{}, "s.yaml:1:1", "the top level must be a mapping (name:, clients:, load:, …)"},
	{"top level scalar", "nat-paws\n", Options{}, "s.yaml:1:1", "the top level must be a mapping"},
	{"deep nesting", name + "description: " + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "\n", Options{}, "s.yaml:2:", "nesting deeper than 32 levels"},
	{"too large", name + "description: " + strings.Repeat("x", MaxFileSize) + "\n", Options{}, "s.yaml:0:0", "the limit is 262144"},

	{"--set without =", name, Options{Set: []string{"load.connections"}}, "--set:0:0",
		`"load.connections": want path=value, e.g. load.connections=50 or server.net.ipv4.tcp_rfc1337=1`},
	{"--set empty key", name, Options{Set: []string{"=1"}}, "--set:0:0", "want path=value"},
	{"--set unknown key", name, Options{Set: []string{"load.bogus=1"}}, "--set:0:0", "load.bogus: unknown key; want a sysctl of a role"},
	{"--set sysctl path trick", name, Options{Set: []string{"server.net.ipv4/../x=1"}}, "--set:0:0", "is not valid: want dotted segments"},
	{"--set section", name, Options{Set: []string{"load=1"}}, "--set:0:0", "load is a section, not a single value"},
	{"--set into a scalar", name + "clients: 1\n", Options{Set: []string{"clients.count=1"}}, "s.yaml:2:10", "clients: want a mapping"},
	{"when written as a YAML tag", name + "expect:\n  - when: !lvs.random\n    assert: server.paws > 0\n", Options{}, "s.yaml:3:11",
		`YAML reads "!lvs.random" as a tag, not as text; quote it: '!lvs.random'`},
	{"assert written as a YAML tag", name + "expect:\n  - assert:\n    - !load.failed\n", Options{}, "s.yaml:4:7", `YAML reads "!load.failed" as a tag`},
	{"kernel selector no cell can meet", name + "expect:\n  - when: kernel.major >= 5 && lvs.mode == \"SNAT\"\n    assert: server.paws > 0\n", Options{}, "s.yaml:3:11",
		`selects no cell of this scenario`},
	{"kernel fact compared with a value it never takes", name + "expect:\n  - when: kernel.ts_offsets == \"per-tuple\"\n    assert: server.paws > 0\n", Options{}, "s.yaml:3:11",
		`kernel.ts_offsets is never "per-tuple"; it is one of "none", "per-pair", "per-4-tuple", "unknown"`},
	{"text kernel fact used as a number", name + "expect:\n  - when: kernel.ts_offsets > 0\n    assert: server.paws > 0\n", Options{}, "s.yaml:3:11",
		`kernel.ts_offsets is text, not a number or a condition; compare it with == or in: one of "none", "per-pair", "per-4-tuple", "unknown"`},
	{"kernel release used as a number", name + "expect:\n  - assert:\n      - load.ok > 0\n      - kernel.release >= 4.12\n", Options{}, "s.yaml:5:9",
		"kernel.release is text such as \"4.10.17\", not a number; compare versions with kernel.major and kernel.minor"},
	{"text kernel fact as a condition", name + "expect:\n  - assert: \"!kernel.tw_counter\"\n", Options{}, "s.yaml:3:14",
		`kernel.tw_counter is text, not a number or a condition; compare it with == or in: one of "created", "expired", "unknown"`},
	{"client figure missing in a smaller cell", name + "matrix:\n  clients.count: [3, 2]\nexpect:\n  - assert: [load.clients.c3.ok > 0]\n", Options{}, "s.yaml:5:",
		"expect[0].assert[0]: load.clients.c3.ok: cell count=2 has 2 clients (c1 … c2) and this expectation applies to it; limit the expectation with when: clients.count >= 3"},
	{"client node counter missing in a smaller cell", name + "matrix:\n  clients.count: [2, 3]\nexpect:\n  - assert: [c3.TcpExt.PAWSActive >= 0]\n", Options{}, "s.yaml:5:",
		"c3.TcpExt.PAWSActive: cell count=2 has 2 clients"},
	{"expression error in an escaped string", name + "expect:\n  - assert: \"load.ok \\u003e= 1 +\"\n", Options{}, "s.yaml:3:14",
		`expect[0].assert[0]: col 15 of the expression: expected operand after "+"`},
	{"expression error in a block scalar", name + "expect:\n  - assert: |\n      load.ok >= 1 +\n", Options{}, "s.yaml:3:13",
		`col 16 of the expression: expected operand after "+"`},
	{"expression error in a folded plain scalar", name + "expect:\n  - assert: load.ok >=\n      1 +\n", Options{}, "s.yaml:3:13",
		`col 15 of the expression: expected operand after "+"`},
	{"expression error in a quoted string without escapes", name + "expect:\n  - assert: \"load.ok >= 1 +\"\n", Options{}, "s.yaml:3:28",
		`expect[0].assert[0]: expected operand after "+"`},
	{"matrix empty value", name + "matrix:\n  load.connections: [10, ~]\n", Options{}, "s.yaml:3:26", "matrix.load.connections[1]: an empty value (~, null) is no value"},
	{"include empty value", name + "include:\n  - {load.connections: null}\n", Options{}, "s.yaml:3:24", "include[0].load.connections: want a value; an empty one (~, null) would stand for the default"},
	{"--set empty value", name, Options{Set: []string{"load.connections="}}, "--set:0:0", `"load.connections=": the value is empty; give one`},
	{"--set null value", name, Options{Set: []string{"load.connections=~"}}, "--set:0:0", `the value is empty`},
	{"leading zero is decimal", name + "load:\n  bind_port: 01023\n", Options{}, "s.yaml:3:14", "load.bind_port: 1023 is out of range"},
	{"assert on a node the lab lacks", name + "expect:\n  - assert: sever.paws > 0\n", Options{}, "s.yaml:3:13",
		`sever.paws: no node "sever" in this lab (nodes: server, lvs, clients, c1 … c2); did you mean server.paws?`},
	{"assert on a client the lab lacks", name + "expect:\n  - assert: c3.Tcp.OutRsts == 0\n", Options{}, "s.yaml:3:13", "c3.Tcp.OutRsts: this scenario has 2 clients (c1 … c2)"},
	{"assert on a kernel fact that is none", name + "expect:\n  - assert: kernel.relase == \"x\"\n", Options{}, "s.yaml:3:13",
		"kernel.relase: not a kernel fact twlab detects; did you mean kernel.release?"},
	{"skew figure without fixed skew", name + "clients: {ts_skew: kernel}\nexpect:\n  - assert: skew.c2.offset_ms == -60000\n", Options{}, "s.yaml:4:13",
		"skew.c2.offset_ms: skew figures exist only in cells with clients.ts_skew: fixed"},
	{"expression error in a quoted scalar", name + "expect:\n  - assert:\n    - \"load.failed === 0\"\n", Options{}, "s.yaml:4:22", `unexpected "="; use "==" to compare`},
	{"include bad value", name + "include: [{lvs.snat_ports: abc}]\n", Options{}, "s.yaml:2:28", `include[0].lvs.snat_ports: "abc" is not valid here: want an integer`},
	{"include misspells the key a selector uses", name + "matrix:\n  server.net.ipv4.tcp_rfc1337: [0, 1]\ninclude:\n  - {server.net.ipv4.tcp_rfc133: 1}\nexpect:\n  - when: server.net.ipv4.tcp_rfc1337 == 1\n    assert: [load.failed == 0]\n", Options{}, "s.yaml:7:11",
		"but sets server.net.ipv4.tcp_rfc133 at line 5 (a misspelling?)"},
	{"one experiment spelt twice", name + "matrix:\n  load.connections: [10, 0xa]\n", Options{}, "s.yaml:0:0",
		"cells connections=10 and connections=0xa are the same experiment"},
	{"duration nan", name + "load:\n  duration: nan\n", Options{}, "s.yaml:3:13", "duration nan out of range"},
	{"--only on a kernel fact", name, Options{Only: "kernel.major >= 5"}, "--only:0:0", "kernel.major: --only chooses cells before the kernel is detected"},
	{"needs_rate above the pace", name + "load:\n  rate: 50\n  needs_rate: 1000\n", Options{}, "s.yaml:4:15", "load.needs_rate: 1000 is above load.rate 50, which paces the load"},
	{"exclude that excludes nothing beside an unrelated --set", name + "matrix:\n  lvs.random: [true, false]\nexclude:\n  - {lvs.random: yes}\n", Options{Set: []string{"load.connections=5"}}, "s.yaml:5:5",
		"exclude[0]: lvs.random=yes matches no cell"},
	{"--set bad value", name, Options{Set: []string{"load.connections=lots"}}, "s.yaml:0:0", `load.connections: "lots" is not valid here: want an integer`},
	{"--set out of range", name, Options{Set: []string{"load.connections=0"}}, "s.yaml:0:0", "load.connections: 0 is out of range; want 1..1000000"},
	{"--only unknown name", name, Options{Only: "lvs.snatports == 1"}, "--only:0:0",
		`unknown name "lvs.snatports" (cell variables are scenario fields such as lvs.snat_ports`},
	{"--only unknown name behind &&", name, Options{Only: `lvs.mode == "route" && nosuch == 1`}, "--only:0:0", `unknown name "nosuch"`},
	{"--only syntax", name, Options{Only: "(("}, "--only:0:0", `expected operand after "("`},
	{"--only selects nothing", name, Options{Only: "lvs.snat_ports == 99"}, "s.yaml:0:0", "no cells to run"},
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range loadErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Load("s.yaml", []byte(tc.src), tc.opt)
			if err == nil {
				t.Fatalf("no error; cells %q", cellIDs(p))
			}
			if p != nil {
				t.Errorf("plan returned with error")
			}
			e := firstError(t, err)
			pos := fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Col)
			if strings.HasSuffix(tc.pos, ":") { // line only, column not pinned
				pos = fmt.Sprintf("%s:%d:", e.File, e.Line)
			}
			if pos != tc.pos {
				t.Errorf("position %s, want %s (error: %v)", pos, tc.pos, err)
			}
			if !strings.Contains(err.Error(), tc.frag) {
				t.Errorf("error %q\nlacks %q", err, tc.frag)
			}
			// The printed form leads with the same position.
			prefix := e.File
			if e.Line > 0 {
				prefix += fmt.Sprintf(":%d", e.Line)
				if e.Col > 0 {
					prefix += fmt.Sprintf(":%d", e.Col)
				}
			}
			if !strings.HasPrefix(e.Error(), prefix+": ") {
				t.Errorf("Error() = %q, want prefix %q", e.Error(), prefix+": ")
			}
		})
	}
}

// An expression's syntax error points at the offending character of the
// file, not just the line.
func TestExprErrorColumnPointsIntoFile(t *testing.T) {
	src := "name: x\nexpect:\n  - name: e\n    when: lvs.snat_ports == 1 && && 1\n    assert:\n      - server.paws > 0\n      - load.failed ==* 0\n"
	_, err := Load("s.yaml", []byte(src), Options{})
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("want two errors (when and assert), got %v", err)
	}
	lines := strings.Split(src, "\n")
	for i, want := range []string{"&", "*"} {
		e := es[i]
		if e.Line < 1 || e.Line > len(lines) {
			t.Fatalf("error %v: line out of the file", e)
		}
		line := []rune(lines[e.Line-1])
		if e.Col < 1 || e.Col > len(line) {
			t.Fatalf("error %v: column out of the line %q", e, string(line))
		}
		if got := string(line[e.Col-1]); got != want {
			t.Errorf("error %v points at %q in %q, want %q", e, got, string(line), want)
		}
	}
	if !strings.Contains(es[0].Field, "expect[0].when") || !strings.Contains(es[1].Field, "expect[0].assert[1]") {
		t.Errorf("fields %q, %q", es[0].Field, es[1].Field)
	}
}

// All problems of a file are reported together.
func TestLoadReportsEveryError(t *testing.T) {
	src := "name: x\nbogus: 1\nload:\n  conections: 1\n  order: up\n"
	_, err := Load("s.yaml", []byte(src), Options{})
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("want the two unknown fields, got %v", err)
	}
	if es[0].Line != 2 || es[1].Line != 4 {
		t.Errorf("lines %d, %d", es[0].Line, es[1].Line)
	}
	if strings.Count(err.Error(), "\n") != 1 {
		t.Errorf("Errors.Error() should be one line per error: %q", err)
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	_, err := ReadFile(dir)
	if e := firstError(t, err); e.File != dir || !strings.Contains(e.Msg, "is a directory, want a scenario YAML file") {
		t.Errorf("directory: %v", err)
	}

	missing := filepath.Join(dir, "missing.yaml")
	_, err = ReadFile(missing)
	if e := firstError(t, err); e.File != missing || !strings.Contains(e.Msg, "cannot read scenario: no such file") {
		t.Errorf("missing: %v", err)
	}

	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("name: x\n#"+strings.Repeat("x", MaxFileSize)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ReadFile(big)
	want := fmt.Sprintf("%s: file is %d bytes; scenarios are limited to %d", big, MaxFileSize+9, MaxFileSize)
	if err == nil || err.Error() != want {
		t.Errorf("big: %v\nwant %s", err, want)
	}

	ok := filepath.Join(dir, "ok.yaml")
	if err := os.WriteFile(ok, []byte(small), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := ReadFile(ok)
	if err != nil || string(b) != small {
		t.Errorf("ok: %q, %v", b, err)
	}
}

// The UTF-8 column counts characters, as an editor does.
func TestUTF8Column(t *testing.T) {
	_, err := Load("s.yaml", []byte("name: x\ndescription: ünï\xff\n"), Options{})
	e := firstError(t, err)
	if e.Line != 2 || e.Col != utf8.RuneCountInString("description: ünï")+1 {
		t.Errorf("got %d:%d: %v", e.Line, e.Col, err)
	}
}

var update = flag.Bool("update", false, "rewrite testdata/load_errors.golden")

// The whole message of every bad-input case, against the golden file: a
// fragment match alone would let a message get worse unnoticed.
// go test ./lab/scenario -run TestLoadErrorsGolden -update rewrites it.
func TestLoadErrorsGolden(t *testing.T) {
	var b strings.Builder
	for _, tc := range loadErrorCases {
		_, err := Load("s.yaml", []byte(tc.src), tc.opt)
		msg := "<no error>"
		if err != nil {
			msg = err.Error()
		}
		if len(msg) > 400 {
			msg = msg[:400] + "…"
		}
		fmt.Fprintf(&b, "%s\n\t%s\n", tc.name, strings.ReplaceAll(msg, "\n", "\n\t"))
	}
	const golden = "testdata/load_errors.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := 0; i < max(len(gl), len(wl)); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Errorf("line %d:\n got  %s\n want %s", i+1, g, w)
			}
		}
	}
}

// Lists that cost time per entry and per cell are bounded before they are
// used: 25 000 excludes in a 250 KB file ran validate out of memory, and
// 18 500 knobs took a minute and 1.4 GB.
func TestListsAreBounded(t *testing.T) {
	head := "name: big\nclients:\n  count: 1\nlvs:\n  mode: snat\nserver:\n  port: 8080\nload:\n  connections: 10\n  duration: 1s\n"
	var ex strings.Builder
	ex.WriteString(head + "matrix:\n  seed: [1, 2, 3]\nexclude:\n")
	for range maxExcludes + 10 {
		ex.WriteString("  - {seed: 2}\n")
	}
	_, err := Load("big.yaml", []byte(ex.String()), Options{})
	var e *Error
	if !errors.As(err, &e) || e.Field != fmt.Sprintf("exclude[%d]", maxExcludes) || e.Line != 14+maxExcludes {
		t.Errorf("%d excludes: %v (%+v)", maxExcludes+10, err, e)
	}
	var kn strings.Builder
	kn.WriteString(head + "sysctl:\n  server:\n")
	for i := range maxKnobsPerRole + 1 {
		fmt.Fprintf(&kn, "    net.ipv4.k%d: 1\n", i)
	}
	if _, err := Load("big.yaml", []byte(kn.String()), Options{}); err == nil || !strings.Contains(err.Error(), "sysctl.server") || !strings.Contains(err.Error(), "at most 256") {
		t.Errorf("%d knobs: %v", maxKnobsPerRole+1, err)
	}
}

// A range error of a value an include wrote names the include and its
// line; it named the file's value the include replaced (or no line at all
// where the file had none).
func TestIncludeRangeErrorsPointAtTheInclude(t *testing.T) {
	head := "name: inc\nload:\n  connections: 10\n  duration: 1s\nmatrix:\n  server.net.ipv4.tcp_rfc1337: [0, 1]\ninclude:\n"
	for inc, want := range map[string]string{
		"  - {server.net.ipv4.tcp_rfc1337: 1, load.connections: 0}\n": "inc.yaml:8:56: include[0].load.connections: 0 is out of range",
		"  - {server.net.ipv4.tcp_rfc1337: 0, load.bind_port: 80}\n":  "inc.yaml:8:54: include[0].load.bind_port: 80 is out of range",
	} {
		if _, err := Load("inc.yaml", []byte(head+inc), Options{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

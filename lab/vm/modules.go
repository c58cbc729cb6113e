package vm

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"github.com/twlab/twlab/lab/internal/decomp"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LabModules are what a lab needs from a modular kernel: veth and a bridge
// for the topology, nftables NAT and counters, conntrack, and tc eBPF for
// fixed skew. Missing ones are skipped: they may be built in.
var LabModules = []string{
	// libcrc32c (under nf_tables) needs a crc32c implementation at init,
	// a soft dependency that "depends=" does not name: load it first.
	// crc32c-intel fails on QEMU's default CPU; the generic one always works.
	"crc32c_generic",
	"veth", "bridge", "nf_tables", "nft_chain_nat", "nft_nat", "nft_masq", "nft_ct",
	"nf_nat", "nf_conntrack", "nf_defrag_ipv4", "nf_defrag_ipv6", "nft_objref", "nft_counter",
	"sch_ingress", "cls_bpf", "libcrc32c",
	// sock_diag for TCP: TIME_WAIT per namespace where sockstat is global.
	"inet_diag", "tcp_diag",
	// The same pieces under their older names: the IPv4 halves of
	// conntrack (before 4.19), nf_tables families (before 4.17) and NAT
	// (before 5.1) were modules of their own.
	"nf_conntrack_ipv4", "nf_tables_ipv4", "nf_tables_inet", "nf_nat_ipv4", "nft_chain_nat_ipv4", "nft_masq_ipv4",
}

// essentialModules are the lab modules every kernel twlab supports has
// under these names, built in or as modules: without them no lab comes up.
var essentialModules = []string{"veth", "bridge", "nf_tables", "nf_conntrack", "nf_nat"}

// moduleExts are the module file names ResolveModules takes, by the
// compression distributions use.
var moduleExts = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// Module is a kernel module ready to load.
type Module struct {
	Name string
	Data []byte // uncompressed ELF
	// Level: modules of one level depend only on lower levels, so a level
	// can be loaded in parallel (loading is slow under emulation).
	Level int
}

// softDeps are load-order needs that "depends=" does not name: libcrc32c
// takes a crc32c implementation at init.
var softDeps = map[string][]string{"libcrc32c": {"crc32c_generic"}}

func normName(n string) string { return strings.ReplaceAll(n, "-", "_") }

// ResolveModules finds wanted modules under dir (a /lib/modules/RELEASE tree)
// with everything they depend on, in load order (dependencies first), and
// which of essentialModules the tree has neither as a module nor built in
// (only known when it lists its built-in modules: nil otherwise).
// Dependencies come from each module's .modinfo "depends=", because
// distribution packages ship no modules.dep. Built-in modules (listed in
// modules.builtin) and modules not present are skipped.
func ResolveModules(dir string, wanted []string) ([]Module, []string, error) {
	index := map[string]string{}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		base := d.Name()
		for _, ext := range moduleExts {
			if n, ok := strings.CutSuffix(base, ext); ok {
				index[normName(n)] = p
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("modules in %s: %w", dir, err)
	}
	builtin := map[string]bool{}
	var missing []string
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			n := filepath.Base(strings.TrimSpace(sc.Text()))
			builtin[normName(strings.TrimSuffix(n, ".ko"))] = true
		}
		for _, m := range essentialModules {
			if _, ok := index[m]; !ok && !builtin[m] {
				missing = append(missing, m)
			}
		}
	}
	var out []Module
	state := map[string]int{} // 1 visiting, 2 done
	level := map[string]int{}
	var visit func(name string, required bool) error
	visit = func(name string, required bool) error {
		name = normName(name)
		switch {
		case state[name] == 2 || builtin[name]:
			return nil
		case state[name] == 1:
			return fmt.Errorf("module dependency cycle at %s", name)
		}
		p, ok := index[name]
		if !ok {
			if required {
				return fmt.Errorf("module %s (a dependency) not found in %s", name, dir)
			}
			return nil
		}
		state[name] = 1
		data, err := readModule(p)
		if err != nil {
			return err
		}
		deps, err := moduleDepends(data)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, d := range deps {
			if err := visit(d, true); err != nil {
				return err
			}
		}
		for _, d := range softDeps[name] {
			if err := visit(d, false); err != nil {
				return err
			}
		}
		lv := 0
		for _, d := range append(deps, softDeps[name]...) {
			if l, ok := level[normName(d)]; ok {
				lv = max(lv, l+1)
			}
		}
		level[name] = lv
		state[name] = 2
		out = append(out, Module{Name: name, Data: stripSignature(data), Level: lv})
		return nil
	}
	for _, w := range wanted {
		if err := visit(w, false); err != nil {
			return nil, nil, err
		}
	}
	return out, missing, nil
}

func readModule(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := decomp.Reader(f, decomp.ByName(p), 256<<20)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return b, nil
}

// moduleDepends reads "depends=" from the module's .modinfo section.
func moduleDepends(data []byte) ([]string, error) {
	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	sec := ef.Section(".modinfo")
	if sec == nil {
		return nil, nil
	}
	info, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// sigMarker ends a module with an appended signature (scripts/sign-file).
const sigMarker = "~Module signature appended~\n"

// stripSignature removes a module's appended signature. A kernel that does
// not enforce signatures loads an unsigned module as well (and says it is
// tainted), but checks a signature that is there: hashing the module and
// an RSA verification per module, which under software emulation made up
// a large part of loading the lab's modules. A kernel that enforces
// signatures refuses the stripped module, and the guest names it.
func stripSignature(data []byte) []byte {
	body, ok := bytes.CutSuffix(data, []byte(sigMarker))
	// struct module_signature: algo, hash, id_type, signer_len, key_id_len,
	// 3 bytes of padding, sig_len (big endian): 12 bytes.
	if !ok || len(body) < 12 {
		return data
	}
	info := body[len(body)-12:]
	n := int(info[3]) + int(info[4]) + int(binary.BigEndian.Uint32(info[8:]))
	if n > len(body)-12 {
		return data
	}
	return body[:len(body)-12-n]
}

# twlab — see README.md. Root is needed for `demo` and for the integration
# tests (they build real network namespaces); without root they skip.
GO      ?= go
BIN     := bin/twlab
PKGS    := ./...
# A static binary: `twlab vm` puts it into a guest as /init, where there is no
# dynamic loader. (A plain `go build` links libc dynamically when gcc is
# around; the README only names ways that give a static binary.) Without
# the symbol table and DWARF (-s -w; stack traces keep their names) the
# binary is 18.5 MB instead of 24.4: the guest's initramfs is that much
# smaller, and a VM boots 0.1-0.15 s sooner under emulation.
export CGO_ENABLED := 0
SHELL   := /bin/bash

# Debian packages that twlab vm, twlab bench and the tests use. Nothing here
# is needed to build twlab or to run a scenario on this machine's kernel.
DEPS    := qemu-system-x86 nftables wrk tshark iproute2 dpkg git make

.PHONY: all build deps test unit vet fmt-check fuzz bench demo cleanup clean generate matrix matrix-kernel matrix-summary

all: build

# twlab-guest, the VM's /init, goes next to twlab; both carry a stamp of
# the sources (go.mod, go.sum and every .go file), and twlab vm uses the
# guest only when the stamps match (see lab/vm/guestbin.go).
GUEST   = $(dir $(BIN))twlab-guest
STAMP   = $(shell cat go.mod go.sum $$(find cmd lab -name '*.go' | LC_ALL=C sort) | sha256sum | cut -c1-16)
LDFLAGS = -s -w -X github.com/twlab/twlab/lab/vm.BuildStamp=$(STAMP)

build:
	$(GO) build -trimpath -ldflags="$(LDFLAGS)" -o $(BIN) ./cmd/twlab
	$(GO) build -trimpath -ldflags="$(LDFLAGS)" -o $(GUEST) ./cmd/twlab-guest

deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEPS) >/dev/null
	@echo "deps: installed $(DEPS)"

# The test command CI runs: static checks, then every test (root ones build
# real labs and boot VMs when run as root). Packages run one at a time: the
# lab tests measure timing on a 2-core machine and must not compete. The
# report lists every skipped test and why; with CI set, a skip that
# .ci/allowed-skips does not list fails the run.
test: vet fmt-check
	set -o pipefail; $(GO) test -count=1 -p 1 -timeout 20m -json $(PKGS) | $(GO) run ./lab/internal/testreport -allowed .ci/allowed-skips

unit:
	$(GO) test -count=1 -short $(PKGS)

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# Short fuzzing of the parsers (CI-sized). A CI run is bounded by a count of
# executions, not by time: go1.26's fuzz coordinator can fail a time-bounded
# run with a bare "context deadline exceeded" when the deadline lands while a
# worker is mid-input, with no failing input behind it (go.dev/issue/75804,
# fixed in Go 1.27; it failed CI once on FuzzParse). The counts give about
# 8 s per target on the 2-core lab machine. FUZZTIME=5m fuzzes for a time
# instead, for a real hunt. Minimizing each new input for the default 60 s
# would leave no time to fuzz, hence -fuzzminimizetime 100x.
FUZZTIME ?=
fuzzfor = -fuzz '^$(1)$$' -fuzztime $(if $(FUZZTIME),$(FUZZTIME),$(2)x) -fuzzminimizetime 100x
fuzz:
	$(GO) test ./lab/expr -run '^$$' $(call fuzzfor,FuzzParse,400000)
	$(GO) test ./lab/scenario -run '^$$' $(call fuzzfor,FuzzLoad,200000)
	$(GO) test ./lab/result -run '^$$' $(call fuzzfor,FuzzReadRun,150000)
	$(GO) test ./lab/result -run '^$$' $(call fuzzfor,FuzzTimeseries,100000)
	$(GO) test ./lab/report -run '^$$' $(call fuzzfor,FuzzReport,16000)
	$(GO) test ./lab/report -run '^$$' $(call fuzzfor,FuzzChart,16000)

# Go benchmarks of the hot paths: the connection loop, the latency summary,
# counter parsing and reads, nft counter reads, lab build. The ones that
# build namespaces need root (they skip without). `twlab bench` compares
# twlab with wrk and an ip/nft script instead (see README, Performance).
BENCHTIME ?= 1s
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./lab/load ./lab/probe ./lab/nat ./lab/topo

# Rebuild the eBPF object and its Go bindings (committed, so a normal build
# needs no clang). Needs clang-14: apt-get install clang-14.
generate:
	@command -v clang-14 >/dev/null || { echo "make generate needs clang-14 (apt-get install clang-14)"; exit 1; }
	$(GO) generate ./lab/skew

demo: build
	./$(BIN) run nat-paws.yaml

cleanup: build
	./$(BIN) cleanup

clean:
	rm -rf bin

# The kernel regression matrix, as .github/workflows/kernel-matrix.yml runs it
# in CI (one job per kernel, then a summary job) and as `sudo make matrix`
# runs it here. KERNEL is host, debian:VERSION, built:RELEASE or a bzImage;
# each kernel's run folder (run.json, junit.xml, report) lands under
# MATRIX_OUT. Exit code 4 (every cell n/a on that kernel) is no failure of
# the matrix: the summary shows it.
MATRIX_SCENARIO ?= nat-paws.yaml
MATRIX_KERNELS  ?= host debian:5.10 debian:6.1 debian:6.12
MATRIX_OUT      ?= results/matrix
OLD_KERNEL      ?=

matrix-kernel: build
	@test -n "$(KERNEL)" || { echo "matrix-kernel needs KERNEL=host, debian:VERSION, built:RELEASE or a bzImage path"; exit 2; }
	@dir="$(MATRIX_OUT)/$$(echo '$(KERNEL)' | tr ':/' '__')"; rc=0; \
	if [ '$(KERNEL)' = host ]; then \
	  ./$(BIN) run $(MATRIX_SCENARIO) --out "$$dir" --junit "$$dir/junit.xml" -q || rc=$$?; \
	else \
	  ./$(BIN) vm --kernel '$(KERNEL)' run $(MATRIX_SCENARIO) --out "$$dir" --junit "$$dir/junit.xml" || rc=$$?; \
	fi; \
	echo "matrix: $(KERNEL) exit $$rc"; [ $$rc -eq 0 ] || { [ $$rc -eq 4 ] && [ '$(KERNEL)' != host ]; }

# The host's run, when there is one, is the baseline the kernels are
# compared with (sorted by name, built_4.9.337 came first).
matrix-summary: build
	@runs=$$(find $(MATRIX_OUT) -name run.json -printf '%h\n' | sort | awk '/\/host(\/|$$)/ {print; next} {rest = rest $$0 "\n"} END {printf "%s", rest}'); \
	test -n "$$runs" || { echo "matrix-summary: no run under $(MATRIX_OUT)"; exit 2; }; \
	./$(BIN) compare --md $$runs

matrix: build
	@for k in $(MATRIX_KERNELS) $(OLD_KERNEL); do $(MAKE) --no-print-directory matrix-kernel KERNEL=$$k || exit 1; done
	@$(MAKE) --no-print-directory matrix-summary

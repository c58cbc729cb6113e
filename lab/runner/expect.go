package runner

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/twlab/twlab/lab/expr"
	"github.com/twlab/twlab/lab/load"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/scenario"
)

// Figures lists every measured figure of a cell by the name expectations use:
//
//	load.attempts load.ok load.failed load.cut_short load.requests load.conn_per_s load.elapsed_s
//	load.failures.{timeout,refused,reset,addr,other}
//	load.connect_ms.{p50,p90,p99,max}
//	load.clients.C.{attempts,ok,failed}   load.{min,max}_client_ok  load.max_client_failed
//	load.handoffs.A_to_B.{attempts,retried,failed}   (B connecting right after A on a chain)
//	skew.C.{offset_ticks,offset_ms,applied,egress_rewritten,ingress_rewritten}   (ts_skew: fixed)
//	syn.{in,synack_out,synack_retrans,unanswered,rst_in,rst_out}
//	NODE.Group.Field   (every TcpExt/Tcp/Ip… counter delta; NODE = c1…, lvs, server, clients = sum of clients)
//	NODE.paws          (sum of the PAWS* counters this kernel has)
//	NODE.time_wait.{max,final}
func Figures(rc *result.Cell) map[string]float64 {
	f := map[string]float64{}
	if l := rc.Load; l != nil {
		f["load.attempts"] = float64(l.Attempts)
		f["load.ok"] = float64(l.OK)
		f["load.failed"] = float64(l.Failed)
		f["load.cut_short"] = float64(l.CutShort)
		f["load.requests"] = float64(l.Requests)
		f["load.conn_per_s"] = l.ConnPerS
		f["load.elapsed_s"] = l.Elapsed
		for _, c := range load.FailureClasses {
			f["load.failures."+c] = float64(l.Failures[c])
		}
		if l.OK > 0 {
			// With no successful connect there is no latency: run.json
			// holds 0s, and "load.connect_ms.p99 < 100" must not pass on
			// them. An assertion on it then says why it has no value.
			f["load.connect_ms.p50"] = l.ConnectMS.P50
			f["load.connect_ms.p90"] = l.ConnectMS.P90
			f["load.connect_ms.p99"] = l.ConnectMS.P99
			f["load.connect_ms.max"] = l.ConnectMS.Max
		}
		minOK, maxOK, maxFail := math.Inf(1), 0.0, 0.0
		for name, pc := range l.PerClient {
			failed := pc.Attempts - pc.OK
			f["load.clients."+name+".attempts"] = float64(pc.Attempts)
			f["load.clients."+name+".ok"] = float64(pc.OK)
			f["load.clients."+name+".failed"] = float64(failed)
			f["load.clients."+name+".cut_short"] = float64(pc.CutShort)
			minOK = min(minOK, float64(pc.OK))
			maxOK = max(maxOK, float64(pc.OK))
			maxFail = max(maxFail, float64(failed))
		}
		if !math.IsInf(minOK, 1) {
			f["load.min_client_ok"] = minOK
		}
		f["load.max_client_ok"] = maxOK
		for k, h := range l.Handoffs {
			f["load.handoffs."+k+".attempts"] = float64(h.Attempts)
			f["load.handoffs."+k+".retried"] = float64(h.Retried)
			f["load.handoffs."+k+".failed"] = float64(h.Failed)
		}
		f["load.max_client_failed"] = maxFail
	}
	if s := rc.SYN; s != nil {
		f["syn.in"] = float64(s.In)
		f["syn.synack_out"] = float64(s.SynAckOut)
		f["syn.unanswered"] = float64(s.Unanswered)
		f["syn.synack_retrans"] = float64(s.SynAckRetrans)
		f["syn.rst_in"] = float64(s.RSTIn)
		f["syn.rst_out"] = float64(s.RSTOut)
	}
	if sk := rc.Skew; sk != nil {
		for name, c := range sk.Clients {
			f["skew."+name+".offset_ticks"] = float64(c.OffsetTicks)
			f["skew."+name+".offset_ms"] = float64(c.OffsetMS)
			// applied: evidence the offset was in force, whatever the method:
			// packets the eBPF program rewrote, or sockets that got it.
			f["skew."+name+".applied"] = float64(c.EgressRewritten) + float64(c.Sockets)
			f["skew."+name+".egress_rewritten"] = float64(c.EgressRewritten)
			f["skew."+name+".ingress_rewritten"] = float64(c.IngressRewritten)
		}
	}
	for name, n := range rc.Nodes {
		for k, v := range n.Counters {
			f[name+"."+k] = float64(v)
		}
		f[name+".paws"] = float64(n.Summary["paws"])
		f[name+".time_wait.max"] = float64(n.TimeWait.Max)
		f[name+".time_wait.final"] = float64(n.TimeWait.Final)
	}
	return f
}

// Evaluate checks the cell's expectations against its figures; the cell's
// variables (knobs and fields) are visible too.
func Evaluate(c *scenario.Cell, rc *result.Cell, kernelVars map[string]string) []result.Expect {
	figs := Figures(rc)
	text := func(v string) expr.Value {
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return expr.Num(f)
		}
		return expr.Str(v)
	}
	env := func(name string) (expr.Value, bool) {
		if v, ok := figs[name]; ok {
			return expr.Num(v), true
		}
		if v, ok := c.Vars[name]; ok {
			return text(v), true
		}
		if v, ok := kernelVars[name]; ok {
			return text(v), true
		}
		return expr.Value{}, false
	}
	out := []result.Expect{}
	for _, e := range c.Expect {
		if e.NeedsKernel {
			ok, err := e.When.Bool(env)
			if err != nil {
				out = append(out, result.Expect{Name: e.Name, Expr: "when: " + e.When.String(), Error: err.Error()})
				continue
			}
			if !ok {
				continue
			}
		}
		for _, a := range e.Asserts {
			r := result.Expect{Name: e.Name, Expr: a.String()}
			cr, err := a.Check(env)
			if err != nil {
				r.Error = err.Error()
				var un *expr.UnknownNameError
				if errors.As(err, &un) {
					r.Error = fmt.Sprintf("%s is not measured in this cell%s", un.Name, hint(un.Name, figs))
				}
			} else {
				r.OK = cr.OK
				r.Value = jsonValue(cr.Left)
				if cr.HasRight {
					r.Bound = cr.Op + " " + cr.Right.String()
				}
			}
			out = append(out, r)
		}
	}
	return out
}

func jsonValue(v expr.Value) any {
	if v.IsNum {
		return v.Num
	}
	return v.Str
}

// hint suggests figures that share the unknown name's last segment, which
// catches both typos of the node and counters this kernel names differently.
func hint(name string, figs map[string]float64) string {
	if strings.HasPrefix(name, "load.connect_ms.") {
		if ok, has := figs["load.ok"]; has && ok == 0 {
			return " (no connection completed in this cell: there is no latency)"
		}
	}
	// The scenario reader has refused every load., syn. and skew. name
	// that is no figure: one that arrives here is a figure this cell did
	// not make, and a suggestion of another would mislead.
	switch first, _, _ := strings.Cut(name, "."); first {
	case "skew":
		return " (skew figures exist only in cells with clients.ts_skew: fixed)"
	case "load":
		return " (this cell has no such figure: a client or handoff that never connected, or no load)"
	case "syn":
		return " (this cell counted no SYNs)"
	}
	last := name[strings.LastIndex(name, ".")+1:]
	var cands []string
	for k := range figs {
		// the same last segment (a counter under another node or a name
		// this kernel uses), or a typo: at most two edits away
		if strings.HasSuffix(k, "."+last) || scenario.EditDistance(k, name, 2) <= 2 {
			cands = append(cands, k)
		}
	}
	// Nearest first: sorted by name alone, "sever.paws" was offered c1.paws,
	// c2.paws, clients.paws and lvs.paws, and not server.paws.
	dist := func(k string) int { return scenario.EditDistance(k, name, 2) }
	slices.SortFunc(cands, func(a, b string) int {
		if d := dist(a) - dist(b); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	if len(cands) > 4 {
		cands = cands[:4]
	}
	if len(cands) > 0 {
		return " (did you mean " + strings.Join(cands, ", ") + "?)"
	}
	return " (this kernel may not have that counter; see run.json nodes.*.counters for what it has)"
}

// Explain turns a cell's figures into sentences a newcomer can follow.
func Explain(c *scenario.Cell, rc *result.Cell) []string {
	if rc.Load == nil || rc.Nodes == nil {
		return nil
	}
	var out []string
	f := Figures(rc)
	passive := f["server.TcpExt.PAWSPassive"]
	// PAWS rejects at a TIME_WAIT socket (PAWSTimewait on 6.16+, PAWSEstab
	// before): the SYN is answered with a bare ACK. PAWSPassive is the
	// tw_recycle per-peer check: the SYN is dropped without any answer.
	twRejects := f["server.paws"] - passive
	ts := c.Vars["clients.net.ipv4.tcp_timestamps"]
	rfc := c.Vars["server.net.ipv4.tcp_rfc1337"]
	locked := lockedOut(rc)
	if passive > 0 {
		who := "the client(s) whose clock is behind"
		if len(locked) > 0 {
			who = strings.Join(locked, ", ")
		}
		out = append(out, fmt.Sprintf("%.0f SYNs were dropped silently (TcpExt.PAWSPassive): with tcp_tw_recycle=1 the server remembers the last timestamp of every peer address for 60 s, and behind the NAT every client is the same address; a SYN with an older timestamp gets no SYN-ACK, no ACK, nothing (%.0f SYNs in, %.0f SYN-ACKs out, %.0f RSTs from clients). %s retransmitted (%.0f SYN retransmits) and timed out: %d connect timeouts. This is the classic \"client sends SYN, server does not answer\" behind NAT, and why tcp_tw_recycle was removed in Linux 4.12.",
			passive, f["syn.in"], f["syn.synack_out"], f["syn.rst_in"], who, f["clients.TcpExt.TCPSynRetrans"], rc.Load.Failures[load.Timeout]))
	}
	// A TIME_WAIT socket's ACKs are rate-limited: a SYN it rejects may
	// get nothing at all (TCPACKSkippedTimeWait; 6 of 17 in a
	// nat-paws-fixed-skew cell, checked against the capture).
	skipped := ""
	if n := f["server.TcpExt.TCPACKSkippedTimeWait"]; n > 0 {
		skipped = fmt.Sprintf(", or with nothing at all where the kernel rate-limited those ACKs (%.0f, TcpExt.TCPACKSkippedTimeWait)", n)
	}
	if twRejects > 0 {
		out = append(out, fmt.Sprintf("%.0f SYNs reused a 4-tuple the server still held in TIME_WAIT, carried an older timestamp and were rejected by PAWS: the server answered with a bare ACK instead of a SYN-ACK%s (%.0f SYNs in, %.0f SYN-ACKs out).",
			twRejects, skipped, f["syn.in"], f["syn.synack_out"]))
		switch {
		case rfc == "1" && rc.Load.Failed > 0:
			who := "some connections fail"
			if len(locked) > 0 {
				who = "the client(s) whose clock is behind stay locked out: " + strings.Join(locked, ", ")
			}
			out = append(out, fmt.Sprintf("tcp_rfc1337=1: the client's RST no longer kills the TIME_WAIT socket, and each rejected SYN restarts its timer; %s (%d connect timeouts).", who, rc.Load.Failures[load.Timeout]))
		case rc.Load.Failed == 0:
			out = append(out, fmt.Sprintf("Every client recovered: it answered the bare ACK with a RST, which killed the server's TIME_WAIT socket (tcp_rfc1337=0), and its SYN, sent again, got through. That costs those connects time: the retry comes within tens of milliseconds on new kernels, after the 1 s retransmit timer on old ones (all connects: p99 %.1f ms, max %.1f ms, as the generator saw them - on a busy machine the tail also holds its scheduling delays; a --pcap capture has the wire's times).", rc.Load.ConnectMS.P99, rc.Load.ConnectMS.Max))
		}
	}
	// Timestamps are used only when both ends offer them: either side's
	// 0 turns them off (timestamps-off sets the server's).
	tsOff := ts == "0" || c.Vars["server.net.ipv4.tcp_timestamps"] == "0"
	if passive == 0 && twRejects == 0 && tsOff && (f["clients.Tcp.OutRsts"] > 0 || f["syn.unanswered"] > 0) {
		out = append(out, fmt.Sprintf("No PAWS counter moved (timestamps are off), yet %.0f SYNs went unanswered and the clients sent %.0f RSTs: without timestamps the server's TIME_WAIT socket compares sequence numbers instead, and a SYN whose ISN is not above the old connection's is answered with an ACK just like a PAWS reject%s.",
			f["syn.unanswered"], f["clients.Tcp.OutRsts"], skipped))
		if rfc == "1" && rc.Load.Failed > 0 {
			out = append(out, fmt.Sprintf("With tcp_rfc1337=1 the RST does not end the TIME_WAIT, so those clients time out (%d timeouts).", rc.Load.Failures[load.Timeout]))
		}
	}
	// A full TIME_WAIT table: closes that skip TIME_WAIT leave no socket
	// for a reused 4-tuple to meet, so PAWS rejects vanish with the
	// protection (tw-buckets-overflow; nat-paws-load's server reaches the
	// default limit in a few seconds).
	for _, node := range []string{"server", "clients"} {
		if n := f[node+".TcpExt.TCPTimeWaitOverflow"]; n > 0 {
			limit := ""
			if v, ok := c.Vars[node+".net.ipv4.tcp_max_tw_buckets"]; ok {
				limit = " of " + v
			}
			out = append(out, fmt.Sprintf("The %s's TIME_WAIT table was full (net.ipv4.tcp_max_tw_buckets%s): %s closed without entering TIME_WAIT (TcpExt.TCPTimeWaitOverflow). Their 4-tuples were free at once, so a SYN that reused one met no TIME_WAIT socket and no PAWS check; what TIME_WAIT protects against (a late segment of the old connection taken into a new one) went unprotected for them.",
				node, limit, count(n, "connection", "connections")))
		}
	}
	// The other way a SYN goes unanswered: the listener's queues. Counted
	// by the server's kernel whatever the timestamps (syn-backlog).
	// Before 4.12 tw_recycle's drops (PAWSPassive) are listen drops too:
	// only the rest tell of full queues (a 4.10 tw_recycle cell was said to
	// have had its accept queue full).
	if over, drops := f["server.TcpExt.ListenOverflows"], max(0, f["server.TcpExt.ListenDrops"]-passive); over > 0 || drops > 0 {
		again := ""
		if r := f["syn.synack_retrans"]; r > 0 {
			// Each is a handshake whose final ACK the full queue dropped:
			// the client believes it is connected, the server is still
			// waiting for that ACK.
			again = fmt.Sprintf(", %.0f of them sent again for handshakes whose final ACK was dropped, so up to %.0f more SYNs went unanswered than syn.unanswered's %.0f", r, r, f["syn.unanswered"])
		}
		// ListenDrops counts every drop of the listener; ListenOverflows
		// (accept queue full) and TCPReqQFullDrop (SYN queue full, no
		// cookies) are each a part of it. The rest, with syncookies off, is
		// the SYN queue's last quarter kept for proven peers: counted in
		// ListenDrops alone, it was blamed on the accept queue (4.10's
		// syn-backlog: 37 drops, 22 overflows, 0 SYN queue drops).
		qd := f["server.TcpExt.TCPReqQFullDrop"]
		var why []string
		if over > 0 {
			why = append(why, fmt.Sprintf("the accept queue was full (ListenOverflows %.0f)", over))
		}
		if qd > 0 {
			why = append(why, fmt.Sprintf("the SYN queue was full and syncookies are off (TCPReqQFullDrop %.0f)", qd))
		}
		if rest := drops - over - qd; rest > 0 {
			if c.Vars["server.net.ipv4.tcp_syncookies"] == "0" {
				why = append(why, fmt.Sprintf("%.0f more were dropped with the SYN queue three quarters full: with syncookies off the kernel keeps the last quarter of tcp_max_syn_backlog for peers it has proven (before 4.12 only tw_recycle's per-peer timestamp proved one, since then a cached RTT) and drops the SYNs of any other peer; they count in ListenDrops alone", rest))
			} else {
				why = append(why, fmt.Sprintf("%.0f more for a reason no other counter names (ListenDrops alone)", rest))
			}
		}
		out = append(out, fmt.Sprintf("The server's listener dropped %.0f SYNs and handshake ACKs (TcpExt.ListenDrops %.0f) - no SYN-ACK, no ACK, nothing, as with tw_recycle, but not for PAWS (%.0f SYNs in, %.0f SYN-ACKs out%s): %s.",
			drops, f["server.TcpExt.ListenDrops"], f["syn.in"], f["syn.synack_out"], again, strings.Join(why, "; ")))
		if sent := f["server.TcpExt.SyncookiesSent"]; sent > 0 {
			out = append(out, fmt.Sprintf("When the SYN queue was full too, the server answered %.0f SYNs with a syncookie instead of dropping them (TcpExt.SyncookiesSent; %.0f valid cookies came back: the cookie is checked in every segment a client sends until its connection is accepted - the handshake's ACK, its request, their retransmits - so one handshake can count more than once).", sent, f["server.TcpExt.SyncookiesRecv"]))
		}
		switch n := rc.Load.Failures[load.Response]; {
		case rc.Load.OK == 0 && n > 0:
			out = append(out, fmt.Sprintf("No connection was accepted: %d clients completed the handshake and then waited in vain for a response (the application never called accept), %d never got a SYN-ACK at all and timed out.", n, rc.Load.Failures[load.Timeout]))
		case rc.Load.Failures[load.Timeout] > 0:
			out = append(out, fmt.Sprintf("%s out: their SYNs were dropped at every retransmit.", count(float64(rc.Load.Failures[load.Timeout]), "connect timed", "connects timed")))
		case rc.Load.Failed == 0:
			out = append(out, "Every client got in all the same: a dropped SYN is sent again after 1 s, by which time the application had accepted and made room; that second is the connect latency's tail.")
		}
	}
	// A load that met its time bound before its count made fewer
	// connections (and requests) than the scenario asks for: a failed
	// `load.requests == 2000` must not read like a keep-alive bug. Said
	// only where it explains a failed assertion of a load nothing else
	// held back: where connects time out (nat-paws' lockout) or the count
	// is only an upper bound, the bound is no cause.
	failedAssert := slices.ContainsFunc(rc.Expect, func(e result.Expect) bool { return !e.OK })
	if l, sc := rc.Load, c.S.Load; failedAssert && l.Failed == 0 && sc.Duration > 0 && l.Attempts+l.CutShort < sc.Connections && l.Elapsed >= 0.95*sc.Duration.D().Seconds() {
		why := fmt.Sprintf("this machine made %s new connections/s", strconv.FormatFloat(l.ConnPerS, 'f', 1, 64))
		if dur := sc.Duration.D().Seconds() * 1000; l.CutShort > 0 && l.CutShortOldestMS >= dur/4 {
			// A chain waiting on a connect that never completes makes no
			// connections at all: the machine's rate is no cause then.
			why = fmt.Sprintf("connections that hung held their chains (%d of them were still in progress at the end, the oldest for %s ms of the %s: a SYN left unanswered or an exchange that never ended), so the rate of %s connections/s is not this machine's",
				l.CutShort, strconv.FormatFloat(l.CutShortOldestMS, 'f', 0, 64), sc.Duration.D(), strconv.FormatFloat(l.ConnPerS, 'f', 1, 64))
		}
		out = append(out, fmt.Sprintf("The cell's time bound (load.duration %s) ended the load after %d of its %d connections: %s. Figures that count connections or requests fall short of the scenario's numbers for that reason; a connection the bound cut off is counted in load.cut_short (%d), not as a failure.",
			sc.Duration.D(), l.Attempts, sc.Connections, why, l.CutShort))
	}
	if rc.Load.Failures[load.AddrFail] > 0 {
		out = append(out, fmt.Sprintf("%d connects found no free local port (EADDRNOTAVAIL/EADDRINUSE): TIME_WAIT on the clients holds the ports.", rc.Load.Failures[load.AddrFail]))
	}
	return out
}

// lockedOut lists the clients that tried and never got a connection.
func lockedOut(rc *result.Cell) []string {
	var locked []string
	for name, pc := range rc.Load.PerClient {
		if pc.OK == 0 && pc.Attempts > 0 {
			locked = append(locked, name)
		}
	}
	sort.Strings(locked)
	return locked
}

// count writes n with the singular or the plural phrase.
func count(n float64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%.0f %s", n, many)
}

package report

import "github.com/twlab/twlab/lab/result"

// counterMeaning is CounterMeanings[k], with TcpExt.TW said as the kernel
// that measured it counts it (detection's tw_counter): "created" on recent
// kernels, where a report saying "ended" told the reverse of what happened.
func counterMeaning(k, twCounter string) string {
	if k == "TcpExt.TW" {
		switch twCounter {
		case "created":
			return "TIME_WAIT sockets created: connections that entered TIME_WAIT (this kernel counts them when they start)"
		case "expired":
			return "TIME_WAIT sockets that ended: their timer ran out, or a RST or an accepted new SYN ended them early (this kernel counts them when they end)"
		}
	}
	return CounterMeanings[k]
}

// CounterMeanings says in one line what a kernel counter (as
// "Group.Field" from /proc/net/netstat and /proc/net/snmp) counts, for the
// counters of the TIME_WAIT/PAWS story and the common TCP ones around it.
var CounterMeanings = map[string]string{
	// PAWS: Protection Against Wrapped Sequences (RFC 7323 timestamps).
	"TcpExt.PAWSPassive":  "SYNs to a listener dropped because their timestamp was older than the one remembered for that peer address (tcp_tw_recycle, Linux < 4.12): the SYN goes unanswered",
	"TcpExt.PAWSActive":   "SYN-ACKs the connecting side rejected because the timestamp they echo (TSecr) is not one it sent",
	"TcpExt.PAWSEstab":    "segments rejected by PAWS (timestamp older than the last one seen) on an open socket; before Linux 6.16 also SYNs rejected by a TIME_WAIT socket",
	"TcpExt.PAWSTimewait": "segments rejected by PAWS on a TIME_WAIT socket (Linux 6.16+): typically a SYN reusing its 4-tuple with an older timestamp, answered by a bare ACK",
	"TcpExt.PAWSOldAck":   "ACKs rejected by PAWS because they carry an old timestamp",

	// TIME_WAIT.
	"TcpExt.TW":                    "TIME_WAIT sockets: counted when they are created on recent kernels, when they end on older ones (kernel_features.tw_counter says which)",
	"TcpExt.TWRecycled":            "TIME_WAIT sockets taken over by a new outgoing connection to the same peer, allowed by timestamps (tcp_tw_reuse)",
	"TcpExt.TWKilled":              "TIME_WAIT sockets given a shortened timer (tcp_tw_recycle's fast expiry, Linux < 4.12), counted when the short timer is set",
	"TcpExt.TCPTimeWaitOverflow":   "connections closed without a TIME_WAIT socket because tcp_max_tw_buckets was reached (\"time wait bucket table overflow\")",
	"TcpExt.TCPACKSkippedTimeWait": "answers (bare ACKs) a TIME_WAIT socket did not send because replies to out-of-window segments are rate-limited (tcp_invalid_ratelimit)",
	"TcpExt.TCPACKSkippedFinWait2": "answers a FIN_WAIT2 socket did not send because of the same rate limit",
	"TcpExt.TCPACKSkippedSynRecv":  "answers a SYN_RECV socket did not send because of the same rate limit",

	// Listen queues and SYN handling.
	"TcpExt.ListenDrops":          "SYNs or handshake-completing ACKs a listener dropped, for any reason (includes ListenOverflows)",
	"TcpExt.ListenOverflows":      "SYNs and handshake-completing ACKs dropped because the listener's accept queue was full (listen backlog, somaxconn): a SYN dropped so gets no SYN-ACK",
	"TcpExt.TCPReqQFullDrop":      "SYNs dropped because the SYN queue was full and SYN cookies were off",
	"TcpExt.TCPReqQFullDoCookies": "SYN cookies sent because the SYN queue was full",
	"TcpExt.SyncookiesSent":       "SYN-ACKs sent with a SYN cookie instead of keeping a half-open connection",
	"TcpExt.SyncookiesRecv":       "handshake ACKs that carried a valid SYN cookie",
	"TcpExt.SyncookiesFailed":     "handshake ACKs whose SYN cookie did not check out",
	"TcpExt.TCPSynRetrans":        "SYNs and SYN-ACKs sent again after a timeout: the first one got no usable answer",
	"TcpExt.EmbryonicRsts":        "RSTs received for half-open (SYN_RECV) connections",
	"TcpExt.TCPChallengeACK":      "challenge ACKs sent (RFC 5961) in answer to a suspicious RST or SYN",
	"TcpExt.TCPSYNChallenge":      "challenge ACKs sent in answer to a SYN on an open connection",
	"TcpExt.TCPTimeouts":          "retransmission timeouts (RTO expiries), including those of unanswered SYNs",
	"TcpExt.TcpTimeoutRehash":     "RTO expiries after which the kernel picked a new flow hash (it does so on each SYN retransmit)",
	"TcpExt.TCPLostRetransmit":    "retransmitted segments that were lost again",
	"TcpExt.TCPAbortOnData":       "connections reset because data arrived after the application closed",
	"TcpExt.TCPAbortOnClose":      "connections reset because the application closed with unread data",
	"TcpExt.TCPAbortOnTimeout":    "connections aborted after too many retransmission timeouts",
	"TcpExt.TCPAbortOnLinger":     "connections reset by close() with SO_LINGER set to 0",
	"TcpExt.OutOfWindowIcmps":     "ICMP errors dropped because they referred to data outside the window",
	"TcpExt.TCPHPAcks":            "ACKs handled on the fast path (header prediction)",
	"TcpExt.TCPPureAcks":          "ACKs without data received",
	"TcpExt.TCPDelivered":         "segments the peer acknowledged as delivered (data and SYN/FIN)",
	"TcpExt.TCPOrigDataSent":      "segments with new data sent (not retransmissions)",
	"TcpExt.TCPRcvCoalesce":       "received segments merged into the previous one in the receive queue",
	"TcpExt.DelayedACKs":          "delayed ACKs sent",
	"TcpExt.TCPAutoCorking":       "small sends held back briefly to be merged (autocorking)",
	"TcpExt.TCPBacklogCoalesce":   "segments merged in the socket backlog while the socket was busy",
	"TcpExt.TCPHPHits":            "data segments handled on the fast path (header prediction)",
	"TcpExt.TCPWantZeroWindowAdv": "times the receive window would have shrunk to zero",

	// Tcp (RFC 1213 MIB).
	"Tcp.ActiveOpens":  "connections this node opened (connect: SYN sent)",
	"Tcp.PassiveOpens": "connections a listener on this node accepted (handshake completed)",
	"Tcp.AttemptFails": "connection attempts that failed: a SYN_SENT or SYN_RECV socket closed (RST, timeout) or fell back to LISTEN",
	"Tcp.EstabResets":  "established connections ended by a RST",
	"Tcp.OutRsts":      "RST segments sent",
	"Tcp.InSegs":       "segments received",
	"Tcp.OutSegs":      "segments sent (retransmissions excluded)",
	"Tcp.RetransSegs":  "segments retransmitted (SYN retransmits included)",
	"Tcp.InErrs":       "segments received with errors (bad checksum, bad header)",
	"Tcp.InCsumErrors": "segments received with a bad checksum",
	"Tcp.CurrEstab":    "change in connections in ESTABLISHED or CLOSE_WAIT over the cell",
}

// storyCounters are shown first, in this order, when they moved: the
// counters that tell the TIME_WAIT/PAWS story.
var storyCounters = []string{
	"TcpExt.PAWSPassive", "TcpExt.PAWSActive", "TcpExt.PAWSEstab", "TcpExt.PAWSTimewait", "TcpExt.PAWSOldAck",
	"TcpExt.TW", "TcpExt.TWRecycled", "TcpExt.TWKilled", "TcpExt.TCPTimeWaitOverflow",
	"TcpExt.TCPACKSkippedTimeWait", "TcpExt.TCPACKSkippedFinWait2", "TcpExt.TCPACKSkippedSynRecv",
	"TcpExt.ListenDrops", "TcpExt.ListenOverflows", "TcpExt.TCPReqQFullDrop", "TcpExt.TCPReqQFullDoCookies",
	"TcpExt.SyncookiesSent", "TcpExt.SyncookiesRecv", "TcpExt.SyncookiesFailed",
	"TcpExt.TCPSynRetrans", "TcpExt.EmbryonicRsts", "TcpExt.TCPChallengeACK", "TcpExt.TCPSYNChallenge",
	"Tcp.ActiveOpens", "Tcp.PassiveOpens", "Tcp.AttemptFails", "Tcp.EstabResets", "Tcp.OutRsts",
	"TcpExt.TCPTimeouts", "TcpExt.TCPAbortOnData", "TcpExt.TCPAbortOnClose", "TcpExt.TCPAbortOnTimeout",
}

// synMeanings explains the server's nftables figures (run.json "syn").
var synMeanings = []struct{ key, name, meaning string }{
	{"in", "syn.in", "SYNs that reached the server (retransmits included)"},
	{"synack_out", "syn.synack_out", "SYN-ACKs the server sent (those sent again included)"},
	{"synack_retrans", "syn.synack_retrans", "SYN-ACKs the server sent again (TcpExt.TCPSynRetrans): on its timer for a handshake whose final ACK it dropped (answering no new SYN: unanswered may be low by as many), or for a SYN that came again"},
	{"unanswered", "syn.unanswered", "SYNs in minus SYN-ACKs out: SYNs the server did not accept (dropped, or answered with a bare ACK)"},
	{"rst_in", "syn.rst_in", "RSTs that reached the server (a client answering a bare ACK sends one)"},
	{"rst_out", "syn.rst_out", "RSTs the server sent"},
}

func twCounterOf(r *result.Run) string {
	if r.KernelFeatures == nil {
		return ""
	}
	return r.KernelFeatures.TWCounter
}

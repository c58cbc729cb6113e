package scenario

import (
	"time"

	"github.com/twlab/twlab/lab/spec"
)

// defaults fills what a scenario may leave out.
// Only fields not given (or given as null) get a default.
func defaults(s *Scenario, given map[string]bool) {
	set := func(field string, p *int, v int) {
		if *p == 0 && !given[field] {
			*p = v
		}
	}
	set("clients.count", &s.Clients.Count, 2)
	if s.Clients.TSSkew == "" && !given["clients.ts_skew"] {
		s.Clients.TSSkew = spec.TSSkewKernel
	}
	if s.LVS.Mode == "" && !given["lvs.mode"] {
		s.LVS.Mode = spec.LVSSNAT
	}
	if s.LVS.SNATPorts > 0 && s.LVS.SNATPortBase == 0 && !given["lvs.snat_port_base"] {
		s.LVS.SNATPortBase = 40000
	}
	if s.LVS.Mode == spec.LVSFullNAT && s.LVS.VIP == "" {
		s.LVS.VIP = "198.18.0.100"
	}
	set("server.port", &s.Server.Port, 8080)
	set("server.ports", &s.Server.Ports, 1)
	if s.Server.Close == "" && !given["server.close"] {
		s.Server.Close = spec.CloseServer
	}
	set("server.keepalive_requests", &s.Server.KeepaliveRequests, 1)
	set("server.backlog", &s.Server.Backlog, 4096)
	if s.Server.Accept == "" && !given["server.accept"] {
		s.Server.Accept = spec.AcceptNormal
	}
	set("load.connections", &s.Load.Connections, 200)
	if s.Load.Duration == 0 && !given["load.duration"] {
		s.Load.Duration = Duration(10 * time.Second)
	}
	set("load.concurrency", &s.Load.Concurrency, 1)
	if s.Load.Order == "" && !given["load.order"] {
		s.Load.Order = spec.OrderRoundRobin
	}
	if s.Load.ConnectTimeout == 0 && !given["load.connect_timeout"] {
		s.Load.ConnectTimeout = Duration(time.Second)
	}
	if s.Load.IOTimeout == 0 && !given["load.io_timeout"] {
		s.Load.IOTimeout = Duration(2 * time.Second)
	}
	if s.Seed == 0 {
		s.Seed = 1
	}
}

package topo_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/twlab/twlab/lab/topo"
)

// BenchmarkBuildDestroy builds and destroys a lab (namespaces, veths,
// bridge, addresses, routes, neighbours, links up) of 2, 16 and 64 clients.
// One op is one lab; the build alone is reported as build-ms.
func BenchmarkBuildDestroy(b *testing.B) {
	for _, n := range []int{2, 16, 64} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			roottest.Skip(b)
			id := roottest.RunID(b)
			var build time.Duration
			for b.Loop() {
				t0 := time.Now()
				l, err := topo.Build(context.Background(), topo.Spec{RunID: id, Clients: n}, nil)
				build += time.Since(t0)
				if derr := l.Destroy(); err == nil {
					err = derr
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(build.Microseconds())/1e3/float64(b.N), "build-ms")
		})
	}
}

package agentproxy

import (
	"net"
	"runtime"
	"testing"

	"github.com/netkingdom/ops-warden/catalog"
)

// BenchmarkIdleConnMemory reports the Go heap and stack an idle client
// connection holds (bytes/conn, of which stack-bytes/conn is goroutine
// stack) after it answered one "query", as the bench's rss phase does with
// the whole process (issue 17: < 16 KiB per idle connection). The agent
// has an upstream ssh-agent. The serving goroutine's stack is most of it:
// whatever a connection once did deep (a dial) it keeps while idle.
//
//	go test -run '^$' -bench IdleConnMemory ./agentproxy/
func BenchmarkIdleConnMemory(b *testing.B) {
	up, _ := sshAgentWithKeys(b, 1)
	env := startServer(b, func(cfg *Config, _ *catalog.Catalog) { cfg.Upstream = up; cfg.MaxConnsPerPid = 1 << 20 })
	const n = 500
	var stack0, stack1 uint64
	measure := func() uint64 {
		runtime.GC()
		runtime.GC() // a second cycle shrinks the stacks the first found idle
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		stack0, stack1 = stack1, m.StackInuse
		return m.HeapInuse + m.StackInuse
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		before := measure()
		var conns []net.Conn
		for range n {
			c := dialRaw(b, env.socket)
			if reply := rawCall(b, c, extensionBody(extQuery, nil)); reply[0] != msgExtensionResponse {
				b.Fatalf("query: %v", reply)
			}
			conns = append(conns, c)
		}
		after := measure()
		// The client side of each connection lives in this process too:
		// a net.Conn (netFD, poll descriptor) of a few hundred bytes.
		b.ReportMetric(float64(after-before)/n, "bytes/conn")
		b.ReportMetric(float64(stack1-stack0)/n, "stack-bytes/conn")
		for _, c := range conns {
			c.Close()
		}
	}
}

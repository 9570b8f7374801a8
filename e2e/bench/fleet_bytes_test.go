package bench

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
)

// countingListener counts the bytes read from and written to its
// connections: on the control plane's side, what proxies report (in) and
// what it pushes to them (out).
type countingListener struct {
	net.Listener
	in, out atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, l: l}, nil
}

type countingConn struct {
	net.Conn
	l *countingListener
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.l.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.l.out.Add(int64(n))
	return n, err
}

// BenchmarkFleetExchangeBytes measures the fleet exchange's traffic on the
// wire (gRPC over loopback, HTTP/2 framing included, no TLS) with 4
// proxies' cost models picking among 8 endpoints at 200 requests/s in
// all, with the production report and push intervals (5 ms; key sets
// every 250 ms): up-B/req
// is what a proxy reports per request it sends (its keys, its send and,
// when the response's first token comes 100 ms later, a prefilled record),
// down-B/req what it is pushed per request another proxy sends. A proxy
// sending r requests/s in a gateway serving R in all uses r × up-B/req
// upstream and (R − r) × down-B/req downstream. Prompts share a
// 1,000-token system prompt and differ after it (prompt= their length in
// tokens). Run with a fixed count, e.g. -benchtime=1000x (5 s each).
func BenchmarkFleetExchangeBytes(b *testing.B) {
	for _, tokens := range []int{1000, 4000, 16000} {
		b.Run(fmt.Sprintf("prompt=%d", tokens), func(b *testing.B) { benchExchangeBytes(b, tokens) })
	}
}

func benchExchangeBytes(b *testing.B, tokens int) {
	const proxies, rate = 4, 200
	logger := slog.New(slog.DiscardHandler)
	reg := endpoints.NewRegistry(logger, endpoints.Options{Proxies: proxies})
	defer reg.Close()
	var specs []endpoints.Spec
	for i := range 8 {
		specs = append(specs, endpoints.Spec{Address: fmt.Sprintf("10.0.0.%d:8000", i+1)})
	}
	var es []*endpoints.Endpoint
	for _, e := range reg.Sync(specs) {
		es = append(es, e)
	}
	pools := make([]*proxyPools, proxies)
	scheds := make([]*picker.Scheduler, proxies)
	for i := range pools {
		pools[i] = &proxyPools{}
		s, err := picker.FromProfile(nil)
		if err != nil {
			b.Fatal(err)
		}
		pools[i].capture(func(*config.Backend) picker.Picker { return s })(&config.Backend{Name: poolName})
		s.SetEndpoints(es)
		scheds[i] = s
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cl := &countingListener{Listener: lis}
	stop := serveFleetKeys(cl, pools, 1, logger)
	defer stop()
	time.Sleep(300 * time.Millisecond) // streams open
	in0, out0 := cl.in.Load(), cl.out.Load()

	system := strings.Repeat("You answer questions about the handbook. ", 1000*4/41)
	userChars := (tokens - 1000) * 4
	bodies := make([][]byte, 64)
	for i := range bodies {
		q := fmt.Sprintf("question %d about section %d. ", i, i*7)
		user := strings.Repeat(q, userChars/len(q)+1)[:userChars]
		bodies[i] = []byte(`{"model":"m","messages":[{"role":"system","content":"` + system + `"},{"role":"user","content":"` + user + `"}]}`)
	}
	type sent struct {
		sched *picker.Scheduler
		req   *picker.Request
		ep    *endpoints.Endpoint
	}
	const firstByteAfter = 20 // 100 ms at 200 requests/s
	var started [firstByteAfter]sent
	b.ResetTimer()
	start := time.Now()
	for n := range b.N {
		if wait := time.Until(start.Add(time.Duration(n) * time.Second / rate)); wait > 0 {
			time.Sleep(wait)
		}
		req := &picker.Request{Model: "m", Body: bodies[n%len(bodies)]}
		ep, err := scheds[n%proxies].Pick(req, es)
		if err != nil {
			b.Fatal(err)
		}
		// Each response's first token comes firstByteAfter picks later, as
		// the pipeline would tell it: the proxy takes the prompt off the
		// replica's backlog and reports a prefilled record.
		started[n%firstByteAfter] = sent{scheds[n%proxies], req, ep}
		if n >= firstByteAfter-1 {
			f := started[(n+1)%firstByteAfter]
			f.sched.FirstByte(f.req, f.ep, time.Now())
		}
	}
	time.Sleep(700 * time.Millisecond) // the last report and push
	b.StopTimer()
	in, out := cl.in.Load()-in0, cl.out.Load()-out0
	b.ReportMetric(float64(in)/float64(b.N), "up-B/req")
	b.ReportMetric(float64(out)/float64(b.N*(proxies-1)), "down-B/req")
}

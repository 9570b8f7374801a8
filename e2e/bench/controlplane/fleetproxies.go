package main

// The fleet phase's simulated proxies, as fleetcost.go describes them, and
// what it measures them with: the lag from a pick to its send merged on
// another proxy, the bytes on their connections, and CPU from /proc.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
)

// lagBook matches the sends the proxies merge to the picks that made
// them, by the send's deepest chain key (each prompt is unique up to it),
// and counts what the exchange carried.
type lagBook struct {
	mu        sync.Mutex
	pickedAt  map[uint64]int64 // deepest key → pick time, unix ns
	lags      []time.Duration
	sent      int64 // sends the proxies reported
	sentKeys  int64 // their chain keys
	merged    atomic.Int64
	adopted   atomic.Int64
	unmatched atomic.Int64
}

func newLagBook() *lagBook { return &lagBook{pickedAt: map[uint64]int64{}} }

func (b *lagBook) reported(ss []picker.Send) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range ss {
		if len(s.Keys) > 0 {
			b.pickedAt[s.Keys[len(s.Keys)-1]] = s.At
		}
		b.sent++
		b.sentKeys += int64(len(s.Keys))
	}
}

func (b *lagBook) mergedAt(ss []picker.Send, now int64) {
	b.merged.Add(int64(len(ss)))
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range ss {
		if len(s.Keys) == 0 {
			continue
		}
		at, ok := b.pickedAt[s.Keys[len(s.Keys)-1]]
		if !ok {
			b.unmatched.Add(1)
			continue
		}
		b.lags = append(b.lags, time.Duration(now-at))
	}
}

// take returns the lags recorded since the last take and the sends
// reported and their keys, and starts over.
func (b *lagBook) take() (lags []time.Duration, sent, keys int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	lags, sent, keys = b.lags, b.sent, b.sentKeys
	b.lags, b.sent, b.sentKeys = nil, 0, 0
	return lags, sent, keys
}

// bookedFleet is a proxy's cost model as the fleetkeys client sees it,
// noting what goes through the exchange on the way.
type bookedFleet struct {
	picker.Fleet
	book *lagBook
}

func (f bookedFleet) SendsSince(cursor uint64, out []picker.Send) ([]picker.Send, uint64) {
	n := len(out)
	out, next := f.Fleet.SendsSince(cursor, out)
	f.book.reported(out[n:])
	return out, next
}

func (f bookedFleet) MergeSends(ss []picker.Send) {
	f.book.mergedAt(ss, time.Now().UnixNano())
	f.Fleet.MergeSends(ss)
}

func (f bookedFleet) MergeLoads(ls []picker.Load) int {
	n := f.Fleet.MergeLoads(ls)
	f.book.adopted.Add(int64(n))
	return n
}

// wireCount counts one proxy's connection: bytes over TCP and messages
// on its streams.
type wireCount struct {
	rx, tx          atomic.Int64
	msgsIn, msgsOut atomic.Int64
	// started is set by the first push received.
	started atomic.Bool
}

type countedConn struct {
	net.Conn
	c *wireCount
}

func (c countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.c.rx.Add(int64(n))
	return n, err
}

func (c countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.c.tx.Add(int64(n))
	return n, err
}

// TagRPC, HandleRPC, TagConn and HandleConn make wireCount a gRPC stats
// handler counting the messages of the proxy's streams.
func (w *wireCount) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (w *wireCount) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch s.(type) {
	case *stats.InPayload:
		w.msgsIn.Add(1)
		w.started.Store(true)
	case *stats.OutPayload:
		w.msgsOut.Add(1)
	}
}
func (w *wireCount) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (w *wireCount) HandleConn(context.Context, stats.ConnStats)                       {}

func (w *wireCount) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(w),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return countedConn{Conn: c, c: w}, nil
		}),
	}
}

// fleetProxy is one simulated proxy of the gateway.
type fleetProxy struct {
	pool  string
	sched *picker.Scheduler
	eps   []*endpoints.Endpoint
	fleet bookedFleet
	wire  wireCount
}

// Fleets implements fleetkeys.Pools: the proxy's one pool.
func (p *fleetProxy) Fleets() map[string]picker.Fleet {
	return map[string]picker.Fleet{p.pool: p.fleet}
}

func newFleetProxy(pool string, addrs []string, book *lagBook) (*fleetProxy, error) {
	sched, err := picker.FromProfile(nil)
	if err != nil {
		return nil, err
	}
	if _, ok := sched.Fleet().(*picker.CostModel); !ok {
		return nil, fmt.Errorf("the default picker profile has no cost model: it exchanges no sends")
	}
	p := &fleetProxy{pool: pool, sched: sched, fleet: bookedFleet{Fleet: sched.Fleet(), book: book}}
	for _, a := range addrs {
		p.eps = append(p.eps, endpoints.New(endpoints.Spec{Address: a, Pod: a}))
	}
	return p, nil
}

// prompts makes the requests: 32 system prompts of half the tokens, each
// followed by a user message unique from its start, so every prompt's
// deepest chain key is its own.
type prompts struct {
	heads [][]byte
	tail  string
}

func newPrompts(tokens int) *prompts {
	chars := tokens * 4 // the picker's estimate: 4 bytes a token
	p := &prompts{tail: strings.Repeat("tell me more about the previous answer. ", chars/2/40+1)[:chars/2]}
	for g := range 32 {
		sys := fmt.Sprintf("group %d: ", g) + strings.Repeat("you are a helpful assistant. ", chars/2/29+1)
		p.heads = append(p.heads, fmt.Appendf(nil, `{"model":"m","stream":true,"messages":[{"role":"system","content":%q},{"role":"user","content":"request `, sys[:chars/2]))
	}
	return p
}

func (p *prompts) body(i int) []byte {
	b := append([]byte(nil), p.heads[i%len(p.heads)]...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, ": "...)
	b = append(b, p.tail...)
	return append(b, `"}]}`...)
}

// drive makes the gateway's picks, rate a second spread evenly over the
// proxies in turn, and its proxies' scrapes of the pool's endpoints, each
// proxy scraping each endpoint every 50 ms × proxies (the proxy's
// schedule: the servers see one proxy's scrape load) at staggered times,
// until ctx ends. A pick counts as a request sent and finished at once:
// nothing here waits on a server.
func drive(ctx context.Context, ps []*fleetProxy, rate int, pr *prompts) {
	n := len(ps)
	eps := len(ps[0].eps)
	scrapeRate := float64(eps) / 0.050 // scrapes a second, whatever the proxy count
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var picks, scrapes int
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		el := now.Sub(start).Seconds()
		for ; picks < int(el*float64(rate)); picks++ {
			p := ps[picks%n]
			req := &picker.Request{Model: "m", Body: pr.body(picks), MaxTokens: 256}
			if ep, err := p.sched.Pick(req, p.eps); err == nil {
				ep.Acquire(now)
				ep.Release()
			}
		}
		for ; scrapes < int(el*scrapeRate); scrapes++ {
			i := scrapes % n
			ep := ps[i].eps[(scrapes/n+i)%eps]
			ep.SetMetrics(&endpoints.Metrics{Waiting: float64(rand.IntN(8)), Running: float64(8 + rand.IntN(24)),
				KVCacheUsage: rand.Float64(), KVCapacity: 500_000, At: now})
		}
	}
}

// cpuSeconds is a process's user and system CPU from /proc/<pid>/stat
// (utime and stime, in clock ticks of 1/100 s: USER_HZ is 100 on every
// Linux this runs on, and Go cannot ask sysconf without cgo).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return (ut + st) / 100, nil
}

// machineCPU returns the machine's busy and total CPU time so far, in
// clock ticks (the "cpu" line of /proc/stat; idle and iowait are idle).
func machineCPU() (busy, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		x, _ := strconv.ParseFloat(v, 64)
		total += x
		if i != 3 && i != 4 {
			busy += x
		}
	}
	return busy, total
}

// selfCPU is this process's user and system CPU in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

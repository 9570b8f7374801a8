package main

import (
	"bytes"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infergate/infergate/e2e/loadgen"
)

// target is one way to reach the backend: directly, through infergate, or
// through nginx.
type target struct {
	name   string
	base   string // "http://127.0.0.1:port"
	pid    int    // the proxy process (with its children), 0 for direct
	client *http.Client
	// sidecarPID is a process the target relies on beside the proxy (the
	// external endpoint picker), its CPU reported on its own; only, when
	// set, limits the target to these cases.
	sidecarPID int
	only       map[string]bool
}

func newTarget(name, base string, pid int) *target {
	return &target{name: name, base: base, pid: pid, client: &http.Client{Transport: &http.Transport{
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}}}
}

// sample is one request: total latency (until the last body byte) and the
// time to the first body byte.
type sample struct {
	total, first time.Duration
	ok           bool
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (t *target) do(path string, body []byte) sample {
	start := time.Now()
	req, _ := http.NewRequest(http.MethodPost, t.base+path, bytes.NewReader(body))
	req.Header["Content-Type"] = []string{"application/json"}
	resp, err := t.client.Do(req)
	if err != nil {
		return sample{}
	}
	defer resp.Body.Close()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	var s sample
	for {
		n, err := resp.Body.Read(*bp)
		if n > 0 && s.first == 0 {
			s.first = time.Since(start)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return sample{}
		}
	}
	s.total = time.Since(start)
	s.ok = resp.StatusCode == http.StatusOK
	return s
}

// fixedRate sends rate requests per second for dur (open loop: a slow
// answer does not delay the next request).
func (t *target) fixedRate(path string, body []byte, rate int, dur time.Duration) []sample {
	n := int(float64(rate) * dur.Seconds())
	out := make([]sample, n)
	interval := time.Second / time.Duration(rate)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		wg.Go(func() { out[i] = t.do(path, body) })
	}
	wg.Wait()
	return out
}

// closedLoop runs conc workers back to back for dur and returns the
// samples and the completed requests per second.
func (t *target) closedLoop(path string, body []byte, conc int, dur time.Duration) ([]sample, float64) {
	var (
		mu   sync.Mutex
		all  []sample
		done atomic.Int64
		wg   sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(dur)
	for range conc {
		wg.Go(func() {
			var mine []sample
			for time.Now().Before(deadline) {
				s := t.do(path, body)
				mine = append(mine, s)
				if s.ok {
					done.Add(1)
				}
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return all, float64(done.Load()) / time.Since(start).Seconds()
}

// stats summarises samples.
type stats struct {
	n, errors                    int
	p50, p99, firstP50, firstP99 time.Duration
	rps                          float64
	// proxyCPU, backendCPU and loadCPU are the CPU time the proxy
	// process (none for direct), the backend and the load generator (a
	// net/http client) used per successful request.
	proxyCPU, backendCPU, loadCPU time.Duration
	// sidecarCPU is the target's sidecar's (the picker's) CPU per request.
	sidecarCPU time.Duration
}

func summarize(ss []sample) stats {
	var tot, first []time.Duration
	st := stats{n: len(ss)}
	for _, s := range ss {
		if !s.ok {
			st.errors++
			continue
		}
		tot = append(tot, s.total)
		first = append(first, s.first)
	}
	slices.Sort(tot)
	slices.Sort(first)
	st.p50, st.p99 = loadgen.Quantile(tot, 0.50), loadgen.Quantile(tot, 0.99)
	st.firstP50, st.firstP99 = loadgen.Quantile(first, 0.50), loadgen.Quantile(first, 0.99)
	return st
}

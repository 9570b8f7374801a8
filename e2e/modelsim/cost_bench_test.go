package modelsim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"
)

func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFleetStreamingCPU measures the simulator's own cost: 8 replicas,
// each kept at a full batch (16 concurrent streaming completions), and
// reports process CPU per 1,000 streamed tokens. The streaming clients run in
// the same process and are included, so the number is an upper bound for the
// simulator alone. Run:
//
//	go test -run '^$' -bench FleetStreamingCPU -benchtime 3x ./modelsim
func BenchmarkFleetStreamingCPU(b *testing.B) {
	for _, scale := range []float64{1, 0.2, 0.05} {
		b.Run(fmt.Sprintf("scale=%v", scale), func(b *testing.B) {
			const (
				replicas  = 8
				batch     = 16
				maxTokens = 256
			)
			listen := make([]string, replicas)
			for i := range listen {
				listen[i] = "127.0.0.1:0"
			}
			f := startFleet(b, FleetConfig{Config: Config{TimeScale: scale}, Listen: listen})
			httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: batch * 2}}
			bodies := make([][]byte, replicas*batch)
			for i := range bodies {
				bodies[i], _ = json.Marshal(map[string]any{
					"model": DefaultModel, "prompt": longPrompt(fmt.Sprintf("bench-%d", i), 800),
					"max_tokens": maxTokens, "stream": true,
				})
			}
			var tokens int64
			var mu sync.Mutex
			b.ResetTimer()
			cpu0, wall0 := cpuTime(b), time.Now()
			for range b.N {
				var wg sync.WaitGroup
				for i := range bodies {
					wg.Add(1)
					go func() {
						defer wg.Done()
						resp, err := httpc.Post(f.Replica(i%replicas).URL()+"/v1/completions", "application/json", bytes.NewReader(bodies[i]))
						if err != nil {
							b.Error(err)
							return
						}
						defer resp.Body.Close()
						n := 0
						sc := bufio.NewScanner(resp.Body)
						for sc.Scan() {
							if bytes.Contains(sc.Bytes(), []byte(`"finish_reason":null`)) {
								n++
							}
						}
						mu.Lock()
						tokens += int64(n)
						mu.Unlock()
					}()
				}
				wg.Wait()
			}
			cpu, wall := cpuTime(b)-cpu0, time.Since(wall0)
			b.StopTimer()
			if want := int64(b.N * replicas * batch * maxTokens); tokens != want {
				b.Fatalf("streamed %d tokens, want %d", tokens, want)
			}
			b.ReportMetric(float64(cpu.Microseconds())/1000/(float64(tokens)/1000), "cpu-ms/1k-tokens")
			b.ReportMetric(float64(tokens)/wall.Seconds(), "tokens/s")
			b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cores")
		})
	}
}

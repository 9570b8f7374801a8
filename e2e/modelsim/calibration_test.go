package modelsim

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infergate/infergate/e2e/modelsim/engine"
)

// streamTiming is what a client observes of one streamed completion, in
// simulated time (wall time divided by the time scale).
type streamTiming struct {
	ttft   time.Duration
	itl    time.Duration // mean gap between tokens
	gaps   []time.Duration
	tokens int
	cached int
}

// streamCompletion sends one streaming /v1/completions request and times the
// token chunks as they arrive.
func streamCompletion(url, prompt string, maxTokens int, scale float64) (streamTiming, error) {
	body, _ := json.Marshal(map[string]any{
		"model": DefaultModel, "prompt": prompt, "max_tokens": maxTokens, "stream": true,
		"stream_options": map[string]any{"include_usage": true},
	})
	start := time.Now()
	resp, err := http.Post(url+"/v1/completions", "application/json", strings.NewReader(string(body)))
	if err != nil {
		return streamTiming{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return streamTiming{}, fmt.Errorf("status %d", resp.StatusCode)
	}
	var st streamTiming
	var first, last time.Time
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, `"finish_reason":null`):
			now := time.Now()
			if st.tokens == 0 {
				first = now
			} else {
				st.gaps = append(st.gaps, time.Duration(float64(now.Sub(last))/scale))
			}
			last = now
			st.tokens++
		case strings.Contains(line, `"usage"`):
			var u struct {
				Usage usage `json:"usage"`
			}
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &u); err == nil && u.Usage.PromptTokensDetails != nil {
				st.cached = u.Usage.PromptTokensDetails.CachedTokens
			}
		}
	}
	sim := func(d time.Duration) time.Duration { return time.Duration(float64(d) / scale) }
	st.ttft = sim(first.Sub(start))
	if st.tokens > 1 {
		st.itl = sim(last.Sub(first)) / time.Duration(st.tokens-1)
	}
	return st, sc.Err()
}

type calibRow struct {
	scenario               string
	ttft, itl, itlP50      time.Duration
	tput                   float64 // output tokens per simulated second
	refTTFT, refITL        string
	cachedShare            float64
	serverTTFT, serverITL  time.Duration
	requests, outputPerReq int
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func mean(ds []time.Duration) time.Duration {
	var s time.Duration
	for _, d := range ds {
		s += d
	}
	return s / time.Duration(max(len(ds), 1))
}

// histMean reads a histogram's mean from a replica's /metrics.
func histMean(t *testing.T, r *Replica, name string) time.Duration {
	m := single(t, scrape(t, r), name).GetHistogram()
	if m.GetSampleCount() == 0 {
		return 0
	}
	return time.Duration(m.GetSampleSum() / float64(m.GetSampleCount()) * float64(time.Second))
}

// TestCalibration measures the simulator through its HTTP API against the
// reference profile and prints the README's calibration table. It takes ~15 s
// of wall time, so it only runs when asked:
//
//	MODELSIM_CALIBRATE=1 go test -count=1 -run TestCalibration -v ./modelsim
func TestCalibration(t *testing.T) {
	if os.Getenv("MODELSIM_CALIBRATE") == "" {
		t.Skip("set MODELSIM_CALIBRATE=1 to run the calibration")
	}
	const (
		scale     = 0.25
		promptLen = 4000 // characters = 1,000 tokens
		outTokens = 200
	)
	var rows []calibRow
	fresh := func() *Replica {
		f := startFleet(t, FleetConfig{Config: Config{TimeScale: scale}})
		return f.Replica(0)
	}
	// Batch sizes: N identical-length, distinct prompts arriving together.
	for _, batch := range []int{1, 8, 16} {
		r := fresh()
		var mu sync.Mutex
		var ttfts, itls, gaps []time.Duration
		var wg sync.WaitGroup
		start := time.Now()
		for i := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := streamCompletion(r.URL(), longPrompt(fmt.Sprintf("batch%d-%d", batch, i), promptLen), outTokens, scale)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ttfts, itls = append(ttfts, st.ttft), append(itls, st.itl)
				gaps = append(gaps, st.gaps...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		wall := time.Duration(float64(time.Since(start)) / scale)
		ref := map[int][2]string{1: {"280 ms", "12 ms"}, 8: {"—", "≈ 18 ms"}, 16: {"—", "≈ 24 ms (×2)"}}[batch]
		rows = append(rows, calibRow{
			scenario: fmt.Sprintf("batch %d, 0 %% prefix hits", batch), ttft: mean(ttfts), itl: mean(itls), itlP50: median(gaps),
			tput: float64(batch*outTokens) / wall.Seconds(), refTTFT: ref[0], refITL: ref[1],
			serverTTFT: histMean(t, r, "vllm:time_to_first_token_seconds"), serverITL: histMean(t, r, "vllm:inter_token_latency_seconds"),
			requests: batch, outputPerReq: outTokens,
		})
	}
	// Prefix-cache hits: a lone request whose first share of the prompt was
	// served before (warm-up request on the same replica).
	for _, share := range []float64{0, 0.5, 0.9} {
		r := fresh()
		base := longPrompt("shared", promptLen)
		if _, err := streamCompletion(r.URL(), base, 1, scale); err != nil {
			t.Fatal(err)
		}
		var ttfts, itls, gaps []time.Duration
		cached := 0
		for i := range 3 {
			cut := int(share * promptLen)
			prompt := base[:cut] + longPrompt(fmt.Sprintf("tail%d", i), promptLen-cut)
			st, err := streamCompletion(r.URL(), prompt, 50, scale)
			if err != nil {
				t.Fatal(err)
			}
			ttfts, itls, cached = append(ttfts, st.ttft), append(itls, st.itl), st.cached
			gaps = append(gaps, st.gaps...)
		}
		refTTFT := 30*time.Millisecond + time.Duration(float64(promptLen/engine.CharsPerToken-cached)*float64(250*time.Microsecond))
		rows = append(rows, calibRow{
			scenario: fmt.Sprintf("batch 1, %.0f %% prefix hits", share*100), ttft: mean(ttfts), itl: mean(itls), itlP50: median(gaps),
			tput: 0, refTTFT: refTTFT.Round(time.Millisecond).String(), refITL: "12 ms", cachedShare: float64(cached) / 1000,
			requests: 3, outputPerReq: 50,
		})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| scenario | cached share | TTFT mean | TTFT reference | ITL p50 | ITL mean | ITL reference | output tokens/s | server-reported TTFT / ITL (mean) |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		tput, server := "—", "—"
		if r.tput > 0 {
			tput = fmt.Sprintf("%.0f", r.tput)
			server = fmt.Sprintf("%v / %v", r.serverTTFT.Round(time.Millisecond), r.serverITL.Round(100*time.Microsecond))
		}
		fmt.Fprintf(&b, "| %s | %.0f %% | %v | %s | %v | %v | %s | %s | %s |\n", r.scenario, r.cachedShare*100,
			r.ttft.Round(time.Millisecond), r.refTTFT, r.itlP50.Round(100*time.Microsecond), r.itl.Round(100*time.Microsecond), r.refITL, tput, server)
	}
	fmt.Println(b.String())
}

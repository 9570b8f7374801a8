package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Result is the outcome of one request. Durations are wall-clock; divide
// by the simulator's time scale for simulated time.
type Result struct {
	Index  int
	Class  string
	Model  string
	Status int // 0 when the exchange failed before a response
	Err    string
	// Start is the offset of the send from the run's start.
	Start time.Duration
	// TTFT is the time to the first content token, E2E to the end of the
	// stream; zero when not reached.
	TTFT, E2E    time.Duration
	OutputTokens int
	PromptTokens int
	CachedTokens int
	// Replica is the x-modelsim-replica response header (who served).
	Replica string
}

// OK reports a complete, successful stream.
func (r *Result) OK() bool { return r.Status == http.StatusOK && r.Err == "" && r.OutputTokens > 0 }

// Options of a run.
type Options struct {
	// Targets are base URLs (http://host:port); request i goes to
	// Targets[i % len], as an L4 load balancer in front of proxies would.
	Targets []string
	// Path defaults to /v1/chat/completions.
	Path string
	// TimeScale converts the workload's simulated arrival times to wall
	// time (wall = simulated × TimeScale); 0 means 1.
	TimeScale float64
	// Timeout bounds one request (wall); default 5 minutes.
	Timeout time.Duration
	// Client defaults to a client with enough idle connections.
	Client *http.Client
}

// Run replays w open-loop (arrivals do not wait for earlier responses,
// except the turns of a session, which wait for the previous turn and
// their think time), or closed-loop when w.Concurrency is set, and returns
// one result per request sent, in workload order. A canceled ctx stops it
// early; the requests not sent by then have no result.
func Run(ctx context.Context, w Workload, o Options) ([]Result, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	if len(o.Targets) == 0 {
		return nil, errors.New("loadgen: no targets")
	}
	if o.Path == "" {
		o.Path = "/v1/chat/completions"
	}
	if o.TimeScale <= 0 {
		o.TimeScale = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Client == nil {
		o.Client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true}}
	}
	out := make([]Result, len(w.Requests))
	sent := make([]bool, len(w.Requests))
	start := time.Now()
	send := func(i int) {
		r := &w.Requests[i]
		res := &out[i]
		res.Index, res.Class, res.Model = i, r.Class, r.Model
		res.Start = time.Since(start)
		sent[i] = true
		rctx, cancel := context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		do(rctx, o.Client, o.Targets[i%len(o.Targets)]+o.Path, r, res)
	}
	if w.Concurrency > 0 {
		return runClosed(ctx, w, out, send), nil
	}
	wall := func(d time.Duration) time.Duration { return time.Duration(float64(d) * o.TimeScale) }
	var wg sync.WaitGroup
	timer := time.NewTimer(0)
	defer timer.Stop()
	for _, chain := range w.schedule() {
		if d := time.Until(start.Add(wall(w.Requests[chain[0]].At))); d > 0 && !sleep(ctx, timer, d) {
			break
		}
		wg.Go(func() {
			// A session's turns in order, each after its think time; a
			// separate timer, since the arrival loop owns the other.
			var t *time.Timer
			for k, i := range chain {
				if k > 0 {
					if t == nil {
						t = time.NewTimer(0)
						defer t.Stop()
					}
					if !sleep(ctx, t, wall(w.Requests[i].Delay)) {
						return
					}
				}
				send(i)
			}
		})
	}
	wg.Wait()
	var got []Result
	for i := range out {
		if sent[i] {
			got = append(got, out[i])
		}
	}
	return got, nil
}

// sleep waits d on t (which must be stopped or drained) and reports false
// when ctx ended first.
func sleep(ctx context.Context, t *time.Timer, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	if d <= 0 {
		return true
	}
	t.Reset(d)
	select {
	case <-ctx.Done():
		t.Stop()
		return false
	case <-t.C:
		return true
	}
}

// runClosed sends the requests in order from w.Concurrency workers, each
// starting its next request when the previous one ends; it stops early,
// returning what was sent, when ctx ends.
func runClosed(ctx context.Context, w Workload, out []Result, send func(int)) []Result {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range w.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(out) {
					return
				}
				send(i)
			}
		})
	}
	wg.Wait()
	// Requests are taken in order, so the ones sent are a prefix (all of
	// them unless ctx ended first).
	return out[:min(int(next.Load()), len(out))]
}

var (
	dataPrefix   = []byte("data: ")
	contentToken = []byte(`"delta":{"content":"`)
	textToken    = []byte(`"text":"`)
	done         = []byte("[DONE]")
)

type usageChunk struct {
	Usage *struct {
		PromptTokens        int `json:"prompt_tokens"`
		CompletionTokens    int `json:"completion_tokens"`
		PromptTokensDetails *struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
	} `json:"usage"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func do(ctx context.Context, c *http.Client, url string, r *Request, res *Result) {
	t0 := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(r.Body))
	if err != nil {
		res.Err = err.Error()
		return
	}
	req.Header = r.Header()
	resp, err := c.Do(req)
	if err != nil {
		res.Err = err.Error()
		return
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	res.Replica = resp.Header.Get("x-modelsim-replica")
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		res.Err = string(b)
		return
	}
	br := bufio.NewReaderSize(resp.Body, 16<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 && bytes.HasPrefix(line, dataPrefix) {
			data := bytes.TrimSpace(line[len(dataPrefix):])
			switch {
			case bytes.Equal(data, done):
				res.E2E = time.Since(t0)
				return
			case isToken(data):
				if res.OutputTokens == 0 {
					res.TTFT = time.Since(t0)
				}
				res.OutputTokens++
			case bytes.Contains(data, []byte(`"usage"`)) || bytes.Contains(data, []byte(`"error"`)):
				var u usageChunk
				if json.Unmarshal(data, &u) == nil {
					if u.Error != nil {
						res.Err = "stream error: " + u.Error.Message
					}
					if u.Usage != nil {
						res.PromptTokens = u.Usage.PromptTokens
						if d := u.Usage.PromptTokensDetails; d != nil {
							res.CachedTokens = d.CachedTokens
						}
					}
				}
			}
		}
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				continue // a very long line: its head was handled
			}
			if !errors.Is(err, io.EOF) || res.E2E == 0 {
				res.Err = "stream ended without [DONE]"
				if err != io.EOF {
					res.Err = err.Error()
				}
			}
			return
		}
	}
}

// isToken reports a chunk carrying generated text (not the role chunk,
// whose content is empty).
func isToken(data []byte) bool {
	for _, k := range [][]byte{contentToken, textToken} {
		if i := bytes.Index(data, k); i >= 0 && i+len(k) < len(data) && data[i+len(k)] != '"' {
			return true
		}
	}
	return false
}

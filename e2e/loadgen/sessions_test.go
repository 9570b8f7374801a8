package loadgen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/e2e/loadgen"
)

// TestAfter: sessions resolve to the previous turn of the same session,
// whatever other requests sit between; independent requests wait for
// nothing.
func TestAfter(t *testing.T) {
	w := loadgen.Workload{Requests: []loadgen.Request{
		{Session: 1}, {}, {Session: 2}, {Session: 1}, {Session: 2}, {Session: 1}, {},
	}}
	got := w.After()
	want := []int{-1, -1, -1, 0, 2, 3, -1}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("After() = %v, want %v", got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	body := []byte(`{}`)
	for name, w := range map[string]loadgen.Workload{
		"negative arrival":     {Requests: []loadgen.Request{{At: -1, Body: body}}},
		"negative think time":  {Requests: []loadgen.Request{{Session: 1, Body: body}, {Session: 1, Delay: -1, Body: body}}},
		"negative session":     {Requests: []loadgen.Request{{Session: -2, Body: body}}},
		"sessions closed-loop": {Concurrency: 2, Requests: []loadgen.Request{{Session: 1, Body: body}}},
		"no body":              {Requests: []loadgen.Request{{}}},
		"negative concurrency": {Concurrency: -1},
	} {
		if err := w.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := loadgen.Run(context.Background(), w, loadgen.Options{Targets: []string{"http://127.0.0.1:1"}}); err == nil {
			t.Errorf("%s: Run accepted it", name)
		}
	}
	ok := loadgen.Workload{Requests: []loadgen.Request{{Body: body}, {Session: 1, Body: body}, {Session: 1, Delay: time.Second, Body: body}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestRunSessions: a session's next turn is sent its think time after the
// previous turn ended, not at its At; independent requests do not wait.
func TestRunSessions(t *testing.T) {
	const service = 30 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(service)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"))
	}))
	defer srv.Close()
	body := []byte(`{}`)
	w := loadgen.Workload{Requests: []loadgen.Request{
		{Session: 1, Body: body},
		{At: 10 * time.Millisecond, Body: body},
		// At says now, but it must wait for turn 1 and then 40 ms.
		{Session: 1, Delay: 40 * time.Millisecond, Body: body},
		{Session: 1, Delay: 20 * time.Millisecond, Body: body},
	}}
	rs, err := loadgen.Run(context.Background(), w, loadgen.Options{Targets: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 4 {
		t.Fatalf("%d results", len(rs))
	}
	for i, r := range rs {
		if !r.OK() || r.Index != i {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
	if end, next := rs[0].Start+rs[0].E2E, rs[2].Start; next < end+40*time.Millisecond {
		t.Errorf("turn 2 sent at %v, turn 1 ended at %v: think time not honoured", next, end)
	}
	if end, next := rs[2].Start+rs[2].E2E, rs[3].Start; next < end+20*time.Millisecond {
		t.Errorf("turn 3 sent at %v, turn 2 ended at %v", next, end)
	}
	if rs[1].Start >= rs[0].Start+rs[0].E2E {
		t.Errorf("the independent request waited for the session (sent at %v)", rs[1].Start)
	}
	// Canceled during a think time: the turns not sent have no result.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(service+10*time.Millisecond, cancel)
	w.Requests[2].Delay = time.Hour
	rs, err = loadgen.Run(ctx, w, loadgen.Options{Targets: []string{srv.URL}})
	if err != nil || len(rs) != 2 || rs[0].Index != 0 || rs[1].Index != 1 {
		t.Fatalf("canceled run: %v, %+v", err, rs)
	}
}

type chatBody struct {
	Model    string `json:"model"`
	Messages []struct {
		Role, Content string
	} `json:"messages"`
	MaxTokens int `json:"max_tokens"`
}

func decode(t *testing.T, b []byte) chatBody {
	t.Helper()
	var c chatBody
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return c
}

// TestConversations: every conversation starts with the shared system
// prompt; each turn resends the previous turn's messages unchanged plus
// that turn's answer (of the length it asked for) and a new question.
func TestConversations(t *testing.T) {
	mk := func() loadgen.Workload {
		return loadgen.Conversations("m", loadgen.ConversationConfig{SystemTokens: 600, StartRate: 2, Duration: 10 * time.Second,
			MinTurns: 2, MaxTurns: 5, UserTokens: loadgen.Range{Min: 20, Max: 80}, AnswerTokens: loadgen.Range{Min: 30, Max: 60},
			ThinkTime: 3 * time.Second, Seed: 3})
	}
	w := mk()
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	if again := mk(); len(again.Requests) != len(w.Requests) || !bytes.Equal(again.Requests[len(w.Requests)-1].Body, w.Requests[len(w.Requests)-1].Body) {
		t.Fatal("not deterministic")
	}
	after := w.After()
	system := decode(t, w.Requests[0].Body).Messages[0].Content
	if len(system) != 600*4+len("You are a helpful assistant. ") {
		t.Fatalf("system prompt of %d bytes", len(system))
	}
	turns := map[int]int{}
	for i, r := range w.Requests {
		c := decode(t, r.Body)
		if c.Messages[0].Role != "system" || c.Messages[0].Content != system {
			t.Fatalf("request %d does not start with the shared system prompt", i)
		}
		turns[r.Session]++
		if after[i] < 0 {
			if len(c.Messages) != 2 || r.Delay != 0 {
				t.Fatalf("first turn %d: %d messages, delay %v", i, len(c.Messages), r.Delay)
			}
			continue
		}
		prev, prevReq := decode(t, w.Requests[after[i]].Body), w.Requests[after[i]]
		if len(c.Messages) != len(prev.Messages)+2 || r.Delay <= 0 {
			t.Fatalf("turn %d: %d messages after %d, delay %v", i, len(c.Messages), len(prev.Messages), r.Delay)
		}
		for k := range prev.Messages {
			if c.Messages[k] != prev.Messages[k] {
				t.Fatalf("turn %d changes message %d of its history", i, k)
			}
		}
		if a := c.Messages[len(prev.Messages)]; a.Role != "assistant" || len(a.Content) != 4*prevReq.MaxTokens {
			t.Fatalf("turn %d: history answer %q of %d bytes for %d tokens", i, a.Role, len(a.Content), prevReq.MaxTokens)
		}
		if !strings.Contains(c.Messages[len(c.Messages)-1].Content, "question") {
			t.Fatalf("turn %d: last message is not a new question", i)
		}
	}
	for s, n := range turns {
		if n < 2 || n > 5 {
			t.Fatalf("session %d has %d turns", s, n)
		}
	}
}

// TestPopulationSkew: with Zipf popularity the top prefix gets about the
// share the law gives it; uniform popularity spreads requests.
func TestPopulationSkew(t *testing.T) {
	count := func(s float64) (top float64, distinct int) {
		w := loadgen.Population("m", loadgen.PopulationConfig{Name: "p", Prefixes: 20, ZipfS: s,
			PrefixTokens: loadgen.Range{Min: 100, Max: 200}, QuestionTokens: loadgen.Range{Min: 10, Max: 10},
			OutputTokens: loadgen.Range{Min: 5, Max: 10}, Arrivals: loadgen.Arrivals{Rate: 200}, Duration: 20 * time.Second, Seed: 1})
		n := map[string]int{}
		for _, r := range w.Requests {
			n[decode(t, r.Body).Messages[0].Content]++
		}
		m := 0
		for _, v := range n {
			m = max(m, v)
		}
		return float64(m) / float64(len(w.Requests)), len(n)
	}
	// 1/H(20, 1.2) ≈ 0.34.
	if top, d := count(1.2); top < 0.30 || top > 0.38 || d < 15 {
		t.Fatalf("Zipf 1.2: top share %.2f over %d prefixes", top, d)
	}
	if top, d := count(0); top > 0.08 || d != 20 {
		t.Fatalf("uniform: top share %.2f over %d prefixes", top, d)
	}
}

// TestArrivalsOnOff: bursty arrivals come at the on rate inside bursts and
// average on/(on+off) of it; Poisson arrivals keep their rate.
func TestArrivalsOnOff(t *testing.T) {
	a := loadgen.Arrivals{Rate: 40, OnMean: 2 * time.Second, OffMean: 6 * time.Second}
	if m := a.MeanRate(); m != 10 {
		t.Fatalf("mean rate %v", m)
	}
	w := loadgen.Population("m", loadgen.PopulationConfig{Name: "b", Prefixes: 1, PrefixTokens: loadgen.Range{Min: 10},
		QuestionTokens: loadgen.Range{Min: 1}, OutputTokens: loadgen.Range{Min: 1}, Arrivals: a, Duration: 600 * time.Second, Seed: 2})
	rate := float64(len(w.Requests)) / 600
	if rate < 7 || rate > 13 {
		t.Fatalf("mean rate %.1f req/s, want about 10", rate)
	}
	// Gaps of more than a second (off periods) hold most of the time.
	var idle time.Duration
	for i := 1; i < len(w.Requests); i++ {
		if g := w.Requests[i].At - w.Requests[i-1].At; g > time.Second {
			idle += g
		} else if g < 0 {
			t.Fatal("arrivals out of order")
		}
	}
	if f := idle.Seconds() / 600; f < 0.55 {
		t.Fatalf("idle %.0f %% of the time, want about 75 %%", 100*f)
	}
}

// TestLongShort: the long share holds and long requests share documents.
func TestLongShort(t *testing.T) {
	w := loadgen.LongShort("m", loadgen.LongShortConfig{Documents: 3, DocumentTokens: loadgen.Range{Min: 1000, Max: 2000}, LongShare: 0.25,
		QuestionTokens: loadgen.Range{Min: 20, Max: 40}, ShortTokens: loadgen.Range{Min: 50, Max: 300},
		LongOutputTokens: loadgen.Range{Min: 10, Max: 20}, ShortOutput: loadgen.Range{Min: 10, Max: 20},
		Arrivals: loadgen.Arrivals{Rate: 50}, Duration: 20 * time.Second, Seed: 4})
	docs := map[string]int{}
	long := 0
	for _, r := range w.Requests {
		c := decode(t, r.Body)
		if c.Messages[0].Role == "system" {
			long++
			docs[c.Messages[0].Content]++
		} else if n := len(c.Messages[0].Content); n < 50*4 || n > 300*4+20 {
			t.Fatalf("short prompt of %d bytes", n)
		}
	}
	if f := float64(long) / float64(len(w.Requests)); f < 0.2 || f > 0.3 || len(docs) != 3 {
		t.Fatalf("long share %.2f over %d documents", f, len(docs))
	}
}

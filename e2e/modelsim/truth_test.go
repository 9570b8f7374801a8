package modelsim

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestCachedPromptTokens: before a prompt is served nothing of it is
// cached; after, every full block but the one holding its last token is,
// and a prompt sharing only its head shares only those blocks. Bad bodies
// and unknown models fail as the API would.
func TestCachedPromptTokens(t *testing.T) {
	f := startFleet(t, FleetConfig{})
	r := f.Replica(0)
	shared := strings.Repeat("abcd", 300) // 300 tokens
	body := func(user string) string {
		return `{"model":"` + testModel + `","messages":[{"role":"system","content":"` + shared + `"},{"role":"user","content":"` + user + `"}],"max_tokens":2}`
	}
	a, b := body(strings.Repeat("q", 400)), body(strings.Repeat("z", 400))
	if n, err := r.CachedPromptTokens([]byte(a)); err != nil || n != 0 {
		t.Fatalf("cold: %d, %v", n, err)
	}
	if resp, out := post(t, r.URL()+"/v1/chat/completions", a); resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, out)
	}
	g, _ := ParseChatRequest([]byte(a))
	tokens := (len(g.Prompt) + 3) / 4
	want := (tokens - 1) / 16 * 16
	if n, err := r.CachedPromptTokens([]byte(a)); err != nil || n != want {
		t.Fatalf("served prompt: %d cached, want %d (%v)", n, want, err)
	}
	// b shares the template head and the system prompt, then differs.
	n, err := r.CachedPromptTokens([]byte(b))
	if err != nil || n < 300 || n > 300+32 {
		t.Fatalf("shared head: %d cached (%v)", n, err)
	}
	// What the API would do with the body, the oracle does too.
	if _, err := r.CachedPromptTokens([]byte(`{"model":`)); err == nil {
		t.Error("bad body accepted")
	}
	if _, err := r.CachedPromptTokens([]byte(`{"model":"nope","prompt":"x"}`)); err == nil {
		t.Error("unknown model accepted")
	}
	if n, err := r.CachedPromptTokens([]byte(`{"model":"` + testModel + `","prompt":"` + shared + `"}`)); err != nil || n != 0 {
		t.Errorf("a completion prompt without the chat template: %d, %v", n, err)
	}
}

// TestLoadAndSubmitted: Load sees a request the moment it is submitted
// (Stats only after the next step); Submitted counts accepted requests.
func TestLoadAndSubmitted(t *testing.T) {
	f := startFleet(t, FleetConfig{Config: Config{TimeScale: 1}})
	r := f.Replica(0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", r.URL()+"/v1/chat/completions",
		strings.NewReader(`{"model":"`+testModel+`","messages":[{"role":"user","content":"x"}],"max_tokens":1000,"stream":true}`))
	go func() {
		if resp, err := http.DefaultClient.Do(req); err == nil {
			// Read the stream until the test ends (cancel): closing it at
			// once cancels the request, which then left the replica before
			// the test looked (7 of 300 runs).
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for r.Submitted() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if r.Submitted() != 1 {
		t.Fatalf("submitted %d", r.Submitted())
	}
	if s := r.Load(); s.Running+s.Waiting != 1 {
		t.Fatalf("load %+v right after the submit", s)
	}
	for r.Load().Running != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if s := r.Load(); s.Running != 1 || s.KVUsage <= 0 {
		t.Fatalf("load %+v while running", s)
	}
}

// TestOverrides: an override changes its replica only; bad overrides fail
// the fleet's start.
func TestOverrides(t *testing.T) {
	f := startFleet(t, FleetConfig{Listen: []string{"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"},
		Overrides: []ReplicaOverride{{}, {KVBlocks: 512, MaxNumSeqs: 4, SlowFactor: 3}}})
	if got := f.Replica(1).Engine().Config(); got.KVBlocks != 512 || got.MaxNumSeqs != 4 {
		t.Fatalf("override not applied: %+v", got)
	}
	for _, i := range []int{0, 2} {
		if got := f.Replica(i).Engine().Config(); got.KVBlocks != 2048 || got.MaxNumSeqs != 16 {
			t.Fatalf("replica %d changed: %+v", i, got)
		}
	}
	m := single(t, scrape(t, f.Replica(1)), "vllm:cache_config_info")
	if labelsOf(m)["num_gpu_blocks"] != "512" {
		t.Fatalf("cache_config_info %v", labelsOf(m))
	}
	if f.Replica(1).cfg.SlowFactor != 3 || f.Replica(0).cfg.SlowFactor != 1 {
		t.Fatalf("slow factors %v, %v", f.Replica(0).cfg.SlowFactor, f.Replica(1).cfg.SlowFactor)
	}
	for _, bad := range [][]ReplicaOverride{{{KVBlocks: -1}}, {{}, {}, {}, {}}} {
		if _, err := StartFleet(context.Background(), FleetConfig{Listen: []string{"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"}, Overrides: bad}); err == nil {
			t.Errorf("overrides %+v accepted", bad)
		}
	}
}

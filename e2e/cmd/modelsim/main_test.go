package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRunServesAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0,127.0.0.1:0", "--time-scale", "0.01", "--engine", "sglang",
			"--lora-modules", "a=/path/a,b", "--log-level", "warn"}, pw, io.Discard)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var urls []string
	for len(urls) < 2 && sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, "http://")
		if !strings.HasPrefix(line, "modelsim replica sim-127.0.0.1-") || i < 0 {
			t.Fatalf("unexpected line %q", line)
		}
		urls = append(urls, line[i:])
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	resp, err := http.Post(urls[1]+"/v1/completions", "application/json", strings.NewReader(`{"model":"b","prompt":"hi","max_tokens":3}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"model":"b"`) {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
	resp, err = http.Get(urls[0] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "sglang:num_queue_reqs") {
		t.Fatal("--engine sglang not applied")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--engine", "tgi"}, {"--address", "::1"}, {"--fail-rate", "2"}, {"--nope"}} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%v: want error", args)
		}
	}
}

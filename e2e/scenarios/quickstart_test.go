package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/e2e/harness"
)

// TestQuickstart runs what `make run` runs — examples/quickstart/run.sh — and
// sends the chat completion it tells the user to try.
func TestQuickstart(t *testing.T) {
	script := filepath.Join(repoRoot(t), "examples", "quickstart", "run.sh")
	p := harness.Start(t, "make-run", "/usr/bin/env", "INFERGATE_BIN="+bins.Dir, "bash", script)
	harness.Eventually(t, 30*time.Second, func() error {
		if p.Exited() {
			t.Fatalf("run.sh exited early:\n%s", p.Logs())
		}
		if !strings.Contains(p.Logs(), "Try a chat completion") {
			return fmt.Errorf("run.sh has not printed the curl yet")
		}
		return nil
	})
	if !strings.Contains(p.Logs(), "curl -si http://127.0.0.1:8080/v1/chat/completions") {
		t.Fatalf("run.sh did not print the curl to try:\n%s", p.Logs())
	}
	// A healthy start says nothing alarming.
	for _, line := range strings.Split(p.Logs(), "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			t.Errorf("make run logged while starting: %s", line)
		}
	}
	body := `{"model":"meta-llama/Llama-3.1-8B-Instruct","messages":[{"role":"user","content":"Hello!"}]}`
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1:8080/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s: %s", resp.Status, out)
	}
	served := resp.Header.Get(servedHeader)
	if !strings.HasPrefix(served, "127.0.0.1") || !strings.HasSuffix(served, ":8000") {
		t.Fatalf("%s = %q, want one of the simulated pods 127.0.0.11-13:8000", servedHeader, served)
	}
	var c struct {
		ID      string `json:"id"`
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(bytes.NewReader(out)).Decode(&c); err != nil || len(c.Choices) == 0 || c.Choices[0].Message.Content == "" {
		t.Fatalf("not a chat completion (%v): %s", err, out)
	}
	// What the README's "Inspecting it" shows works against make run: the
	// default profile (the cost model) explains a pick with every
	// candidate's terms, and the request above is among the decisions.
	out2, code := infergatectl(t, "proxy", "explain", "-d", body)
	if code != 0 {
		t.Fatalf("proxy explain against make run (exit %d):\n%s", code, out2)
	}
	for _, want := range []string{"outcome:     pick", "chosen:      127.0.0.1", "PREFILL", "DECODE", "COST",
		"127.0.0.11:8000", "127.0.0.12:8000", "127.0.0.13:8000"} {
		if !strings.Contains(out2, want) {
			t.Errorf("proxy explain against make run lacks %q:\n%s", want, out2)
		}
	}
	t.Logf("proxy explain against make run:\n%s", out2)
	out2, code = infergatectl(t, "proxy", "decisions")
	if code != 0 || !strings.Contains(out2, "default/llama") || !strings.Contains(out2, served) {
		t.Errorf("proxy decisions against make run (exit %d):\n%s", code, out2)
	}
	t.Logf("proxy decisions against make run:\n%s", out2)
	p.Stop(10 * time.Second)
	if !p.Exited() {
		t.Fatal("run.sh did not stop on SIGTERM")
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

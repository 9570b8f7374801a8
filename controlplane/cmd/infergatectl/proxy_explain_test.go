package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestProxyExplain: the CLI posts the request it is given (body, headers,
// path, port) to /explain and prints the answer as a table, candidates one
// per row with any extra columns the proxy reports, the chosen one marked.
func TestProxyExplain(t *testing.T) {
	var got map[string]any
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/explain" {
			http.NotFound(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &got)
		io.WriteString(w, `{"port":8080,"route":"default/gw/default/chat/0","httpRoute":"default/chat","backend":"default/pool",
			"model":"m","targetModel":"m-lora","priority":5,"outcome":"pick","saturation":0.25,"chosen":"10.0.0.2:8000",
			"promptTokens":12,"outputTokens":40,
			"candidates":[{"address":"10.0.0.1:8000","fresh":true,"waiting":3,"kvCache":0.5,"unseen":0,"inFlight":1,"terms":{"waiting":3,"prefill":1.5,"cost":4.25,"future":7}},
			              {"address":"10.0.0.2:8000","fresh":true,"waiting":0,"kvCache":0.1,"unseen":0.5,"inFlight":0,"terms":{"waiting":0.5,"prefill":0.25,"cost":1.125,"future":8}}]}`)
	}))
	defer admin.Close()
	addr := strings.TrimPrefix(admin.URL, "http://")
	var stdout, stderr bytes.Buffer
	code := run([]string{"proxy", "explain", "--proxy", addr, "-d", `{"model":"m"}`, "-H", "x-gateway-inference-objective: critical",
		"--port", "8080", "--path", "/v1/completions"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if got["body"] != `{"model":"m"}` || got["path"] != "/v1/completions" || got["port"] != float64(8080) ||
		!strings.Contains(jsonOf(got["headers"]), `"X-Gateway-Inference-Objective":["critical"]`) {
		t.Errorf("explain request %v", got)
	}
	out := stdout.String()
	for _, want := range []string{"model:       m → m-lora", "outcome:     pick", "saturation:  0.250",
		"estimates:   prompt ~12 tokens, output ~40 tokens",
		"PREFILL  COST   TERMS.FUTURE", "*  10.0.0.2:8000", "   10.0.0.1:8000  true   3", "1.5      4.25", "(cost terms in seconds"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "TERMS.WAITING") {
		t.Errorf("the terms' inputs are -o json only:\n%s", out)
	}
	for _, args := range [][]string{
		{"proxy", "explain", "--proxy", addr, "-o", "xml"},
		{"proxy", "explain", "--proxy", addr, "-H", "no-colon"},
		{"proxy", "explain", "--proxy", addr, "-d", "@/nonexistent/body.json"},
	} {
		if code := run(args, io.Discard, io.Discard); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestProxyDecisions: the CLI asks /decisions with the pool and limit it
// is given and prints a line per decision (chosen endpoint's cost and the
// runner-up), every candidate with --candidates, the answer itself with
// -o json.
func TestProxyDecisions(t *testing.T) {
	var query string
	at := time.Now().Add(-1500 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/decisions" {
			http.NotFound(w, r)
			return
		}
		query = r.URL.RawQuery
		io.WriteString(w, `[{"pool":"default/pool","at":"`+at+`","requestId":"r1","model":"m","promptTokens":100,"outputTokens":20,
			"chosen":"10.0.0.2:8000","candidates":[
			{"endpoint":"10.0.0.1:8000","waiting":2,"running":1,"kvUsage":0.5,"cachedTokens":0,"fresh":true,"wait":0.5,"prefill":0.1,"decode":0.4,"harm":0.01,"cost":1.01},
			{"endpoint":"10.0.0.2:8000","waiting":0,"running":1,"kvUsage":0.25,"cachedTokens":96,"fresh":true,"wait":0,"prefill":0.005,"decode":0.4,"harm":0,"cost":0.405},
			{"endpoint":"10.0.0.3:8000","waiting":5,"running":4,"kvUsage":0.9,"cachedTokens":0,"fresh":false,"wait":2,"prefill":0.1,"decode":0.5,"harm":0.2,"cost":2.8}]}]`)
	}))
	defer admin.Close()
	addr := strings.TrimPrefix(admin.URL, "http://")
	run1 := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"proxy", "decisions", "--proxy", addr}, args...), &stdout, &stderr); code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, stderr.String())
		}
		return stdout.String()
	}
	out := run1("--pool", "default/pool", "--limit", "5")
	if query != "limit=5&pool=default%2Fpool" {
		t.Errorf("query %q", query)
	}
	for _, want := range []string{"AGE   POOL          REQUEST  MODEL  PROMPT  OUTPUT  CHOSEN         CACHED  COST   RUNNER-UP      +COST",
		"1.5s  default/pool  r1       m      100     20      10.0.0.2:8000  96      0.405  10.0.0.1:8000  0.605"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out = run1("--candidates")
	for _, want := range []string{"pool default/pool  request r1  model m  prompt ~100 tokens  output ~20 tokens  chosen 10.0.0.2:8000",
		"ENDPOINT       FRESH  WAITING  RUNNING  KVUSAGE  CACHED  WAIT  PREFILL  DECODE  HARM  COST",
		"*  10.0.0.2:8000  true   0        1        0.25     96      0     0.005", "   10.0.0.3:8000  false"} {
		if !strings.Contains(out, want) {
			t.Errorf("--candidates output lacks %q:\n%s", want, out)
		}
	}
	if query != "limit=20" {
		t.Errorf("default query %q, want limit=20", query)
	}
	if out := run1("-o", "json", "--limit", "0"); !strings.Contains(out, `"requestId": "r1"`) || query != "" {
		t.Errorf("-o json (query %q):\n%s", query, out)
	}
	for _, args := range [][]string{
		{"proxy", "decisions", "--proxy", addr, "-o", "xml"},
		{"proxy", "decisions", "--proxy", addr, "--limit", "-1"},
	} {
		if code := run(args, io.Discard, io.Discard); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
}

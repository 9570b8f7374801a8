package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// headerFlags collects repeated -H "Name: value" flags.
type headerFlags http.Header

func (h headerFlags) String() string { return fmt.Sprint(http.Header(h)) }

func (h headerFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("%q: want \"Name: value\"", v)
	}
	http.Header(h).Add(strings.TrimSpace(name), strings.TrimSpace(value))
	return nil
}

// explanation mirrors the admin API's /explain answer (the proxy's
// pipeline.Explanation) for the table view; -o json|yaml print the answer
// itself.
type explanation struct {
	Port        uint32   `json:"port"`
	Route       string   `json:"route"`
	HTTPRoute   string   `json:"httpRoute"`
	Backend     string   `json:"backend"`
	Model       string   `json:"model"`
	TargetModel string   `json:"targetModel"`
	Priority    int32    `json:"priority"`
	Outcome     string   `json:"outcome"`
	Reason      string   `json:"reason"`
	Saturation  *float64 `json:"saturation"`
	Chosen      string   `json:"chosen"`
	// The cost model's estimates for the request, or why there are none.
	PromptTokens float64 `json:"promptTokens"`
	OutputTokens float64 `json:"outputTokens"`
	Note         string  `json:"note"`
	Backends     []struct {
		Backend string `json:"backend"`
		Weight  uint32 `json:"weight"`
	} `json:"backends"`
	Candidates []map[string]any `json:"candidates"`
}

// runProxyExplain asks a proxy how it would route and pick a request now
// (POST /explain): nothing reaches a model server.
func runProxyExplain(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("proxy explain", "proxy explain [--proxy ADDR] [-d BODY|@FILE|@-] [-H 'Name: value']... [--path P] [--host H] [--port N] [-o table|json|yaml]", stdout)
	addr := fs.String("proxy", "127.0.0.1:19000", "proxy admin address")
	data := fs.String("d", "", "request body (an OpenAI JSON request), @FILE to read it from a file, @- from stdin")
	path := fs.String("path", "/v1/chat/completions", "request path")
	host := fs.String("host", "", "Host header (selects the listener's hostname; default localhost)")
	method := fs.String("method", "POST", "request method")
	port := fs.Uint("port", 0, "listener port the request arrives on (default: the gateway's only one)")
	headers := headerFlags{}
	fs.Var(headers, "H", "request header \"Name: value\" (repeatable), e.g. -H 'x-gateway-inference-objective: critical'")
	out := fs.String("o", "table", "output: table, json or yaml")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out != "table" && *out != "yaml" && *out != "json" {
		return usageError{fmt.Sprintf("-o %q: want table, json or yaml", *out)}
	}
	if *port > 65535 {
		return usageError{fmt.Sprintf("--port %d: not a port", *port)}
	}
	body, err := readBodyFlag(*data)
	if err != nil {
		return err
	}
	req, err := json.Marshal(map[string]any{"port": *port, "method": *method, "path": *path, "host": *host,
		"headers": http.Header(headers), "body": body})
	if err != nil {
		return err
	}
	answer, err := adminCall(ctx, *addr, http.MethodPost, "explain", req)
	if err != nil {
		return err
	}
	if *out != "table" {
		return writeDoc(stdout, answer, *out)
	}
	var ex explanation
	if err := json.Unmarshal(answer, &ex); err != nil {
		return fmt.Errorf("proxy admin answered something else than an explanation: %w", err)
	}
	return printExplanation(stdout, &ex)
}

// readBodyFlag reads -d: the body itself, @FILE or @- (stdin).
func readBodyFlag(v string) (string, error) {
	if !strings.HasPrefix(v, "@") {
		return v, nil
	}
	var (
		b   []byte
		err error
	)
	if v == "@-" {
		b, err = io.ReadAll(io.LimitReader(os.Stdin, 64<<20))
	} else {
		b, err = os.ReadFile(v[1:])
	}
	if err != nil {
		return "", usageError{fmt.Sprintf("-d %s: %v", v, err)}
	}
	return string(b), nil
}

func printExplanation(w io.Writer, ex *explanation) error {
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-12s %s\n", k+":", v)
		}
	}
	kv("port", fmt.Sprint(ex.Port))
	if ex.Route != "" {
		kv("route", ex.Route+" (HTTPRoute "+ex.HTTPRoute+")")
	}
	if len(ex.Backends) > 1 {
		var parts []string
		for _, b := range ex.Backends {
			parts = append(parts, fmt.Sprintf("%s weight %d", b.Backend, b.Weight))
		}
		kv("backendRefs", strings.Join(parts, ", "))
	}
	kv("backend", ex.Backend)
	model := ex.Model
	if ex.TargetModel != "" && ex.TargetModel != ex.Model {
		model += " → " + ex.TargetModel
	}
	kv("model", model)
	if ex.Backend != "" {
		kv("priority", fmt.Sprint(ex.Priority))
	}
	if ex.Saturation != nil {
		kv("saturation", fmt.Sprintf("%.3f", *ex.Saturation))
	}
	outcome := ex.Outcome
	if ex.Reason != "" {
		outcome += ": " + ex.Reason
	}
	kv("outcome", outcome)
	kv("chosen", ex.Chosen)
	if ex.PromptTokens > 0 {
		kv("estimates", fmt.Sprintf("prompt ~%.0f tokens, output ~%.0f tokens", ex.PromptTokens, ex.OutputTokens))
	}
	kv("note", ex.Note)
	if len(ex.Candidates) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	return candidateTable(w, ex.Candidates, ex.Chosen, explainColumns)
}

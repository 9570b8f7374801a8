package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	debugv1 "github.com/infergate/infergate/proto/debug/v1"
)

// runKVEvents shows the control plane's KV-event subscriptions per pool:
// each model server's connection, last sequence number, gaps, replays,
// resyncs and the blocks indexed.
func runKVEvents(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("kv-events", "kv-events [--gateway NS/NAME] [--server ADDR] [-o table|json|yaml]", stdout)
	var server serverFlags
	server.register(fs)
	gateway := fs.String("gateway", "", "only this gateway's pools (namespace/name)")
	out := fs.String("o", "table", "output: table, json or yaml")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := checkOutput(*out); err != nil {
		return err
	}
	c, closeConn, err := server.dial()
	if err != nil {
		return err
	}
	defer closeConn()
	resp, err := c.GetKVEvents(ctx, &debugv1.GetKVEventsRequest{Gateway: *gateway})
	if err != nil {
		return fmt.Errorf("kv events from %s: %w", server.addr, err)
	}
	if *out != "table" {
		return writeProto(stdout, resp, *out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tSERVER\tEVENTS\tCONNECTED\tLAST SEQ\tBATCHES\tGAPS\tREPLAYS\tRESYNCS\tMALFORMED\tUNKNOWN\tBLOCKS\tLAST EVENT\tERROR")
	for _, p := range resp.GetPools() {
		for _, s := range p.GetServers() {
			last := "-"
			if s.GetLastEvent() != nil {
				last = time.Since(s.GetLastEvent().AsTime()).Round(time.Millisecond).String() + " ago"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", p.GetPool(), s.GetEndpoint(), s.GetEventsAddress(),
				s.GetConnected(), s.GetLastSeq(), s.GetBatches(), s.GetGaps(), s.GetReplays(), s.GetResyncs(), s.GetMalformed(),
				s.GetUnknownBlocks(), s.GetBlocks(), last, dash(s.GetError()))
		}
		if len(p.GetServers()) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t0\t-\t-\n", p.GetPool())
		}
	}
	return tw.Flush()
}

// runKVMatch asks a proxy which model servers of a pool hold how many
// blocks of a prompt, from the KV index the proxy routes with.
func runKVMatch(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("kv-match", "kv-match --pool NAME (--prompt TEXT | --chat TEXT | --body FILE) [--model M] [--proxy ADDR] [-o table|json]", stdout)
	addr := fs.String("proxy", "127.0.0.1:19000", "proxy admin address")
	pool := fs.String("pool", "", "the pool's Backend name, as `infergatectl proxy kv-index` lists it (required)")
	prompt := fs.String("prompt", "", "a completion prompt")
	chat := fs.String("chat", "", "one user message of a chat completion")
	bodyFile := fs.String("body", "", "a file holding the request body as a client sends it")
	model := fs.String("model", "", "model the request targets (adapters key their own blocks)")
	out := fs.String("o", "table", "output: table or json")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *pool == "" {
		return usageError{"--pool is required"}
	}
	if *out != "table" && *out != "json" {
		return usageError{fmt.Sprintf("-o %q: want table or json", *out)}
	}
	var body []byte
	var err error
	switch {
	case *bodyFile != "" && *prompt == "" && *chat == "":
		if body, err = os.ReadFile(*bodyFile); err != nil {
			return usageError{err.Error()}
		}
	case *prompt != "" && *chat == "" && *bodyFile == "":
		body, _ = json.Marshal(map[string]any{"model": *model, "prompt": *prompt})
	case *chat != "" && *prompt == "" && *bodyFile == "":
		body, _ = json.Marshal(map[string]any{"model": *model, "messages": []map[string]string{{"role": "user", "content": *chat}}})
	default:
		return usageError{"give exactly one of --prompt, --chat and --body"}
	}
	u := "http://" + *addr + "/kv-index/match?pool=" + url.QueryEscape(*pool) + "&model=" + url.QueryEscape(*model)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return usageError{err.Error()}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("proxy admin %s: %w", *addr, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("proxy admin %s: %w", *addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("proxy admin %s: %s: %s", *addr, resp.Status, bytes.TrimSpace(raw))
	}
	if *out == "json" {
		_, err = stdout.Write(raw)
		return err
	}
	var m struct {
		PromptBlocks int            `json:"promptBlocks"`
		Servers      map[string]int `json:"servers"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("proxy admin answered: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "SERVER\tBLOCKS (of %d)\n", m.PromptBlocks)
	eps := make([]string, 0, len(m.Servers))
	for ep := range m.Servers {
		eps = append(eps, ep)
	}
	slices.SortFunc(eps, func(a, b string) int { return m.Servers[b] - m.Servers[a] })
	for _, ep := range eps {
		n := strconv.Itoa(m.Servers[ep])
		if m.Servers[ep] < 0 {
			n = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\n", ep, n)
	}
	return tw.Flush()
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"sigs.k8s.io/yaml"
)

// runProxy reads a proxy's admin endpoints: `config` is the compiled config,
// `endpoints` the live picker state (scraped metrics with their age,
// in-flight counts, ejections), `queues` the pools' wait queues (waiting
// requests per priority band, fairness flows, oldest wait, headroom),
// `kv-index` the KV-cache block index per pool (servers and their blocks),
// `explain` how the proxy would route and pick a given request now,
// `decisions` the pools' recent picks with their cost terms.
func runProxy(ctx context.Context, args []string, stdout io.Writer) error {
	const synopsis = "Usage: infergatectl proxy config|endpoints|queues|kv-index|explain|decisions [--proxy ADDR] [-o json|yaml]"
	const want = "want 'proxy config', 'proxy endpoints', 'proxy queues', 'proxy kv-index', 'proxy explain' or 'proxy decisions'"
	if len(args) == 0 {
		return usageError{want}
	}
	switch args[0] {
	case "-h", "--help":
		fmt.Fprintln(stdout, synopsis)
		return nil
	case "explain":
		return runProxyExplain(ctx, args[1:], stdout)
	case "decisions":
		return runProxyDecisions(ctx, args[1:], stdout)
	case "config", "endpoints", "queues", "kv-index":
	default:
		return usageError{want}
	}
	what := args[0]
	fs := newFlags("proxy "+what, "proxy "+what+" [--proxy ADDR] [-o json|yaml]", stdout)
	addr := fs.String("proxy", "127.0.0.1:19000", "proxy admin address")
	out := fs.String("o", "yaml", "output: yaml or json")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *out != "yaml" && *out != "json" {
		return usageError{fmt.Sprintf("-o %q: want yaml or json", *out)}
	}
	body, err := adminCall(ctx, *addr, http.MethodGet, what, nil)
	if err != nil {
		return err
	}
	return writeDoc(stdout, body, *out)
}

// adminCall sends one request to a proxy's admin API and returns the body
// of a 200 answer.
func adminCall(ctx context.Context, addr, method, path string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+"/"+path, rd)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("proxy admin %s: %w", addr, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("proxy admin %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("proxy admin %s/%s: %s: %s", addr, path, resp.Status, bytes.TrimSpace(out))
	}
	return out, nil
}

// writeDoc prints a JSON document from the admin API as YAML or indented
// JSON.
func writeDoc(stdout io.Writer, body []byte, format string) error {
	if format == "yaml" {
		y, err := yaml.JSONToYAML(body)
		if err != nil {
			return fmt.Errorf("proxy admin answered non-JSON: %w", err)
		}
		_, err = stdout.Write(y)
		return err
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, body, "", "  "); err != nil {
		return fmt.Errorf("proxy admin answered non-JSON: %w", err)
	}
	pretty.WriteByte('\n')
	_, err := pretty.WriteTo(stdout)
	return err
}

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
// `kv-index` the KV-cache block index per pool (servers and their blocks).
func runProxy(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "config" && args[0] != "endpoints" && args[0] != "queues" && args[0] != "kv-index") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintln(stdout, "Usage: infergatectl proxy config|endpoints|queues|kv-index [--proxy ADDR] [-o json|yaml]")
			return nil
		}
		return usageError{"want 'proxy config', 'proxy endpoints', 'proxy queues' or 'proxy kv-index'"}
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+*addr+"/"+what, nil)
	if err != nil {
		return usageError{err.Error()}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("proxy admin %s: %w", *addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("proxy admin %s: %w", *addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("proxy admin %s/%s: %s: %s", *addr, what, resp.Status, bytes.TrimSpace(body))
	}
	if *out == "yaml" {
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
	_, err = pretty.WriteTo(stdout)
	return err
}

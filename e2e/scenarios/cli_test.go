package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/e2e/harness"
)

// infergatectl runs the CLI built next to the other binaries and returns
// its output and exit code.
func infergatectl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	path := bins.Path("infergatectl")
	cmd := exec.Command(path, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("infergatectl %v: %v", args, err)
	}
	return out.String(), code
}

// TestInfergatectl: the debug CLI against a running control plane with two
// proxies of one gateway.
func TestInfergatectl(t *testing.T) {
	if _, err := exec.LookPath(bins.Path("infergatectl")); err != nil {
		t.Fatalf("infergatectl not built: %v", err)
	}
	s := startSpine(t)
	ctx := context.Background()
	// A second proxy for the same gateway, on another loopback address.
	admin2 := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	harness.Start(t, "proxy-2", bins.Path("proxy"), "--xds-address", s.xdsAddr, "--gateway", gatewayName,
		"--node-id", "second-proxy", "--listen-address", "127.0.0.2", "--admin-address", admin2)
	harness.WaitHTTP(ctx, t, "http://"+admin2+"/ready", syncTimeout)
	if _, err := s.chat(ctx); err != nil { // traffic, so endpoint state is live
		t.Fatal(err)
	}

	t.Run("proxies lists both, in sync", func(t *testing.T) {
		harness.Eventually(t, syncTimeout, func() error {
			out, code := infergatectl(t, "proxies", "--server", s.xdsAddr)
			if code != 0 {
				return fmt.Errorf("exit %d:\n%s", code, out)
			}
			if !strings.Contains(out, "second-proxy") || strings.Count(out, gatewayName) != 2 || strings.Contains(out, "STALE") {
				return fmt.Errorf("want two synced proxies of %s:\n%s", gatewayName, out)
			}
			return nil
		})
		out, code := infergatectl(t, "proxies", "--server", s.xdsAddr, "-o", "json")
		var doc struct {
			Proxies []struct {
				Gateway string `json:"gateway"`
				Types   []struct {
					TypeURL string `json:"typeUrl"`
					Acked   string `json:"acked"`
				} `json:"types"`
			} `json:"proxies"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || len(doc.Proxies) != 2 || len(doc.Proxies[0].Types) == 0 || doc.Proxies[0].Types[0].Acked == "" {
			t.Fatalf("proxies -o json (exit %d):\n%s", code, out)
		}
	})

	t.Run("snapshot shows what the gateway is served", func(t *testing.T) {
		out, code := infergatectl(t, "snapshot", "--server", s.xdsAddr, "--gateway", gatewayName, "--type", "Route", "-o", "json")
		if code != 0 || !strings.Contains(out, `"default/gw/default/chat/0"`) || strings.Contains(out, "Listener") {
			t.Fatalf("snapshot --type Route (exit %d):\n%s", code, out)
		}
		out, code = infergatectl(t, "snapshot", "--server", s.xdsAddr, "--gateway", "default/nope")
		if code != 1 || !strings.Contains(out, "NotFound") {
			t.Fatalf("snapshot of an unknown gateway: exit %d:\n%s", code, out)
		}
	})

	// Under the default profile (the cost model) lastScore is the latest
	// estimated cost; the terms behind it are what proxy explain and proxy
	// decisions show below.
	t.Run("proxy endpoints shows live metrics with their age and last scores", func(t *testing.T) {
		harness.Eventually(t, syncTimeout, func() error {
			out, code := infergatectl(t, "proxy", "endpoints", "--proxy", s.adminAddr, "-o", "json")
			if code != 0 {
				return fmt.Errorf("exit %d:\n%s", code, out)
			}
			for _, ip := range s.podIPs {
				if !strings.Contains(out, ip) {
					return fmt.Errorf("endpoint %s missing:\n%s", ip, out)
				}
			}
			for _, field := range []string{`"metricsAgeMs"`, `"inFlight"`, `"lastScore"`} {
				if !strings.Contains(out, field) {
					return fmt.Errorf("no %s in:\n%s", field, out)
				}
			}
			return nil
		})
		out, code := infergatectl(t, "proxy", "config", "--proxy", s.adminAddr)
		if code != 0 || !strings.Contains(out, "default/gw") {
			t.Fatalf("proxy config (exit %d):\n%s", code, out)
		}
		// No pool of this gateway has a wait queue: an empty list, not an error.
		if out, code := infergatectl(t, "proxy", "queues", "--proxy", s.adminAddr); code != 0 || out != "[]\n" {
			t.Fatalf("proxy queues (exit %d):\n%s", code, out)
		}
	})

	t.Run("proxy explain shows the route, the pool and every candidate", func(t *testing.T) {
		body := `{"model":"` + model + `","messages":[{"role":"user","content":"hello"}]}`
		out, code := infergatectl(t, "proxy", "explain", "--proxy", s.adminAddr, "-d", body)
		if code != 0 {
			t.Fatalf("proxy explain (exit %d):\n%s", code, out)
		}
		// The default profile is the cost model: the chosen endpoint, the
		// request's estimates and every candidate's cost terms.
		for _, want := range []string{"route:       default/gw/default/chat/0 (HTTPRoute default/chat)", "backend:     default/pool",
			"outcome:     pick", "saturation:", "chosen:      127.0.0.2", "estimates:   prompt ~", "ADDRESS", "WAITING", "KVCACHE",
			"CACHED", "WAIT", "PREFILL", "DECODE", "HARM", "COST", "(cost terms in seconds"} {
			if !strings.Contains(out, want) {
				t.Errorf("proxy explain output lacks %q:\n%s", want, out)
			}
		}
		for _, ip := range s.podIPs {
			if !strings.Contains(out, ip) {
				t.Errorf("candidate %s missing:\n%s", ip, out)
			}
		}
		out, code = infergatectl(t, "proxy", "explain", "--proxy", s.adminAddr, "-d", body, "--path", "/nowhere", "-o", "json")
		if code != 0 || !strings.Contains(out, `"outcome": "no route"`) {
			t.Fatalf("proxy explain of an unrouted path (exit %d):\n%s", code, out)
		}
	})

	t.Run("proxy decisions lists the picks of real requests with their cost terms", func(t *testing.T) {
		ctx := context.Background()
		var served []string
		for range 2 {
			ep, err := s.chat(ctx)
			if err != nil {
				t.Fatal(err)
			}
			served = append(served, ep)
			time.Sleep(60 * time.Millisecond) // more than the ring's pacing: both kept
		}
		out, code := infergatectl(t, "proxy", "decisions", "--proxy", s.adminAddr, "-o", "json", "--pool", "default/pool")
		if code != 0 {
			t.Fatalf("proxy decisions -o json (exit %d):\n%s", code, out)
		}
		var ds []struct {
			Pool, RequestID, Chosen string
			PromptTokens            float64
			Candidates              []struct {
				Endpoint string
				Cost     float64
			}
		}
		if err := json.Unmarshal([]byte(out), &ds); err != nil {
			t.Fatalf("proxy decisions -o json: %v\n%s", err, out)
		}
		if len(ds) < 2 || ds[0].Chosen != served[1] || ds[1].Chosen != served[0] {
			t.Fatalf("decisions %+v, want the last two picks (%v) newest first", ds, served)
		}
		for _, d := range ds[:2] {
			if d.Pool != "default/pool" || d.RequestID == "" || d.PromptTokens <= 0 || len(d.Candidates) != len(s.podIPs) {
				t.Errorf("decision %+v", d)
			}
			for _, c := range d.Candidates {
				if c.Cost <= 0 {
					t.Errorf("candidate %+v without a cost", c)
				}
			}
		}
		out, code = infergatectl(t, "proxy", "decisions", "--proxy", s.adminAddr)
		if code != 0 || !strings.Contains(out, "RUNNER-UP") || !strings.Contains(out, "default/pool") || !strings.Contains(out, served[1]) {
			t.Fatalf("proxy decisions (exit %d):\n%s", code, out)
		}
		out, code = infergatectl(t, "proxy", "decisions", "--proxy", s.adminAddr, "--candidates", "--limit", "1")
		if code != 0 || !strings.Contains(out, "ENDPOINT") || !strings.Contains(out, "PREFILL") {
			t.Fatalf("proxy decisions --candidates (exit %d):\n%s", code, out)
		}
		for _, ip := range s.podIPs {
			if !strings.Contains(out, ip) {
				t.Errorf("candidate %s missing:\n%s", ip, out)
			}
		}
		if out, code := infergatectl(t, "proxy", "decisions", "--proxy", s.adminAddr, "--pool", "default/nope"); code == 0 || !strings.Contains(out, "no pool") {
			t.Errorf("decisions of an unknown pool (exit %d):\n%s", code, out)
		}
	})

	t.Run("translate works offline on the same YAML", func(t *testing.T) {
		out, code := infergatectl(t, "translate", "-f", filepath.Join(s.dir, "fleet.yaml"))
		if code != 0 || !strings.Contains(out, "default/gw/default/chat/0") {
			t.Fatalf("translate (exit %d):\n%s", code, out)
		}
	})
}

package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/infergate/infergate/dataplane/fleetkeys"
	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/e2e/harness"
)

// TestFleetKeysShared: two proxies of one gateway learn each other's
// prefix affinity keys and sends through the control plane. A long prompt
// goes through the first proxy only; the second, which got no request,
// must then plan over its key (its /fleet-keys lists it), and the control
// plane's snapshot dump shows the key it serves. Without the fan-out the
// second proxy could hold no key at all. Then a prompt longer than the
// plan's leading blocks goes through the first proxy, and the second
// proxy's cost model believes the endpoint that served it holds all of it.
func TestFleetKeysShared(t *testing.T) {
	s := startSpine(t)
	ctx := context.Background()
	admin2 := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	harness.Start(t, "proxy-2", bins.Path("proxy"), "--xds-address", s.xdsAddr, "--gateway", gatewayName,
		"--node-id", "second-proxy", "--listen-address", "127.0.0.2", "--admin-address", admin2)
	harness.WaitHTTP(ctx, t, "http://"+admin2+"/ready", syncTimeout)
	// Both proxies must know they are two (a single proxy plans a prompt
	// only at its second request).
	harness.Eventually(t, syncTimeout, func() error {
		for _, a := range []string{s.adminAddr, admin2} {
			got, err := scrapeSchedule(ctx, a)
			if err != nil {
				return err
			}
			if got.Proxies != 2 {
				return fmt.Errorf("proxy %s counts %d proxies, want 2", a, got.Proxies)
			}
		}
		return nil
	})
	_, err := s.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: model,
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage(distinctPrompt(strings.Repeat("You answer questions about the shared handbook. ", 40))),
			openai.UserMessage("What is on page one?"),
		},
		MaxTokens: openai.Int(4),
	})
	if err != nil {
		t.Fatal(err)
	}
	var key string
	harness.Eventually(t, syncTimeout, func() error {
		body, err := httpGet(ctx, "http://"+admin2+"/fleet-keys")
		if err != nil {
			return err
		}
		var pools map[string]struct{ Hot, Once []string }
		if err := json.Unmarshal([]byte(body), &pools); err != nil {
			return err
		}
		for _, p := range pools {
			if len(p.Once)+len(p.Hot) == 1 {
				key = append(p.Once, p.Hot...)[0]
				return nil
			}
		}
		return fmt.Errorf("the second proxy holds no fleet key of the first's prompt: %s", body)
	})
	out, code := infergatectl(t, "snapshot", "--server", s.xdsAddr, "--gateway", gatewayName, "-o", "json")
	if code != 0 {
		t.Fatalf("snapshot (exit %d):\n%s", code, out)
	}
	var dump struct {
		FleetKeys struct {
			Pools []struct {
				Hot, Once []string
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &dump); err != nil {
		t.Fatalf("snapshot dump: %v\n%s", err, out)
	}
	if len(dump.FleetKeys.Pools) != 1 || !slices.Equal(append(dump.FleetKeys.Pools[0].Once, dump.FleetKeys.Pools[0].Hot...), []string{key}) {
		t.Fatalf("snapshot dump's fleet keys: %+v, want one pool with the second proxy's one key %s", dump.FleetKeys, key)
	}
	checkSendsTravel(ctx, t, s.client, s.adminAddr, admin2)
}

// TestFleetAcrossReplicas: two control-plane replicas relay their proxies'
// reports to each other (--fleet-peers; the second lists itself too, as a
// Service's endpoints would, and must not relay to itself), so a proxy
// connected to one replica learns the keys and sends of a proxy connected
// to the other.
func TestFleetAcrossReplicas(t *testing.T) {
	xds2 := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	cpAdmin2 := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	s := startSpineWith(t, spineOptions{timeScale: "0.1", cpArgs: []string{"--fleet-peers", xds2}})
	ctx := context.Background()
	cp2 := harness.Start(t, "controlplane-2", bins.Path("controlplane"), "--config-dir", s.dir, "--xds-address", xds2,
		"--admin-address", cpAdmin2, "--fleet-peers", s.xdsAddr+","+xds2)
	admin2 := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	harness.Start(t, "proxy-2", bins.Path("proxy"), "--xds-address", xds2, "--gateway", gatewayName,
		"--node-id", "second-proxy", "--listen-address", "127.0.0.2", "--admin-address", admin2)
	harness.WaitHTTP(ctx, t, "http://"+admin2+"/ready", syncTimeout)
	// Each replica relays to the other only.
	harness.Eventually(t, syncTimeout, func() error {
		for _, a := range []string{s.cpAdminAddr, cpAdmin2} {
			body, err := httpGet(ctx, "http://"+a+"/metrics")
			if err != nil {
				return err
			}
			if !strings.Contains(body, `infergate_controlplane_fleet_peers{state="connected"} 1`) ||
				!strings.Contains(body, `infergate_controlplane_fleet_peers{state="disconnected"} 0`) {
				return fmt.Errorf("control plane %s does not relay to exactly one peer:\n%s", a, grepLines(body, "fleet_peers"))
			}
		}
		return nil
	})
	if !strings.Contains(cp2.Logs(), "peer address is this replica") {
		t.Error("the second replica did not notice its own address among its peers")
	}
	// Each proxy counts only the proxies of its own replica in file mode:
	// alone there, a proxy plans a prompt (uses its key) at its second
	// request.
	prompt := distinctPrompt(strings.Repeat("Keys travel between replicas. ", 60))
	for range 2 {
		_, err := s.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:     model,
			Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
			MaxTokens: openai.Int(4),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The second replica serves the first proxy's key.
	harness.Eventually(t, syncTimeout, func() error {
		out, code := infergatectl(t, "snapshot", "--server", xds2, "--gateway", gatewayName, "-o", "json")
		if code != 0 {
			return fmt.Errorf("snapshot (exit %d):\n%s", code, out)
		}
		var dump struct {
			FleetKeys struct {
				Pools []struct{ Hot, Once []string }
			}
		}
		if err := json.Unmarshal([]byte(out), &dump); err != nil {
			return err
		}
		if len(dump.FleetKeys.Pools) == 0 || len(dump.FleetKeys.Pools[0].Once)+len(dump.FleetKeys.Pools[0].Hot) == 0 {
			return fmt.Errorf("the second replica serves no key of the first proxy's prompt: %+v", dump.FleetKeys)
		}
		return nil
	})
	checkSendsTravel(ctx, t, s.client, s.adminAddr, admin2)
	checkLoadsTravel(ctx, t, s.adminAddr, admin2)
	body, err := httpGet(ctx, "http://"+cpAdmin2+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(body, "infergate_controlplane_fleet_relayed_reports_received_total 0\n") {
		t.Errorf("the second replica counts no relayed report:\n%s", grepLines(body, "fleet_relayed"))
	}
}

// planCoverTokens is what a proxy believes an endpoint holds of a prompt
// from the fleet keys' plan alone, at most: the leading 32 blocks the
// plan keys on (64 characters, 16 tokens each).
const planCoverTokens = 32 * 16

// checkSendsTravel sends a prompt far longer than the plan's leading
// blocks through client (the proxy with admin address from) and waits
// until the proxy with admin address to — which sent nothing — believes
// the endpoint that served it holds all of it; before the send it
// believed no endpoint held more than the plan covers. The sending proxy
// never gets its own send back.
func checkSendsTravel(ctx context.Context, t *testing.T, client openai.Client, from, to string) {
	t.Helper()
	st, err := fleetState(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 {
		t.Fatalf("proxy %s has %d pools in the exchange, want 1: %+v", to, len(st), st)
	}
	var pool string
	for p := range st {
		pool = p
	}
	before, err := fleetState(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	params := openai.ChatCompletionNewParams{
		Model:     model,
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage(distinctPrompt(strings.Repeat("Every proxy should know where this long prompt went. ", 220)))},
		MaxTokens: openai.Int(4),
	}
	body, err := json.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}
	d, err := fleetMatch(ctx, to, pool, body)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range d.Candidates {
		if c.CachedTokens > planCoverTokens {
			t.Fatalf("before the send, proxy %s believes %s holds %.0f tokens of a prompt nobody sent", to, c.Endpoint, c.CachedTokens)
		}
	}
	var resp *http.Response
	if _, err := client.Chat.Completions.New(ctx, params, option.WithResponseInto(&resp)); err != nil {
		t.Fatal(err)
	}
	served := resp.Header.Get(servedHeader)
	harness.Eventually(t, syncTimeout, func() error {
		d, err := fleetMatch(ctx, to, pool, body)
		if err != nil {
			return err
		}
		for _, c := range d.Candidates {
			if c.Endpoint == served && c.CachedTokens >= d.PromptTokens && d.PromptTokens > 4*planCoverTokens {
				return nil
			}
		}
		return fmt.Errorf("proxy %s does not believe %s holds the %.0f-token prompt sent there: %+v", to, served, d.PromptTokens, d.Candidates)
	})
	after, err := fleetState(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	if got := after[pool].Sends; got.Reported <= before[pool].Sends.Reported || got.Merged != before[pool].Sends.Merged {
		t.Fatalf("sending proxy's counts went from %+v to %+v: want more reported and nothing merged (its own sends never come back)", before[pool].Sends, got)
	}
}

// checkLoadsTravel waits until each of the proxies with the given admin
// addresses has reported its own scrapes of the pool's endpoints and taken
// over some of the other's newer ones (both scrape the same model servers,
// at times of their own).
func checkLoadsTravel(ctx context.Context, t *testing.T, admins ...string) {
	t.Helper()
	harness.Eventually(t, syncTimeout, func() error {
		for _, a := range admins {
			st, err := fleetState(ctx, a)
			if err != nil {
				return err
			}
			for pool, ps := range st {
				if ps.Loads.Reported == 0 || ps.Loads.Adopted == 0 {
					return fmt.Errorf("proxy %s, pool %s: scrapes %+v; want some reported and some of the other proxy's adopted", a, pool, ps.Loads)
				}
			}
		}
		return nil
	})
}

func fleetState(ctx context.Context, admin string) (map[string]fleetkeys.PoolState, error) {
	body, err := httpGet(ctx, "http://"+admin+"/fleet-keys")
	if err != nil {
		return nil, err
	}
	var st map[string]fleetkeys.PoolState
	return st, json.Unmarshal([]byte(body), &st)
}

// fleetMatch asks a proxy's admin API how it would pick for body in pool.
func fleetMatch(ctx context.Context, admin, pool string, body []byte) (*picker.Decision, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+admin+"/fleet-keys/match?pool="+url.QueryEscape(pool), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("match: %s: %s", resp.Status, b)
	}
	var d picker.Decision
	return &d, json.Unmarshal(b, &d)
}

// grepLines returns the lines of s containing sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

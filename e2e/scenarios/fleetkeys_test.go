package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/infergate/infergate/e2e/harness"
)

// TestFleetKeysShared: two proxies of one gateway learn each other's
// prefix affinity keys through the control plane. A long prompt goes
// through the first proxy only; the second, which got no request, must
// then plan over its key (its /fleet-keys lists it), and the control
// plane's snapshot dump shows the key it serves. Without the fan-out the
// second proxy could hold no key at all.
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
}

package scenarios

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"

	"github.com/infergate/infergate/controlplane/status"
	"github.com/infergate/infergate/controlplane/translate"
	"github.com/infergate/infergate/e2e/cluster"
	"github.com/infergate/infergate/e2e/harness"
	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
	"github.com/infergate/infergate/proto/tokenizer/cl100k"
)

// tokenizerPoolYAML is a Gateway routing to a pool whose profile turns KV
// events on with the tokenizer {{.Tokenizer}}.
const tokenizerPoolYAML = kubeGatewayYAML + `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: chat, namespace: {{.NS}}}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: pool
  namespace: {{.NS}}
  annotations:
    infergate.dev/picker-profile: |
      scorers: [{name: cost, weight: 1}]
      kvEvents: {port: 5557, tokenizer: {{.Tokenizer}}}
spec:
  selector: {matchLabels: {app: sim}}
  targetPorts: [{number: {{.PodPort}}}]
`

// TestKubeTokenizerStatus: a pool whose tokenizer file does not load on
// the proxies shows it in its status — the proxies report it to the
// control plane, which puts ConditionProxyProblems on the pool's entry
// for their Gateway — for as long as any live proxy reports it: with two
// proxies both are named, one stopping leaves the other's report, the
// file fixed clears it; an unsupported file brings it back, and a profile
// that no longer names the file clears it again.
func TestKubeTokenizerStatus(t *testing.T) {
	ctx := context.Background()
	c := cluster.StartT(t, cluster.Options{CRDs: []cluster.CRDSet{cluster.GatewayAPI, cluster.InferencePoolV1}})
	const leaseNS, ns = "infergate-system", "kvstatus"
	for _, n := range []string{leaseNS, ns} {
		if err := c.CreateNamespace(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	writeTokenizer := func(data []byte) {
		t.Helper()
		// Write then rename, as a ConfigMap volume update does: a proxy
		// never reads half a file.
		tmp := path + ".new"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	writeTokenizer([]byte(`{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [`)) // cut short

	r := startReplica(t, "cp", c, leaseNS)
	port := harness.FreePort(t, "127.0.0.1")
	vars := map[string]any{"NS": ns, "Port": port, "PodPort": 8000, "Tokenizer": fmt.Sprintf("{path: %q}", path)}
	applyYAML(ctx, t, c, tokenizerPoolYAML, vars)
	proxies := []*kubeProxy{
		startKubeProxy(t, c, leaseNS, r.xds, ns+"/gw", port, "--node-id", "proxy-a"),
		startKubeProxy(t, c, leaseNS, r.xds, ns+"/gw", port, "--node-id", "proxy-b", "--listen-address", "127.0.0.2"),
	}

	// condition returns the pool's ProxyProblems condition for the
	// Gateway (nil: absent) once its PickerProfile condition shows the
	// translation accepted the profile.
	condition := func() (*metav1.Condition, error) {
		pool, _, err := getTyped[infv1.InferencePool](ctx, c, "InferencePool", ns, "pool")
		if err != nil {
			return nil, err
		}
		for _, p := range pool.Status.Parents {
			if string(p.ParentRef.Name) != "gw" {
				continue
			}
			if err := wantCondition(p.Conditions, translate.ConditionPickerProfile, metav1.ConditionTrue, translate.ReasonPickerProfileValid); err != nil {
				return nil, err
			}
			return meta.FindStatusCondition(p.Conditions, status.ConditionProxyProblems), nil
		}
		return nil, fmt.Errorf("no parent entry for gw in %+v", pool.Status.Parents)
	}
	// waitFor waits until the condition is there with a message holding
	// each of want, or gone (no want).
	waitFor := func(what string, want ...string) {
		t.Helper()
		t0 := time.Now()
		eventually(t, func() error {
			cond, err := condition()
			switch {
			case err != nil:
				return err
			case len(want) == 0 && cond != nil:
				return fmt.Errorf("%s: condition still there: %+v", what, cond)
			case len(want) == 0:
				return nil
			case cond == nil:
				return fmt.Errorf("%s: no %s condition yet", what, status.ConditionProxyProblems)
			case cond.Status != metav1.ConditionTrue || cond.Reason != fleetv1.ReasonTokenizerUnusable:
				return fmt.Errorf("%s: condition %+v, want True/%s", what, cond, fleetv1.ReasonTokenizerUnusable)
			}
			for _, w := range want {
				if !strings.Contains(cond.Message, w) {
					return fmt.Errorf("%s: message %q does not say %q", what, cond.Message, w)
				}
			}
			return nil
		})
		t.Logf("%s: %v", what, since(t0))
	}

	waitFor("a file cut short, two proxies", path, "not a tokenizer.json", "prefix matching stays approximate", "(proxies proxy-a, proxy-b)")
	// One proxy goes: the other still reports it.
	proxies[1].proc.Stop(5 * time.Second)
	waitFor("one proxy left", path, "(proxy proxy-a)")

	js, err := cl100k.TokenizerJSON()
	if err != nil {
		t.Fatal(err)
	}
	writeTokenizer(js)
	waitFor("the file fixed")

	// A kind of tokenizer the proxies do not implement.
	writeTokenizer([]byte(`{"model": {"type": "Unigram"}}`))
	waitFor("an unsupported file", path, "only byte-level BPE")
	vars["Tokenizer"] = "{builtin: bytes}"
	applyYAML(ctx, t, c, tokenizerPoolYAML, vars)
	waitFor("the profile no longer names the file")
	if strings.Contains(r.proc.Logs(), "refusing key report") {
		t.Errorf("the control plane refused a proxy's report:\n%s", grepLines(r.proc.Logs(), "fleet"))
	}
}

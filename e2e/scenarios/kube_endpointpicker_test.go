package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/infergate/infergate/e2e/cluster"
	"github.com/infergate/infergate/e2e/cluster/k8sbin"
	"github.com/infergate/infergate/e2e/harness"
)

// pickerFleetYAML: two pools of the same simulated pods, each with its own
// endpoint picker (the Inference Extension's lwepp), one failing closed
// (the default), one open.
const pickerFleetYAML = kubeGatewayYAML + `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: chat, namespace: {{.NS}}}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /closed/}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: closed}]
  - matches: [{path: {type: PathPrefix, value: /open/}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: open}]
{{range .Pools}}---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: {{.Name}}, namespace: {{$.NS}}}
spec:
  selector: {matchLabels: {app: sim}}
  targetPorts: [{number: {{$.PodPort}}}]
  endpointPickerRef: {name: epp-{{.Name}}, port: {number: 9002}, failureMode: {{.Mode}}}
---
apiVersion: v1
kind: Service
metadata: {name: epp-{{.Name}}, namespace: {{$.NS}}}
spec:
  selector: {app: epp-{{.Name}}}
  ports: [{port: 9002, targetPort: {{.GRPCPort}}, appProtocol: http2}]
{{end}}`

type pickerPoolVars struct {
	Name, Mode string
	GRPCPort   int
}

// lweppProc is one running lwepp and how it was started.
type lweppProc struct {
	proc *harness.Process
	args []string
}

// TestKubeEndpointPicker runs the real Inference Extension picker (lwepp,
// built from the module proxy) for two pools on a kube-apiserver: a
// request goes to the endpoint the picker chose (its test header selects
// it), and the proxy reports the served endpoint back to the picker (which
// echoes it in a response header); with
// the picker down the FailOpen pool keeps serving from its own picks and
// the FailClose pool answers 503 with an OpenAI error, until the picker is
// back.
func TestKubeEndpointPicker(t *testing.T) {
	ctx := context.Background()
	lwepp, err := k8sbin.EnsureTool(ctx, k8sbin.Options{Progress: os.Stderr}, k8sbin.LWEPP)
	if err != nil {
		t.Fatal(err)
	}
	c := cluster.StartT(t, cluster.Options{CRDs: []cluster.CRDSet{cluster.GatewayAPI, cluster.InferencePoolV1}})
	const leaseNS, ns = "infergate-system", "picker"
	for _, n := range []string{leaseNS, ns} {
		if err := c.CreateNamespace(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	podIPs := []string{"127.0.0.91", "127.0.0.92", "127.0.0.93"}
	podPort := startSimFleet(ctx, t, podIPs)
	for i, ip := range podIPs {
		if _, err := c.CreatePod(ctx, ns, fmt.Sprintf("sim-%d", i), map[string]string{"app": "sim"}, ip, true); err != nil {
			t.Fatal(err)
		}
	}

	// Each picker listens on every interface (as in its pod), on its own
	// free ports; its pod's IP reaches it there.
	pools := []pickerPoolVars{{Name: "closed", Mode: "FailClose"}, {Name: "open", Mode: "FailOpen"}}
	pickers := map[string]*lweppProc{}
	for i := range pools {
		p := &pools[i]
		p.GRPCPort = harness.FreePort(t, "")
		lp := &lweppProc{args: []string{"--pool-name", p.Name, "--pool-namespace", ns, "--kubeconfig", c.Kubeconfig,
			"--grpc-port", strconv.Itoa(p.GRPCPort), "--grpc-health-port", strconv.Itoa(harness.FreePort(t, "")),
			"--metrics-port", strconv.Itoa(harness.FreePort(t, "")), "--zap-log-level", "error"}}
		lp.proc = harness.Start(t, "lwepp-"+p.Name, lwepp, lp.args...)
		pickers[p.Name] = lp
		if _, err := c.CreatePod(ctx, ns, "epp-"+p.Name, map[string]string{"app": "epp-" + p.Name}, fmt.Sprintf("127.0.0.%d", 101+i), true); err != nil {
			t.Fatal(err)
		}
	}

	r := startReplica(t, "cp", c, leaseNS)
	port := harness.FreePort(t, "127.0.0.1")
	applyYAML(ctx, t, c, pickerFleetYAML, struct {
		NS            string
		Port, PodPort int
		Pools         []pickerPoolVars
	}{ns, port, podPort, pools})
	startKubeProxy(t, c, leaseNS, r.xds, ns+"/gw", port)

	// chat returns the status, the endpoint that served, the one lwepp
	// was told served (it echoes it in a response header) and the error.
	chat := func(pool, pick string) (int, string, string, apiErrorBody, error) {
		body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}],"max_tokens":2}`, model, distinctPrompt("hi"))
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/%s/v1/chat/completions", port, pool), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if pick != "" {
			req.Header.Set("test-epp-endpoint-selection", pick)
		}
		resp, err := (&http.Client{Timeout: requestTimeout}).Do(req)
		if err != nil {
			return 0, "", "", apiErrorBody{}, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var e apiErrorBody
		if resp.StatusCode != http.StatusOK {
			_ = json.Unmarshal(b, &e)
		}
		return resp.StatusCode, resp.Header.Get(servedHeader), resp.Header.Get("x-conformance-test-served-endpoint"), e, nil
	}
	follows := func(pool string) func() error {
		return func() error {
			for _, ip := range podIPs {
				for range 3 {
					status, served, told, e, err := chat(pool, ip)
					if err != nil {
						return err
					}
					if status != http.StatusOK || hostOf(served) != ip {
						return fmt.Errorf("%s: picker chose %s, got %d served by %q (%s)", pool, ip, status, served, e.Error.Message)
					}
					if told != served {
						return fmt.Errorf("%s: the picker was told %q served, the response says %q", pool, told, served)
					}
				}
			}
			return nil
		}
	}

	t.Run("requests go where the picker says", func(t *testing.T) {
		// The first sync (control plane, proxy, pickers' caches) may take
		// longer than a later change on a loaded machine.
		for _, p := range pools {
			harness.Eventually(t, 4*syncTimeout, follows(p.Name))
		}
	})

	t.Run("with the picker down, FailOpen serves and FailClose answers 503", func(t *testing.T) {
		for _, lp := range pickers {
			lp.proc.Kill()
		}
		eventually(t, func() error {
			status, _, _, e, err := chat("closed", podIPs[0])
			if err != nil {
				return err
			}
			if status != http.StatusServiceUnavailable || e.Error.Code != "endpoint_picker_unavailable" || e.Error.Type == "" {
				return fmt.Errorf("FailClose pool answered %d %+v", status, e.Error)
			}
			return nil
		})
		seen := map[string]int{}
		for range 12 {
			status, served, _, e, err := chat("open", podIPs[0])
			if err != nil {
				t.Fatal(err)
			}
			if status != http.StatusOK {
				t.Fatalf("FailOpen pool answered %d: %s", status, e.Error.Message)
			}
			seen[hostOf(served)]++
		}
		t.Logf("FailOpen picks without the picker: %v", seen)
		for h := range seen {
			if h != podIPs[0] && h != podIPs[1] && h != podIPs[2] {
				t.Fatalf("served by %s, not a pool pod", h)
			}
		}
	})

	t.Run("the picker back, requests follow it again", func(t *testing.T) {
		for name, lp := range pickers {
			lp.proc = harness.Start(t, "lwepp-"+name+"-again", lwepp, lp.args...)
		}
		for _, p := range pools {
			harness.Eventually(t, 2*syncTimeout, follows(p.Name))
		}
	})
}

// apiErrorBody is an OpenAI error response.
type apiErrorBody struct {
	Error struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    string `json:"code"`
	} `json:"error"`
}

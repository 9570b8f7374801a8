package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/infergate/infergate/e2e/harness"
)

// manyModelsYAML puts two pools behind one Gateway and routes by the model
// the proxy reads from the body (X-Gateway-Model-Name): model-a and model-b
// to their own pool, "shared" split 50/50 across both pools in one rule,
// and "alias" rewritten to model-a by an InferenceModelRewrite.
const manyModelsYAML = gatewayYAML + `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: models, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1}, headers: [{name: X-Gateway-Model-Name, value: model-a}]}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool-a}]
  - matches: [{path: {type: PathPrefix, value: /v1}, headers: [{name: X-Gateway-Model-Name, value: model-b}]}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool-b}]
  - matches: [{path: {type: PathPrefix, value: /v1}, headers: [{name: X-Gateway-Model-Name, value: shared}]}]
    backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: pool-a, weight: 50}
    - {group: inference.networking.k8s.io, kind: InferencePool, name: pool-b, weight: 50}
  - matches: [{path: {type: PathPrefix, value: /v1}, headers: [{name: X-Gateway-Model-Name, value: alias}]}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool-a}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool-a, namespace: default}
spec:
  selector: {matchLabels: {app: sim-a}}
  targetPorts: [{number: {{.PodPort}}}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool-b, namespace: default}
spec:
  selector: {matchLabels: {app: sim-b}}
  targetPorts: [{number: {{.PodPort}}}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: alias, namespace: default}
spec:
  poolRef: {name: pool-a}
  rules:
  - matches: [{model: {value: alias}}]
    targets: [{modelRewrite: model-a}]
---
apiVersion: v1
kind: Pod
metadata: {name: sim-a, namespace: default, labels: {app: sim-a}}
spec: {containers: [{name: sim, image: modelsim}]}
status:
  phase: Running
  podIP: {{.IPA}}
  conditions: [{type: Ready, status: "True"}]
---
apiVersion: v1
kind: Pod
metadata: {name: sim-b, namespace: default, labels: {app: sim-b}}
spec: {containers: [{name: sim, image: modelsim}]}
status:
  phase: Running
  podIP: {{.IPB}}
  conditions: [{type: Ready, status: "True"}]
`

// TestGatewayAPIManyModels: many models behind one Gateway, routed by the
// body's model through X-Gateway-Model-Name header matches, a rule split
// across two pools, a model rewrite whose responses (JSON and every SSE
// chunk) name the client's model, and the aggregated /v1/models.
func TestGatewayAPIManyModels(t *testing.T) {
	ipA, ipB := "127.0.0.41", "127.0.0.42"
	podPort := harness.FreePortOn(t, ipA, ipB)
	gwPort := harness.FreePort(t, "127.0.0.1")
	xdsAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	adminAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	cpAdmin := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	dir := t.TempDir()
	writeFile(t, dir, "models.yaml", render(t, manyModelsYAML, map[string]any{
		"GatewayPort": gwPort, "PodPort": podPort, "IPA": ipA, "IPB": ipB}))

	addrA, addrB := fmt.Sprintf("%s:%d", ipA, podPort), fmt.Sprintf("%s:%d", ipB, podPort)
	harness.Start(t, "sim-a", bins.Path("modelsim"), "--listen", addrA, "--served-model-name", "model-a,shared", "--time-scale", "0.05")
	harness.Start(t, "sim-b", bins.Path("modelsim"), "--listen", addrB, "--served-model-name", "model-b,shared", "--time-scale", "0.05")
	for _, a := range []string{addrA, addrB} {
		harness.WaitHTTP(context.Background(), t, "http://"+a+"/health", syncTimeout)
	}
	harness.Start(t, "controlplane", bins.Path("controlplane"), "--config-dir", dir, "--xds-address", xdsAddr, "--admin-address", cpAdmin)
	harness.Start(t, "proxy", bins.Path("proxy"), "--xds-address", xdsAddr, "--gateway", gatewayName,
		"--listen-address", "127.0.0.1", "--admin-address", adminAddr)
	harness.WaitHTTP(context.Background(), t, "http://"+adminAddr+"/ready", syncTimeout)

	client := openai.NewClient(option.WithBaseURL(fmt.Sprintf("http://127.0.0.1:%d/v1", gwPort)),
		option.WithAPIKey("unused"), option.WithMaxRetries(0), option.WithRequestTimeout(requestTimeout))
	ctx := context.Background()
	chat := func(model string) (served, respModel string, err error) {
		var resp *http.Response
		c, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:     model,
			Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
			MaxTokens: openai.Int(4),
		}, option.WithResponseInto(&resp))
		if err != nil {
			return "", "", err
		}
		return resp.Header.Get(servedHeader), c.Model, nil
	}

	t.Run("each model to its own pool", func(t *testing.T) {
		for model, want := range map[string]string{"model-a": addrA, "model-b": addrB} {
			for range 5 {
				served, got, err := chat(model)
				if err != nil {
					t.Fatalf("%s: %v", model, err)
				}
				if served != want || got != model {
					t.Fatalf("%s served by %s (want %s), response model %q", model, served, want, got)
				}
			}
		}
	})
	t.Run("one rule split across two pools", func(t *testing.T) {
		counts := map[string]int{}
		for range 60 {
			served, _, err := chat("shared")
			if err != nil {
				t.Fatal(err)
			}
			counts[served]++
		}
		// 50/50 over 60 requests: each side well inside 10..50.
		if counts[addrA] < 10 || counts[addrB] < 10 || counts[addrA]+counts[addrB] != 60 {
			t.Fatalf("split %v", counts)
		}
	})
	t.Run("rewrite restores the client's model", func(t *testing.T) {
		served, got, err := chat("alias")
		if err != nil {
			t.Fatal(err)
		}
		if served != addrA || got != "alias" {
			t.Fatalf("alias served by %s, response model %q", served, got)
		}
		stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model:         "alias",
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
			MaxTokens:     openai.Int(6),
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		chunks, usage := 0, int64(0)
		for stream.Next() {
			c := stream.Current()
			chunks++
			if c.Model != "alias" {
				t.Fatalf("chunk %d names model %q", chunks, c.Model)
			}
			usage += c.Usage.CompletionTokens
		}
		if err := stream.Err(); err != nil || chunks < 2 || usage == 0 {
			t.Fatalf("stream: %d chunks, usage %d, %v", chunks, usage, err)
		}
	})
	t.Run("unknown model has no route", func(t *testing.T) {
		_, _, err := chat("nobody-serves-this")
		if !isStatus(err, 404) {
			t.Fatalf("want 404, got %v", err)
		}
	})
	t.Run("models aggregated", func(t *testing.T) {
		body, err := httpGet(ctx, fmt.Sprintf("http://127.0.0.1:%d/v1/models", gwPort))
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Data []struct{ ID string } `json:"data"`
		}
		if err := json.Unmarshal([]byte(body), &list); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range list.Data {
			ids = append(ids, d.ID)
		}
		if got := strings.Join(ids, ","); got != "alias,model-a,model-b,shared" {
			t.Fatalf("models %q", got)
		}
	})
	t.Run("metrics count tokens per model", func(t *testing.T) {
		body, err := httpGet(ctx, "http://"+adminAddr+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(body, `inference_objective_output_tokens_count{model_name="alias",target_model_name="model-a"}`) ||
			!strings.Contains(body, `inference_pool_ready_pods{name="default/pool-a"} 1`) {
			t.Fatalf("metrics lack per-model tokens or pool gauges")
		}
	})
}

package scenarios

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/infergate/infergate/controlplane/xdsauth"
	"github.com/infergate/infergate/e2e/cluster"
	"github.com/infergate/infergate/e2e/harness"
)

// kubeResources maps the kinds the kube scenarios apply to their resources.
var kubeResources = map[string]schema.GroupVersionResource{
	"GatewayClass":          {Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gatewayclasses"},
	"Gateway":               {Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"},
	"HTTPRoute":             {Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"},
	"ListenerSet":           {Group: "gateway.networking.k8s.io", Version: "v1", Resource: "listenersets"},
	"ReferenceGrant":        {Group: "gateway.networking.k8s.io", Version: "v1beta1", Resource: "referencegrants"},
	"InferencePool":         {Group: "inference.networking.k8s.io", Version: "v1", Resource: "inferencepools"},
	"InferenceObjective":    {Group: "inference.networking.x-k8s.io", Version: "v1alpha2", Resource: "inferenceobjectives"},
	"InferenceModelRewrite": {Group: "inference.networking.x-k8s.io", Version: "v1alpha2", Resource: "inferencemodelrewrites"},
	"InferenceModel":        {Group: "inference.networking.x-k8s.io", Version: "v1alpha2", Resource: "inferencemodels"},
	"LegacyInferencePool":   {Group: "inference.networking.x-k8s.io", Version: "v1alpha2", Resource: "inferencepools"},
	"Service":               {Version: "v1", Resource: "services"},
}

const e2eManager = "e2e"

// applyYAML server-side-applies every document of a (templated) manifest,
// the way `kubectl apply --server-side` does.
func applyYAML(ctx context.Context, t testing.TB, c *cluster.Cluster, tmpl string, data any) {
	t.Helper()
	if err := applyManifest(ctx, c, string(render(t, tmpl, data))); err != nil {
		t.Fatal(err)
	}
}

// applyManifest is applyYAML returning the error, for use off the test's
// goroutine.
func applyManifest(ctx context.Context, c *cluster.Cluster, manifest string) error {
	for _, doc := range strings.Split(manifest, "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			return fmt.Errorf("decode manifest: %w\n%s", err, doc)
		}
		kind := u.GetKind()
		if kind == "InferencePool" && strings.HasPrefix(u.GetAPIVersion(), "inference.networking.x-k8s.io/") {
			kind = "LegacyInferencePool"
		}
		gvr, ok := kubeResources[kind]
		if !ok {
			return fmt.Errorf("no resource known for kind %s", kind)
		}
		_, err := c.Dynamic.Resource(gvr).Namespace(u.GetNamespace()).Apply(ctx, u.GetName(), u,
			metav1.ApplyOptions{FieldManager: e2eManager, Force: true})
		if err != nil {
			return fmt.Errorf("apply %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	return nil
}

func deleteObject(ctx context.Context, t testing.TB, c *cluster.Cluster, kind, ns, name string) {
	t.Helper()
	if err := c.Dynamic.Resource(kubeResources[kind]).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete %s %s/%s: %v", kind, ns, name, err)
	}
}

// getTyped reads an object into its Go type (T's json tags decide).
func getTyped[T any](ctx context.Context, c *cluster.Cluster, kind, ns, name string) (*T, *unstructured.Unstructured, error) {
	u, err := c.Dynamic.Resource(kubeResources[kind]).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	v := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, v); err != nil {
		return nil, nil, err
	}
	return v, u, nil
}

// wantCondition checks one condition's status and reason, as `kubectl get
// -o yaml` shows them.
func wantCondition(conds []metav1.Condition, typ string, status metav1.ConditionStatus, reason string) error {
	c := meta.FindStatusCondition(conds, typ)
	if c == nil {
		return fmt.Errorf("no %s condition in %+v", typ, conds)
	}
	if c.Status != status || c.Reason != reason {
		return fmt.Errorf("%s = %s/%s (%q), want %s/%s", typ, c.Status, c.Reason, c.Message, status, reason)
	}
	if c.LastTransitionTime.IsZero() {
		return fmt.Errorf("%s has no lastTransitionTime", typ)
	}
	return nil
}

// kubeProxy is one proxy process serving one Gateway.
type kubeProxy struct {
	proc   *harness.Process
	admin  string
	client openai.Client
}

// startKubeProxy starts a proxy the way a provisioned one runs: TLS to the
// control plane trusting the CA from its Secret, authenticated with a token
// of the Gateway's own ServiceAccount. extra flags override the defaults
// (the last of a flag given twice counts), e.g. another --listen-address
// for a second proxy of the Gateway.
func startKubeProxy(t *testing.T, c *cluster.Cluster, leaseNS, xdsAddr, gateway string, port int, extra ...string) *kubeProxy {
	t.Helper()
	ctx := context.Background()
	p := &kubeProxy{admin: fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))}
	p.proc = harness.Start(t, "proxy "+gateway, bins.Path("proxy"), append([]string{
		"--xds-ca-file", xdsCAFile(ctx, t, c, leaseNS),
		"--xds-token-file", proxyToken(ctx, t, c, gateway, xdsauth.DefaultAudience),
		"--xds-address", xdsAddr, "--gateway", gateway,
		"--listen-address", "127.0.0.1", "--admin-address", p.admin, "--drain-timeout", "2s"}, extra...)...)
	p.client = openai.NewClient(
		option.WithBaseURL(fmt.Sprintf("http://127.0.0.1:%d/v1", port)),
		option.WithAPIKey("unused"),
		option.WithMaxRetries(0),
		option.WithRequestTimeout(requestTimeout),
	)
	return p
}

// chat sends one chat completion and returns the endpoint that served it.
func (p *kubeProxy) chat(ctx context.Context) (string, error) {
	return p.chatModel(ctx, model)
}

// chatModel sends one chat completion asking for model name m.
func (p *kubeProxy) chatModel(ctx context.Context, m string) (string, error) {
	var resp *http.Response
	c, err := p.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:     m,
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage(distinctPrompt("Say hello."))},
		MaxTokens: openai.Int(4),
	}, option.WithResponseInto(&resp))
	if err != nil {
		return "", err
	}
	if len(c.Choices) == 0 {
		return "", fmt.Errorf("empty completion %+v", c)
	}
	return resp.Header.Get(servedHeader), nil
}

// servedBy sends n requests and returns the pod IPs that served them.
func (p *kubeProxy) servedBy(ctx context.Context, n int) (map[string]int, error) {
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		served, err := p.chat(ctx)
		if err != nil {
			return seen, err
		}
		seen[hostOf(served)]++
	}
	return seen, nil
}

// config returns the proxy's compiled config as served by its admin API.
func (p *kubeProxy) config(ctx context.Context) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.admin+"/config", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("/config: status %d: %s", resp.StatusCode, b)
	}
	return string(b), err
}

// replica is one control-plane process in Kubernetes mode.
type replica struct {
	name  string
	xds   string
	admin string
	args  []string
	proc  *harness.Process
}

// startReplica starts a control-plane replica in Kubernetes mode with its
// production defaults (TLS from a Secret, token auth) unless extra flags
// say otherwise.
func startReplica(t testing.TB, name string, c *cluster.Cluster, leaseNS string, extra ...string) *replica {
	t.Helper()
	r := &replica{
		name:  name,
		xds:   fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1")),
		admin: fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1")),
	}
	r.args = []string{
		"--kubeconfig", c.Kubeconfig, "--xds-address", r.xds, "--debounce", "20ms",
		"--admin-address", r.admin,
		"--leader-election-namespace", leaseNS,
		// Short lease timings keep the failover test quick; a clean
		// shutdown releases the Lease anyway.
		"--leader-election-lease-duration", "4s",
		"--leader-election-renew-deadline", "3s",
		"--leader-election-retry-period", "250ms",
	}
	r.args = append(r.args, extra...)
	r.restart(t)
	return r
}

func (r *replica) restart(t testing.TB) {
	t.Helper()
	r.proc = harness.Start(t, r.name, bins.Path("controlplane"), r.args...)
}

func (r *replica) leads() bool {
	return strings.Contains(r.proc.Logs(), "became leader")
}

// startSimFleet runs one simulator process serving model on every pod IP
// at one shared port (loopback "pods"), waits for them and returns the
// port.
func startSimFleet(ctx context.Context, t *testing.T, podIPs []string) int {
	t.Helper()
	podPort := harness.FreePortOn(t, podIPs...)
	listen := make([]string, len(podIPs))
	for i, ip := range podIPs {
		listen[i] = fmt.Sprintf("%s:%d", ip, podPort)
	}
	harness.Start(t, "modelsim", bins.Path("modelsim"), "--listen", strings.Join(listen, ","), "--model", model, "--time-scale", "0.1")
	for _, l := range listen {
		harness.WaitHTTP(ctx, t, "http://"+l+"/health", syncTimeout)
	}
	return podPort
}

func eventually(t testing.TB, f func() error) {
	t.Helper()
	harness.Eventually(t, syncTimeout, f)
}

func since(t0 time.Time) time.Duration {
	return time.Since(t0).Round(time.Millisecond)
}

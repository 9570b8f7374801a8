package scenarios

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/infergate/infergate/controlplane/apis/inferencealpha"
	"github.com/infergate/infergate/controlplane/provision"
	"github.com/infergate/infergate/controlplane/status"
	"github.com/infergate/infergate/controlplane/translate"
	"github.com/infergate/infergate/controlplane/xdsauth"
	"github.com/infergate/infergate/e2e/cluster"
	"github.com/infergate/infergate/e2e/harness"
	"github.com/infergate/infergate/proto/xdsclient"
)

const kubeController = "infergate.dev/gateway-controller"

// kubeGatewayYAML is the GatewayClass and a Gateway "gw" in {{.NS}}
// listening on {{.Port}}, for fixtures to append their routes and pools to.
const kubeGatewayYAML = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: infergate}
spec: {controllerName: infergate.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: {{.NS}}}
spec:
  gatewayClassName: infergate
  listeners: [{name: http, protocol: HTTP, port: {{.Port}}}]
---
`

// kubeFleetYAML is a Gateway with one route to an InferencePool in one
// namespace; {{.NS}} names everything after the namespace so two fleets can
// be told apart in a proxy's config.
const kubeFleetYAML = kubeGatewayYAML + `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: chat, namespace: {{.NS}}}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1/chat}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool-{{.NS}}}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool-{{.NS}}, namespace: {{.NS}}}
spec:
  selector: {matchLabels: {app: sim-{{.NS}}}}
  targetPorts: [{number: {{.PodPort}}}]
`

// badRoutesYAML holds routes with invalid backendRefs, and a pool in another
// namespace that a route may only use once a ReferenceGrant allows it.
const badRoutesYAML = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: missing, namespace: {{.NS}}}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1/missing}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: nope}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wrongkind, namespace: {{.NS}}}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1/wrongkind}}]
    backendRefs: [{group: "", kind: ConfigMap, name: cm}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: shared, namespace: {{.Other}}}
spec:
  selector: {matchLabels: {app: sim-{{.NS}}}}
  targetPorts: [{number: {{.PodPort}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: xns, namespace: {{.NS}}}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1/xns}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: shared, namespace: {{.Other}}}]
`

const grantYAML = `apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: routes-from-{{.NS}}, namespace: {{.Other}}}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: {{.NS}}}]
  to: [{group: inference.networking.k8s.io, kind: InferencePool}]
`

const afterFailoverRouteYAML = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: after-failover, namespace: {{.NS}}}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1/after}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool-{{.NS}}}]
`

// modelsYAML gives gateway a's pool an objective, a rewrite of the client
// model name "alias" and legacy InferenceModels (two claiming "legacy-chat":
// the older wins), each resolving to the model the simulator serves.
const modelsYAML = `apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: interactive, namespace: {{.NS}}}
spec: {priority: 10, poolRef: {name: pool-{{.NS}}}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: alias, namespace: {{.NS}}}
spec:
  poolRef: {name: pool-{{.NS}}}
  rules:
  - matches: [{model: {value: alias}}]
    targets: [{modelRewrite: {{.Model}}, weight: 100}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: legacy-chat, namespace: {{.NS}}}
spec:
  modelName: legacy-chat
  criticality: Critical
  poolRef: {group: inference.networking.k8s.io, kind: InferencePool, name: pool-{{.NS}}}
  targetModels: [{name: {{.Model}}, weight: 100}]
`

const duplicateModelYAML = `apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: legacy-chat-copy, namespace: {{.NS}}}
spec:
  modelName: legacy-chat
  poolRef: {group: inference.networking.k8s.io, kind: InferencePool, name: pool-{{.NS}}}
  targetModels: [{name: other-model}]
`

// legacyPoolYAML routes gateway b's /v1/completions to a v0.5.1
// InferencePool, whose status starts as the CRD's "kind: Status, name:
// default" placeholder. Its endpoint picker Service has no pods: the pool
// fails open, the proxies pick.
const legacyPoolYAML = `apiVersion: v1
kind: Service
metadata: {name: epp, namespace: {{.NS}}}
spec: {ports: [{port: 9002}]}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: legacy, namespace: {{.NS}}}
spec:
  selector: {app: sim-{{.NS}}}
  targetPortNumber: {{.PodPort}}
  extensionRef: {name: epp, failureMode: FailOpen}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: legacy, namespace: {{.NS}}}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1/completions}}]
    backendRefs: [{group: inference.networking.x-k8s.io, kind: InferencePool, name: legacy}]
`

// profileTypoYAML adds a pool whose picker profile has a typo, and a route
// with a new rule to the fleet's good pool next to one to the typo'd pool.
const profileTypoYAML = `apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: typo
  namespace: {{.NS}}
  annotations:
    infergate.dev/picker-profile: |
      scorers: [{name: queue, weight: 2}, {name: prefix-cach, weight: 3}]
spec:
  selector: {matchLabels: {app: sim-{{.NS}}}}
  targetPorts: [{number: {{.PodPort}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: isolation, namespace: {{.NS}}}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1/completions}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool-{{.NS}}}]
  - matches: [{path: {type: PathPrefix, value: /v1/typo}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: typo}]
`

type fleetVars struct {
	NS, Other     string
	Port, PodPort int
	Model         string
}

// TestKubeGateway runs the control plane against a real kube-apiserver: two
// replicas with leader election, two Gateways each with its own proxy,
// simulated model-server pods whose readiness the test drives.
func TestKubeGateway(t *testing.T) {
	ctx := context.Background()
	// Processes started inside subtests must outlive them: start them on
	// the top-level test, whose cleanup runs last.
	top := t
	c := cluster.StartT(t, cluster.Options{})
	t.Logf("cluster up in %v", c.StartupTime.Round(time.Millisecond))
	const leaseNS = "infergate-system"
	for _, ns := range []string{leaseNS, "kube-a", "kube-b", "kube-x"} {
		if err := c.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}

	// One simulated fleet; pods are loopback addresses on a shared port.
	podIPs := []string{"127.0.0.41", "127.0.0.42", "127.0.0.43", "127.0.0.44"}
	podPort := startSimFleet(ctx, t, podIPs)

	replicas := []*replica{startReplica(t, "cp-1", c, leaseNS), startReplica(t, "cp-2", c, leaseNS)}
	for _, r := range replicas {
		eventually(t, func() error {
			if !strings.Contains(r.proc.Logs(), "informer caches synced") {
				return fmt.Errorf("%s: caches not synced", r.name)
			}
			return nil
		})
	}
	a := fleetVars{NS: "kube-a", Other: "kube-x", Port: harness.FreePort(t, "127.0.0.1"), PodPort: podPort, Model: model}
	b := fleetVars{NS: "kube-b", Port: harness.FreePort(t, "127.0.0.1"), PodPort: podPort}
	var proxyA, proxyB *kubeProxy

	t.Run("apply then proxy serves chat from the pool's pods", func(t *testing.T) {
		t0 := time.Now()
		applyYAML(ctx, t, c, kubeFleetYAML, a)
		for i, ip := range podIPs[:2] {
			if _, err := c.CreatePod(ctx, a.NS, fmt.Sprintf("a-%d", i), map[string]string{"app": "sim-kube-a"}, ip, true); err != nil {
				t.Fatal(err)
			}
		}
		proxyA = startKubeProxy(top, c, leaseNS, replicas[0].xds, a.NS+"/gw", a.Port)
		eventually(t, func() error { _, err := proxyA.chat(ctx); return err })
		t.Logf("TIMING apply → proxy serving (proxy start included): %v", since(t0))
		seen, err := proxyA.servedBy(ctx, 12)
		if err != nil {
			t.Fatal(err)
		}
		for h := range seen {
			if h != podIPs[0] && h != podIPs[1] {
				t.Fatalf("served by %s, not a pool pod (%v)", h, seen)
			}
		}
	})
	if proxyA == nil {
		t.FailNow()
	}

	t.Run("one pool's bad picker profile does not hold back another route's change", func(t *testing.T) {
		// One apply: a pool whose profile names a plugin that does not
		// exist, and a new route rule to the good pool. The control plane
		// reports the typo on that pool and sends the default profile, so
		// the proxy takes the whole snapshot — before, it NACKed it and the
		// new rule never reached it.
		t0 := time.Now()
		applyYAML(ctx, t, c, profileTypoYAML, a)
		completion := func() error {
			body := `{"model":"` + model + `","prompt":"Say hello.","max_tokens":2}`
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/v1/completions", a.Port), strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("POST /v1/completions: %d %s", resp.StatusCode, b)
			}
			return nil
		}
		eventually(t, completion)
		t.Logf("TIMING new rule next to a bad profile → served: %v", since(t0))
		eventually(t, func() error {
			p, _, err := getTyped[infv1.InferencePool](ctx, c, "InferencePool", a.NS, "typo")
			if err != nil {
				return err
			}
			for _, ps := range p.Status.Parents {
				if string(ps.ParentRef.Name) != "gw" || string(ps.ControllerName) != kubeController {
					continue
				}
				if err := wantCondition(ps.Conditions, "Accepted", metav1.ConditionTrue, "Accepted"); err != nil {
					return err
				}
				if err := wantCondition(ps.Conditions, translate.ConditionPickerProfile, metav1.ConditionFalse, translate.ReasonPickerProfileInvalid); err != nil {
					return err
				}
				if msg := meta.FindStatusCondition(ps.Conditions, translate.ConditionPickerProfile).Message; !strings.Contains(msg, `"prefix-cach"`) {
					return fmt.Errorf("condition message does not name the typo: %q", msg)
				}
				return nil
			}
			return fmt.Errorf("pool typo has no parent for gw: %+v", p.Status.Parents)
		})
		// The typo'd pool is in the proxy's config, with the default profile
		// the control plane sent: the proxy had nothing to refuse (it would
		// log the refusal and run the default itself).
		cfg, err := proxyA.config(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(cfg, "inferencepool/kube-a/typo") {
			t.Fatalf("the typo pool is not in the proxy's config:\n%s", cfg)
		}
		if logs := proxyA.proc.Logs(); strings.Contains(logs, "picker profile refused") {
			t.Fatalf("the control plane sent the proxy the bad profile:\n%s", logs)
		}
		if _, err := proxyA.chat(ctx); err != nil {
			t.Fatalf("the existing route stopped serving: %v", err)
		}
		// Later steps count the gateway's routes.
		deleteObject(ctx, t, c, "HTTPRoute", a.NS, "isolation")
		deleteObject(ctx, t, c, "InferencePool", a.NS, "typo")
	})

	t.Run("proxy follows pods scaling up and down", func(t *testing.T) {
		t0 := time.Now()
		if _, err := c.CreatePod(ctx, a.NS, "a-2", map[string]string{"app": "sim-kube-a"}, podIPs[2], true); err != nil {
			t.Fatal(err)
		}
		eventually(t, func() error {
			seen, err := proxyA.servedBy(ctx, 12)
			if err == nil && seen[podIPs[2]] == 0 {
				err = fmt.Errorf("new pod %s not used yet: %v", podIPs[2], seen)
			}
			return err
		})
		t.Logf("TIMING pod added → served: %v", since(t0))
		avoids := func(ip string) func() error {
			return func() error {
				seen, err := proxyA.servedBy(ctx, 12)
				if err == nil && seen[ip] > 0 {
					err = fmt.Errorf("still served by %s: %v", ip, seen)
				}
				return err
			}
		}
		if _, err := c.SetPodReady(ctx, a.NS, "a-0", false); err != nil {
			t.Fatal(err)
		}
		eventually(t, avoids(podIPs[0]))
		if err := c.TerminatePod(ctx, a.NS, "a-1"); err != nil {
			t.Fatal(err)
		}
		eventually(t, avoids(podIPs[1]))
		if err := c.DeletePod(ctx, a.NS, "a-1"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.SetPodReady(ctx, a.NS, "a-0", true); err != nil {
			t.Fatal(err)
		}
		eventually(t, func() error {
			seen, err := proxyA.servedBy(ctx, 16)
			if err == nil && (seen[podIPs[0]] == 0 || seen[podIPs[1]] > 0) {
				err = fmt.Errorf("want a-0 back and a-1 gone: %v", seen)
			}
			return err
		})
	})

	t.Run("Ready proxy pods set the proxy count the proxies scrape by", func(t *testing.T) {
		// Stand-ins for the provisioned proxy pods of kube-a/gw (no kubelet
		// runs them). The one real proxy's stream counts 1; the pods raise
		// the count every control-plane replica publishes.
		countIs := func(n int) func() error {
			return func() error {
				got, err := scrapeSchedule(ctx, proxyA.admin)
				if err == nil && got.Proxies != n {
					err = fmt.Errorf("proxy scrapes as one of %d proxies (interval %s), want %d", got.Proxies, got.Interval, n)
				}
				return err
			}
		}
		eventually(t, countIs(1))
		names := []string{"gw-proxy-0", "gw-proxy-1", "gw-proxy-2"}
		for i, name := range names {
			if _, err := c.CreatePod(ctx, a.NS, name, provision.SelectorLabels("gw"), fmt.Sprintf("127.0.0.%d", 71+i), true); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, countIs(3))
		if _, err := c.SetPodReady(ctx, a.NS, names[0], false); err != nil {
			t.Fatal(err)
		}
		eventually(t, countIs(2))
		for _, name := range names {
			if err := c.DeletePod(ctx, a.NS, name); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, countIs(1))
	})

	t.Run("status of class, gateway, route and pool", func(t *testing.T) {
		eventually(t, func() error {
			gc, _, err := getTyped[gwv1.GatewayClass](ctx, c, "GatewayClass", "", "infergate")
			if err != nil {
				return err
			}
			return wantCondition(gc.Status.Conditions, "Accepted", metav1.ConditionTrue, "Accepted")
		})
		eventually(t, func() error {
			gw, _, err := getTyped[gwv1.Gateway](ctx, c, "Gateway", a.NS, "gw")
			if err != nil {
				return err
			}
			if err := wantCondition(gw.Status.Conditions, "Accepted", metav1.ConditionTrue, "Accepted"); err != nil {
				return err
			}
			if err := wantCondition(gw.Status.Conditions, "Programmed", metav1.ConditionTrue, "Programmed"); err != nil {
				return err
			}
			if len(gw.Status.Listeners) != 1 || gw.Status.Listeners[0].AttachedRoutes != 1 {
				return fmt.Errorf("listeners %+v, want one with attachedRoutes 1", gw.Status.Listeners)
			}
			return wantCondition(gw.Status.Listeners[0].Conditions, "Accepted", metav1.ConditionTrue, "Accepted")
		})
		eventually(t, func() error {
			return routeParent(ctx, c, a.NS, "chat", "ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs")
		})
		eventually(t, func() error { return poolParent(ctx, c, a.NS, "pool-kube-a", a.NS, true) })

		applyYAML(ctx, t, c, badRoutesYAML, a)
		for _, want := range []struct{ route, reason string }{
			{"missing", "BackendNotFound"}, {"wrongkind", "InvalidKind"}, {"xns", "RefNotPermitted"},
		} {
			eventually(t, func() error {
				if err := routeParent(ctx, c, a.NS, want.route, "Accepted", metav1.ConditionTrue, "Accepted"); err != nil {
					return err
				}
				return routeParent(ctx, c, a.NS, want.route, "ResolvedRefs", metav1.ConditionFalse, want.reason)
			})
		}
		applyYAML(ctx, t, c, grantYAML, a)
		eventually(t, func() error {
			return routeParent(ctx, c, a.NS, "xns", "ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs")
		})
		eventually(t, func() error { return poolParent(ctx, c, a.Other, "shared", a.NS, true) })

		// The route goes away: the pool it used loses our parent entry.
		deleteObject(ctx, t, c, "HTTPRoute", a.NS, "xns")
		eventually(t, func() error { return poolParent(ctx, c, a.Other, "shared", a.NS, false) })
		deleteObject(ctx, t, c, "HTTPRoute", a.NS, "missing")
		deleteObject(ctx, t, c, "HTTPRoute", a.NS, "wrongkind")
		eventually(t, func() error {
			gw, _, err := getTyped[gwv1.Gateway](ctx, c, "Gateway", a.NS, "gw")
			if err == nil && gw.Status.Listeners[0].AttachedRoutes != 1 {
				err = fmt.Errorf("attachedRoutes %d, want 1", gw.Status.Listeners[0].AttachedRoutes)
			}
			return err
		})
	})

	t.Run("two gateways, each proxy gets only its own resources", func(t *testing.T) {
		applyYAML(ctx, t, c, kubeFleetYAML, b)
		if _, err := c.CreatePod(ctx, b.NS, "b-0", map[string]string{"app": "sim-kube-b"}, podIPs[3], true); err != nil {
			t.Fatal(err)
		}
		proxyB = startKubeProxy(top, c, leaseNS, replicas[1].xds, b.NS+"/gw", b.Port)
		eventually(t, func() error {
			seen, err := proxyB.servedBy(ctx, 4)
			if err == nil && seen[podIPs[3]] != 4 {
				err = fmt.Errorf("gateway b served by %v, want only %s", seen, podIPs[3])
			}
			return err
		})
		cfgA, err := proxyA.config(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cfgB, err := proxyB.config(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, leak := range []string{"pool-kube-b", podIPs[3]} {
			if strings.Contains(cfgA, leak) {
				t.Errorf("proxy of gateway a has %q in its config", leak)
			}
		}
		for _, leak := range []string{"pool-kube-a", podIPs[0], podIPs[2]} {
			if strings.Contains(cfgB, leak) {
				t.Errorf("proxy of gateway b has %q in its config", leak)
			}
		}
		if !strings.Contains(cfgA, "pool-kube-a") || !strings.Contains(cfgB, "pool-kube-b") {
			t.Errorf("a proxy lacks its own pool:\nA: %.400s\nB: %.400s", cfgA, cfgB)
		}
	})
	if proxyB == nil {
		t.FailNow()
	}

	t.Run("objectives, rewrites and legacy models reach the proxy", func(t *testing.T) {
		applyYAML(ctx, t, c, modelsYAML, a)
		for _, m := range []string{"alias", "legacy-chat"} {
			eventually(t, func() error { _, err := proxyA.chatModel(ctx, m); return err })
		}
		cfg, err := proxyA.config(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(cfg, "inferenceobjective/kube-a/interactive") {
			t.Errorf("objective missing from the proxy's config: %.600s", cfg)
		}
		applyYAML(ctx, t, c, duplicateModelYAML, a)
		for _, want := range []struct{ kind, name, reason string }{
			{"InferenceObjective", "interactive", "Accepted"},
			{"InferenceModelRewrite", "alias", "Accepted"},
			{"InferenceModel", "legacy-chat", "Accepted"},
			{"InferenceModel", "legacy-chat-copy", "ModelNameInUse"},
		} {
			eventually(t, func() error {
				obj, _, err := getTyped[struct {
					Status struct {
						Conditions []metav1.Condition `json:"conditions"`
					} `json:"status"`
				}](ctx, c, want.kind, a.NS, want.name)
				if err != nil {
					return err
				}
				st := metav1.ConditionTrue
				if want.reason != "Accepted" {
					st = metav1.ConditionFalse
				}
				if err := wantCondition(obj.Status.Conditions, "Accepted", st, want.reason); err != nil {
					return fmt.Errorf("%s %s: %w", want.kind, want.name, err)
				}
				return nil
			})
		}
		// The losing duplicate does not change what legacy-chat serves.
		if _, err := proxyA.chatModel(ctx, "legacy-chat"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("legacy pool: our parent replaces the CRD's placeholder and leaves with the route", func(t *testing.T) {
		applyYAML(ctx, t, c, legacyPoolYAML, b)
		legacyParents := func() ([]inferencealpha.PoolStatus, error) {
			p, _, err := getTyped[inferencealpha.InferencePool](ctx, c, "LegacyInferencePool", b.NS, "legacy")
			if err != nil {
				return nil, err
			}
			return p.Status.Parents, nil
		}
		eventually(t, func() error {
			ps, err := legacyParents()
			if err != nil {
				return err
			}
			if len(ps) != 1 || ps[0].GatewayRef.Name != "gw" {
				return fmt.Errorf("parents %+v, want only gateway gw", ps)
			}
			return wantCondition(ps[0].Conditions, "Accepted", metav1.ConditionTrue, "Accepted")
		})
		_, err := proxyB.client.Completions.New(ctx, openai.CompletionNewParams{
			Model: openai.CompletionNewParamsModel(model), Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("hi")},
			MaxTokens: openai.Int(4),
		})
		if err != nil {
			t.Fatalf("completion through the legacy pool: %v", err)
		}
		deleteObject(ctx, t, c, "HTTPRoute", b.NS, "legacy")
		eventually(t, func() error {
			ps, err := legacyParents()
			if err != nil {
				return err
			}
			if len(ps) != 1 || ps[0].GatewayRef.Name != "default" {
				return fmt.Errorf("parents %+v, want the default placeholder back", ps)
			}
			return nil
		})
	})

	t.Run("a proxy NACK shows up as an Event and a condition on its Gateway", func(t *testing.T) {
		var lead *replica
		for _, r := range replicas {
			if r.leads() {
				lead = r
			}
		}
		if lead == nil {
			t.Fatal("no replica leads")
		}
		// A simulated proxy of gateway a that rejects every complete state.
		dial, err := xdsclient.SecureDialOptions(xdsCAFile(ctx, t, c, leaseNS), "",
			proxyToken(ctx, t, c, a.NS+"/gw", xdsauth.DefaultAudience))
		if err != nil {
			t.Fatal(err)
		}
		nackCtx, stopNacking := context.WithCancel(ctx)
		cl := xdsclient.New(xdsclient.Config{
			Addr: lead.xds, NodeID: "rejecting-proxy", Gateway: a.NS + "/gw", DialOptions: dial,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Handler: xdsclient.HandlerFunc(func(r xdsclient.Resources) error {
				if _, ok := r.Complete(); !ok {
					return nil
				}
				return errors.New("synthetic rejection for the test")
			}),
		})
		done := make(chan struct{})
		go func() { defer close(done); _ = cl.Run(nackCtx) }()
		defer func() { stopNacking(); <-done }()

		gatewayRejection := func() (*metav1.Condition, error) {
			gw, _, err := getTyped[gwv1.Gateway](ctx, c, "Gateway", a.NS, "gw")
			if err != nil {
				return nil, err
			}
			return meta.FindStatusCondition(gw.Status.Conditions, status.ConditionConfigRejected), nil
		}
		eventually(t, func() error {
			cond, err := gatewayRejection()
			if err != nil {
				return err
			}
			if cond == nil || cond.Status != metav1.ConditionTrue || !strings.Contains(cond.Message, "rejecting-proxy") || !strings.Contains(cond.Message, "synthetic rejection") {
				return fmt.Errorf("gateway condition %s = %+v", status.ConditionConfigRejected, cond)
			}
			return nil
		})
		eventually(t, func() error {
			list, err := c.Clientset.CoreV1().Events(a.NS).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, e := range list.Items {
				if e.Type == "Warning" && e.Reason == status.ReasonConfigRejected && e.InvolvedObject.Kind == "Gateway" &&
					e.InvolvedObject.Name == "gw" && strings.Contains(e.Message, "synthetic rejection") {
					return nil
				}
			}
			return fmt.Errorf("no NACK event among %d", len(list.Items))
		})
		// The rejecting proxy goes away: the condition follows.
		stopNacking()
		<-done
		eventually(t, func() error {
			cond, err := gatewayRejection()
			if err == nil && cond != nil {
				err = fmt.Errorf("condition still present: %+v", cond)
			}
			return err
		})
		if _, err := proxyA.chat(ctx); err != nil {
			t.Fatalf("the real proxy stopped serving: %v", err)
		}
	})

	t.Run("leader fails over, status continues, proxies keep serving", func(t *testing.T) {
		var lead, other *replica
		eventually(t, func() error {
			l0, l1 := replicas[0].leads(), replicas[1].leads()
			switch {
			case l0 && !l1:
				lead, other = replicas[0], replicas[1]
			case l1 && !l0:
				lead, other = replicas[1], replicas[0]
			default:
				return fmt.Errorf("want exactly one leader, got cp-1 %v cp-2 %v", l0, l1)
			}
			return nil
		})
		if strings.Contains(other.proc.Logs(), "statuses written") {
			t.Fatalf("%s wrote status without leading", other.name)
		}
		if !strings.Contains(other.proc.Logs(), "another replica leads") {
			t.Fatalf("%s does not say another replica leads", other.name)
		}
		holder := leaseHolder(ctx, t, c, leaseNS)
		t.Logf("leader %s holds the Lease as %s", lead.name, holder)

		// Load on both proxies throughout.
		proxies := []*kubeProxy{proxyA, proxyB, proxyA, proxyB}
		load := harness.StartLoad(ctx, len(proxies), func(w int) error { _, err := proxies[w].chat(ctx); return err })
		time.Sleep(500 * time.Millisecond)

		t0 := time.Now()
		lead.proc.Stop(10 * time.Second)
		stopped := since(t0)
		eventually(t, func() error {
			if h := leaseHolder(ctx, t, c, leaseNS); h == holder || h == "" {
				return fmt.Errorf("lease still held by %q", h)
			}
			if !other.leads() {
				return errors.New("survivor has not logged leadership yet")
			}
			return nil
		})
		t.Logf("TIMING leader SIGTERM → exited %v, → other replica leads %v", stopped, since(t0))

		applyYAML(ctx, t, c, afterFailoverRouteYAML, b)
		eventually(t, func() error {
			return routeParent(ctx, c, b.NS, "after-failover", "Accepted", metav1.ConditionTrue, "Accepted")
		})
		t.Logf("TIMING leader SIGTERM → new route's status written by the new leader %v", since(t0))
		time.Sleep(500 * time.Millisecond)
		ok, failed, firstErr := load.Stop()
		if failed > 0 {
			t.Fatalf("%d of %d requests failed during failover; first: %v", failed, failed+ok, firstErr)
		}
		t.Logf("%d requests, none failed, during failover", ok)

		// The old leader comes back as a follower; its proxy reconnects.
		lead.restart(top)
		eventually(t, func() error {
			if !strings.Contains(lead.proc.Logs(), "another replica leads") {
				return errors.New("restarted replica has not seen the leader")
			}
			return nil
		})
		if lead.leads() {
			t.Fatalf("restarted %s took leadership from a live leader", lead.name)
		}
	})

	t.Run("deleting the route gives 404 and drops the pool's parent", func(t *testing.T) {
		deleteObject(ctx, t, c, "HTTPRoute", a.NS, "chat")
		eventually(t, func() error {
			_, err := proxyA.chat(ctx)
			if !isStatus(err, http.StatusNotFound) {
				return fmt.Errorf("got %v, want 404", err)
			}
			return nil
		})
		eventually(t, func() error { return poolParent(ctx, c, a.NS, "pool-kube-a", a.NS, false) })
		if _, err := proxyB.chat(ctx); err != nil {
			t.Fatalf("the other gateway stopped serving: %v", err)
		}
	})
}

// routeParent checks the condition of our parent entry on an HTTPRoute.
func routeParent(ctx context.Context, c *cluster.Cluster, ns, name, typ string, status metav1.ConditionStatus, reason string) error {
	r, _, err := getTyped[gwv1.HTTPRoute](ctx, c, "HTTPRoute", ns, name)
	if err != nil {
		return err
	}
	for _, p := range r.Status.Parents {
		if p.ControllerName == kubeController && string(p.ParentRef.Name) == "gw" {
			if err := wantCondition(p.Conditions, typ, status, reason); err != nil {
				return fmt.Errorf("route %s/%s: %w", ns, name, err)
			}
			return nil
		}
	}
	return fmt.Errorf("route %s/%s has no parent entry of ours: %+v", ns, name, r.Status.Parents)
}

// poolParent checks whether the pool has our Accepted parent entry for the
// Gateway gwNS/gw (present) or none at all (!present).
func poolParent(ctx context.Context, c *cluster.Cluster, ns, name, gwNS string, present bool) error {
	p, _, err := getTyped[infv1.InferencePool](ctx, c, "InferencePool", ns, name)
	if err != nil {
		return err
	}
	for _, ps := range p.Status.Parents {
		if string(ps.ControllerName) != kubeController || string(ps.ParentRef.Name) != "gw" || string(ps.ParentRef.Namespace) != gwNS {
			continue
		}
		if !present {
			return fmt.Errorf("pool %s/%s still lists gateway %s/gw: %+v", ns, name, gwNS, ps)
		}
		if err := wantCondition(ps.Conditions, "Accepted", metav1.ConditionTrue, "Accepted"); err != nil {
			return err
		}
		return wantCondition(ps.Conditions, "ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs")
	}
	if present {
		return fmt.Errorf("pool %s/%s has no parent for gateway %s/gw: %+v", ns, name, gwNS, p.Status.Parents)
	}
	return nil
}

func leaseHolder(ctx context.Context, t *testing.T, c *cluster.Cluster, ns string) string {
	t.Helper()
	l, err := c.Clientset.CoordinationV1().Leases(ns).Get(ctx, "infergate-controlplane", metav1.GetOptions{})
	if err != nil {
		return ""
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

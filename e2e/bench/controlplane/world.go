package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/infergate/infergate/e2e/cluster"
)

var (
	gatewayClasses = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gatewayclasses"}
	gateways       = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}
	httpRoutes     = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	inferencePools = schema.GroupVersionResource{Group: "inference.networking.k8s.io", Version: "v1", Resource: "inferencepools"}
)

const (
	controllerName    = "infergate.dev/gateway-controller"
	profileAnnotation = "infergate.dev/picker-profile"
	benchHeader       = "x-bench"
)

// world names the objects of the benchmark: Gateway g lives in namespace
// ns(g) with pools pool-0… and routes r-0…, route i sending to pool
// i % pools; pod j of pool k is p-k-j with a unique address.
type world struct {
	cfg config
	c   *cluster.Cluster
}

func (w *world) ns(g int) string          { return fmt.Sprintf("gw-%02d", g) }
func (w *world) gateway(g int) string     { return w.ns(g) + "/gw" }
func (w *world) podName(k, j int) string  { return fmt.Sprintf("p-%d-%d", k, j) }
func (w *world) routeName(i int) string   { return fmt.Sprintf("r-%d", i) }
func (w *world) poolName(k int) string    { return fmt.Sprintf("pool-%d", k) }
func (w *world) routeCount() int          { return w.cfg.gateways * w.cfg.routesPerGateway }
func (w *world) poolCount() int           { return w.cfg.gateways * w.cfg.poolsPerGateway }
func (w *world) podCount() int            { return w.poolCount() * w.cfg.podsPerPool }
func (w *world) endpointsPerGateway() int { return w.cfg.poolsPerGateway * w.cfg.podsPerPool }

// podIP is unique per pod: 10.g.k.j+1 (pods per pool ≤ 250).
func (w *world) podIP(g, k, j int) string { return fmt.Sprintf("10.%d.%d.%d", g, k, j+1) }

// routeName in the snapshot: "<gw-ns>/<gw-name>/<route-ns>/<route-name>/<rule>".
func (w *world) routeResource(g, i int) string {
	return fmt.Sprintf("%s/%s/%s/0", w.gateway(g), w.ns(g), w.routeName(i))
}

// poolResource is a pool's Backend (and Endpoints) resource name.
func (w *world) poolResource(g, k int) string {
	return fmt.Sprintf("%s/inferencepool/%s/%s", w.gateway(g), w.ns(g), w.poolName(k))
}

func profile(queueWeight int) string {
	return fmt.Sprintf("scorers: [{name: queue, weight: %d}, {name: kv-cache, weight: 2}, {name: prefix-cache, weight: 3}]\n", queueWeight)
}

func (w *world) routeObject(g, i int, headerValue string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]any{"name": w.routeName(i), "namespace": w.ns(g)},
		"spec": map[string]any{
			"parentRefs": []any{map[string]any{"name": "gw"}},
			"rules": []any{map[string]any{
				"matches": []any{map[string]any{"path": map[string]any{"type": "PathPrefix", "value": "/" + w.routeName(i)}}},
				"filters": []any{map[string]any{"type": "RequestHeaderModifier",
					"requestHeaderModifier": map[string]any{"set": []any{map[string]any{"name": benchHeader, "value": headerValue}}}}},
				"backendRefs": []any{map[string]any{"group": "inference.networking.k8s.io", "kind": "InferencePool",
					"name": w.poolName(i % w.cfg.poolsPerGateway)}},
			}},
		},
	}}
}

func (w *world) poolObject(g, k, queueWeight int) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
		"metadata": map[string]any{"name": w.poolName(k), "namespace": w.ns(g),
			"annotations": map[string]any{profileAnnotation: profile(queueWeight)}},
		"spec": map[string]any{
			"selector":    map[string]any{"matchLabels": map[string]any{"app": w.poolName(k)}},
			"targetPorts": []any{map[string]any{"number": int64(8000)}},
		},
	}}
}

// create fills the API server; progress is reported through done.
func (w *world) create(ctx context.Context, workers int, progress func(string, int)) error {
	c := w.c
	if _, err := c.Dynamic.Resource(gatewayClasses).Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
		"metadata": map[string]any{"name": "infergate"},
		"spec":     map[string]any{"controllerName": controllerName},
	}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	for g := range w.cfg.gateways {
		if err := c.CreateNamespace(ctx, w.ns(g)); err != nil {
			return err
		}
	}
	if err := c.CreateNamespace(ctx, "noise"); err != nil {
		return err
	}
	type job func() error
	run := func(what string, jobs []job) error {
		var (
			next, done atomic.Int64
			first      error
			mu         sync.Mutex
			wg         sync.WaitGroup
		)
		for range workers {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= len(jobs) || ctx.Err() != nil {
						return
					}
					if err := jobs[i](); err != nil {
						mu.Lock()
						if first == nil {
							first = err
						}
						mu.Unlock()
						return
					}
					if n := done.Add(1); n%2000 == 0 {
						progress(what, int(n))
					}
				}
			})
		}
		wg.Wait()
		if first == nil {
			first = ctx.Err()
		}
		progress(what, int(done.Load()))
		return first
	}
	var jobs []job
	for g := range w.cfg.gateways {
		jobs = append(jobs, func() error {
			_, err := c.Dynamic.Resource(gateways).Namespace(w.ns(g)).Create(ctx, &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
				"metadata": map[string]any{"name": "gw", "namespace": w.ns(g)},
				"spec": map[string]any{"gatewayClassName": "infergate",
					"listeners": []any{map[string]any{"name": "http", "protocol": "HTTP", "port": int64(8080)}}},
			}}, metav1.CreateOptions{})
			return err
		})
		for k := range w.cfg.poolsPerGateway {
			jobs = append(jobs, func() error {
				_, err := c.Dynamic.Resource(inferencePools).Namespace(w.ns(g)).Create(ctx, w.poolObject(g, k, 1), metav1.CreateOptions{})
				return err
			})
		}
		for i := range w.cfg.routesPerGateway {
			jobs = append(jobs, func() error {
				_, err := c.Dynamic.Resource(httpRoutes).Namespace(w.ns(g)).Create(ctx, w.routeObject(g, i, "0"), metav1.CreateOptions{})
				return err
			})
		}
	}
	if err := run("gateways, pools, routes", jobs); err != nil {
		return err
	}
	jobs = jobs[:0]
	for g := range w.cfg.gateways {
		for k := range w.cfg.poolsPerGateway {
			for j := range w.cfg.podsPerPool {
				jobs = append(jobs, func() error {
					_, err := c.CreatePod(ctx, w.ns(g), w.podName(k, j), map[string]string{"app": w.poolName(k)}, w.podIP(g, k, j), true)
					return err
				})
			}
		}
	}
	if err := run("pods", jobs); err != nil {
		return err
	}
	jobs = jobs[:0]
	secretData := map[string][]byte{"release": []byte(strings.Repeat("x", 16<<10))}
	for i := range w.cfg.noiseSecrets {
		jobs = append(jobs, func() error {
			_, err := c.Clientset.CoreV1().Secrets("noise").Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("release-%d", i), Namespace: "noise"}, Data: secretData}, metav1.CreateOptions{})
			return err
		})
	}
	cmData := map[string]string{"config.yaml": strings.Repeat("y", 4<<10)}
	for i := range w.cfg.noiseConfigMaps {
		jobs = append(jobs, func() error {
			_, err := c.Clientset.CoreV1().ConfigMaps("noise").Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("config-%d", i), Namespace: "noise"}, Data: cmData}, metav1.CreateOptions{})
			return err
		})
	}
	return run("unrelated secrets and configmaps", jobs)
}

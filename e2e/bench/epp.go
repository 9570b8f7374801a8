package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/infergate/infergate/e2e/cluster"
	"github.com/infergate/infergate/e2e/cluster/k8sbin"
	"github.com/infergate/infergate/e2e/harness"
	"github.com/infergate/infergate/proto/freeport"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// eppName is the strategy running the Inference Extension's reference
// endpoint picker.
const eppName = "epp"

// The reference picker's intervals at model time: it refreshes endpoint
// metrics every 50 ms (ours scrapes at the same rate) and treats them as
// stale after 2 s. Both are scaled like the workload.
const (
	eppRefresh   = 50 * time.Millisecond
	eppStaleness = 2 * time.Second
)

// registerEPP adds the real reference picker: EPP v1.5.0 built from the
// module proxy, with its default plugin configuration, watching an envtest
// kube-apiserver that holds the cell's InferencePool and one Pod per
// simulated server, asked by the proxy over ext_proc.
func registerEPP(r *Registry) {
	e := &eppRuns{cells: map[*Env]*eppCell{}}
	r.Add(Strategy{Name: eppName, Kind: Baseline, Proxies: 1, Start: e.start, Configure: e.configure,
		About: "the Inference Extension's reference picker itself (`epp` v1.5.0, default plugins: queue ×2, KV ×2, prefix ×3; metrics every 50 ms model time) on an envtest kube-apiserver, asked by the proxy over ext_proc (TLS) for every request; its pods are loopback addresses forwarded to the simulated servers"})
}

// eppRuns holds, per cell, what Start set up for Configure.
type eppRuns struct {
	mu    sync.Mutex
	cells map[*Env]*eppCell
}

// eppCell is one cell's picker and the pod addresses of its servers.
type eppCell struct {
	picker string            // "127.0.0.1:port" of the picker's ext_proc server
	pods   map[string]string // server address → pod address
}

// start brings up the cell's kube-apiserver, pods and picker. The picker
// builds its endpoints from pod IPs and the pool's target port, so each
// simulated server gets a loopback address of its own on one shared port,
// forwarded to the server's real address.
func (e *eppRuns) start(ctx context.Context, env *Env) (stop func(), err error) {
	var stops []func()
	// cleanup, not the named result: every error return sets that to nil
	// before the deferred call runs.
	cleanup := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		e.mu.Lock()
		delete(e.cells, env)
		e.mu.Unlock()
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	bin, err := k8sbin.EnsureTool(ctx, k8sbin.Options{}, k8sbin.EPP)
	if err != nil {
		return nil, err
	}
	c, err := cluster.Start(ctx, cluster.Options{CRDs: []cluster.CRDSet{cluster.InferencePoolV1, cluster.InferenceAlpha},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	stops = append(stops, func() { _ = c.Stop() })

	servers := env.Fleet.Addrs()
	ips, port, err := podAddresses(len(servers))
	if err != nil {
		return nil, err
	}
	cell := &eppCell{pods: map[string]string{}}
	const ns = "bench"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		return nil, err
	}
	for i, s := range servers {
		pod := net.JoinHostPort(ips[i], strconv.Itoa(port))
		f, err := harness.Forward(pod, s)
		if err != nil {
			return nil, err
		}
		stops = append(stops, f.Close)
		cell.pods[s] = pod
		if _, err := c.CreatePod(ctx, ns, fmt.Sprintf("server-%d", i), map[string]string{"app": "sim"}, ips[i], true); err != nil {
			return nil, err
		}
	}
	if err := createEPPObjects(ctx, c, ns, port); err != nil {
		return nil, err
	}

	grpcPort, healthPort, metricsPort, err := freePorts3()
	if err != nil {
		return nil, err
	}
	scale := func(d time.Duration) string { return scaled(d, env.TimeScale).String() }
	proc, err := harness.Launch(io.Discard, []string{"KUBECONFIG=" + c.Kubeconfig}, bin,
		"--pool-name", "pool", "--pool-namespace", ns,
		"--grpc-port", strconv.Itoa(grpcPort), "--grpc-health-port", strconv.Itoa(healthPort), "--metrics-port", strconv.Itoa(metricsPort),
		"--metrics-endpoint-auth=false", "--zap-log-level", "error",
		"--refresh-metrics-interval", scale(eppRefresh), "--metrics-staleness-threshold", scale(eppStaleness))
	if err != nil {
		return nil, err
	}
	stops = append(stops, func() { proc.Stop(5 * time.Second) })
	if err := waitServing(ctx, fmt.Sprintf("127.0.0.1:%d", healthPort), fmt.Sprintf("127.0.0.1:%d", grpcPort), proc); err != nil {
		return nil, err
	}
	cell.picker = fmt.Sprintf("127.0.0.1:%d", grpcPort)
	e.mu.Lock()
	e.cells[env] = cell
	e.mu.Unlock()
	return cleanup, nil
}

// configure points the proxy's pool at the cell's picker (TLS: the
// picker serves a self-signed certificate by default) and names the
// servers by their pod addresses, the ones the picker answers with.
func (e *eppRuns) configure(env *Env, rs []snapshotv1.Named) ([]snapshotv1.Named, error) {
	e.mu.Lock()
	cell := e.cells[env]
	e.mu.Unlock()
	if cell == nil {
		return nil, errors.New("epp: configure before start")
	}
	const pickerEndpoints = gateway + "/endpointpicker/bench/epp:9002"
	for _, r := range rs {
		switch v := r.(type) {
		case *snapshotv1.Backend:
			if v.GetName() == poolName {
				v.EndpointPicker = &snapshotv1.EndpointPicker{Service: "bench/epp:9002", Endpoints: pickerEndpoints}
			}
		case *snapshotv1.Endpoints:
			if v.GetName() != poolName+"/endpoints" {
				continue
			}
			for _, ep := range v.GetEndpoints() {
				server := net.JoinHostPort(ep.GetAddress(), strconv.Itoa(int(ep.GetPort())))
				pod, ok := cell.pods[server]
				if !ok {
					return nil, fmt.Errorf("epp: server %s has no pod", server)
				}
				host, p, _ := net.SplitHostPort(pod)
				pn, _ := strconv.Atoi(p)
				ep.Address, ep.Port = host, uint32(pn)
			}
		}
	}
	host, p, _ := net.SplitHostPort(cell.picker)
	pn, _ := strconv.Atoi(p)
	return append(rs, &snapshotv1.Endpoints{Name: pickerEndpoints, Endpoints: []*snapshotv1.Endpoint{{Address: host, Port: uint32(pn)}}}), nil
}

// createEPPObjects makes the pool the picker serves and the objectives the
// workloads name (with the priorities the proxies give them).
func createEPPObjects(ctx context.Context, c *cluster.Cluster, ns string, port int) error {
	pool := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
		"metadata": map[string]any{"name": "pool", "namespace": ns},
		"spec": map[string]any{
			"selector":          map[string]any{"matchLabels": map[string]any{"app": "sim"}},
			"targetPorts":       []any{map[string]any{"number": int64(port)}},
			"endpointPickerRef": map[string]any{"name": "epp", "port": map[string]any{"number": int64(9002)}},
		},
	}}
	gvr := schema.GroupVersionResource{Group: "inference.networking.k8s.io", Version: "v1", Resource: "inferencepools"}
	if _, err := c.Dynamic.Resource(gvr).Namespace(ns).Create(ctx, pool, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("epp: create pool: %w", err)
	}
	ogvr := schema.GroupVersionResource{Group: "inference.networking.x-k8s.io", Version: "v1alpha2", Resource: "inferenceobjectives"}
	for name, prio := range objectives {
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "inference.networking.x-k8s.io/v1alpha2", "kind": "InferenceObjective",
			"metadata": map[string]any{"name": name, "namespace": ns},
			"spec":     map[string]any{"priority": int64(prio), "poolRef": map[string]any{"name": "pool"}},
		}}
		if _, err := c.Dynamic.Resource(ogvr).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("epp: create objective %s: %w", name, err)
		}
	}
	_, err := c.Clientset.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "epp", Namespace: ns},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 9002}}},
	}, metav1.CreateOptions{})
	return err
}

// podAddresses picks n loopback addresses 127.<k>.0.<i> (one random k per
// cell) and a port free on all of them.
func podAddresses(n int) ([]string, int, error) {
	k := 100 + rand.IntN(150)
	ips := make([]string, n)
	for i := range ips {
		ips[i] = net.IPv4(127, byte(k), byte((i+1)>>8), byte(i+1)).String()
	}
	port, err := harness.FreePortOnAll(ips...)
	return ips, port, err
}

// freePorts3 returns three ports free on every interface (the picker
// listens on all); freeport never hands one process the same port twice.
func freePorts3() (a, b, c int, err error) {
	var ports [3]int
	for i := range ports {
		if ports[i], err = freeport.On(""); err != nil {
			return 0, 0, 0, err
		}
	}
	return ports[0], ports[1], ports[2], nil
}

// waitServing waits until the picker's health service (at addr) says
// SERVING — its pool and pods are synced — and its ext_proc port (which
// it opens after that) accepts connections, or the process exits.
func waitServing(ctx context.Context, addr, extProc string, proc *harness.Process) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if proc.Exited() {
			return fmt.Errorf("epp exited: %v", proc.Wait())
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{Service: "envoy.service.ext_proc.v3.ExternalProcessor"})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			if c, err := net.DialTimeout("tcp", extProc, time.Second); err == nil {
				_ = c.Close()
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("epp: not serving after 2m")
}

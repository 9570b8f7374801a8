package conformance

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	inferencev1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/apis/v1alpha2"
	"sigs.k8s.io/gateway-api/apis/v1alpha3"
	xv1alpha1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"
	"sigs.k8s.io/gateway-api/conformance/utils/config"

	"github.com/infergate/infergate/e2e/cluster"
	"github.com/infergate/infergate/e2e/harness"
)

// env is one suite's cluster: an envtest API server with the CRDs, the
// real control plane provisioning proxies for the infergate class, and
// the node playing kubelet, EndpointSlice controller and load balancer.
type env struct {
	cluster *cluster.Cluster
	node    *node
	logDir  string
	started time.Time
}

type envOptions struct {
	// GatewayExperimental installs gateway-api's experimental CRDs.
	GatewayExperimental bool
	// PickerBinary runs the Inference Extension suite's picker pods.
	PickerBinary string
	// LogSubdir keeps this suite's logs apart when several run.
	LogSubdir string
}

// startEnv brings the cluster up; processes stop in cleanups, not defers:
// the suites' parallel tests run after the test function returns.
func startEnv(t *testing.T, opts envOptions) *env {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctrllog.SetLogger(logr.FromSlogHandler(logger.Handler()))
	e := &env{started: time.Now()}

	bins, cleanupBins, err := harness.Build()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanupBins)
	e.logDir = os.Getenv("CONFORMANCE_LOG_DIR")
	if e.logDir == "" {
		e.logDir = t.TempDir()
	}
	if opts.LogSubdir != "" {
		e.logDir = filepath.Join(e.logDir, opts.LogSubdir)
		if err := os.MkdirAll(e.logDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	progress("logs of the control plane and every pod: %s", e.logDir)

	c := cluster.StartT(t, cluster.Options{CRDs: []cluster.CRDSet{cluster.GatewayAPI, cluster.InferencePoolV1}, GatewayExperimental: opts.GatewayExperimental})
	e.cluster = c
	progress("kube-apiserver up (%s)", c.StartupTime.Round(time.Millisecond))
	if err := c.CreateNamespace(ctx, systemNS); err != nil {
		t.Fatal(err)
	}

	xds := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	cpLog, err := os.Create(filepath.Join(e.logDir, "controlplane.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cpLog.Close() })
	startLogged(t, cpLog, bins.Path("controlplane"),
		"--kubeconfig", c.Kubeconfig, "--xds-address", xds,
		"--admin-address", fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1")),
		"--leader-election-namespace", systemNS, "--debounce", "20ms",
		"--provision-proxies", "--proxy-image", "infergate.test/proxy:conformance", "--proxy-xds-address", xds)

	if err := applyClass(ctx, c); err != nil {
		t.Fatal(err)
	}
	// The suites read supported features from the class status once, at
	// the start: wait for the control plane to have written them.
	harness.Eventually(t, time.Minute, func() error {
		gc, err := c.Dynamic.Resource(gatewayClassGVR).Get(ctx, className, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if fs, _, _ := unstructured.NestedSlice(gc.Object, "status", "supportedFeatures"); len(fs) == 0 {
			return fmt.Errorf("GatewayClass %s has no status.supportedFeatures yet", className)
		}
		return nil
	})

	ips := freeIPPool(t)
	e.node = newNode(c.Clientset, nodeOptions{ProxyBinary: bins.Path("proxy"), Dir: e.logDir, IPs: ips,
		StaticIPs: []string{ips.staticAddress(1)}, Logger: logger, PickerBinary: opts.PickerBinary, Kubeconfig: c.Kubeconfig})
	var nodeDone sync.WaitGroup
	nodeCtx, stopNode := context.WithCancel(ctx)
	nodeDone.Go(func() { e.node.run(nodeCtx) })
	t.Cleanup(func() { stopNode(); nodeDone.Wait() })
	return e
}

// The suites' kinds are registered in client-go's scheme, which the
// suites' controller-runtime client uses, once before any test starts:
// registering them as each suite began wrote the scheme's maps while the
// informers of the harness that suite had just started read them (a
// "concurrent map read and map write" that killed a run as the Inference
// Extension suite started).
func init() {
	for _, install := range []func(*runtime.Scheme) error{
		gwv1.Install, v1alpha2.Install, v1alpha3.Install, xv1alpha1.Install, apiextensionsv1.AddToScheme, inferencev1.Install,
	} {
		utilruntime.Must(install(scheme.Scheme))
	}
}

// clients are the suite's clients of the cluster: pods/log is answered
// from the harness's pods (see logTransport); the controller-runtime
// client knows client-go's kinds and the suites' (init).
func (e *env) clients(t *testing.T) (*rest.Config, client.Client, *kubernetes.Clientset) {
	t.Helper()
	cfg := rest.CopyConfig(e.cluster.Config)
	cfg.QPS, cfg.Burst = 100, 200
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &logTransport{next: rt, logs: e.node.logsOf} })
	cl, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	cset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, cl, cset
}

// loopbackTimeouts tighten a suite's waits for objects (sized for cloud
// load balancers and image pulls) to what a loopback cluster needs.
func loopbackTimeouts(tc config.TimeoutConfig) config.TimeoutConfig {
	tc.GatewayMustHaveAddress = 60 * time.Second
	tc.GatewayMustHaveCondition = 30 * time.Second
	tc.GatewayStatusMustHaveListeners = 30 * time.Second
	tc.GatewayListenersMustHaveConditions = 30 * time.Second
	tc.GWCMustBeAccepted = 60 * time.Second
	tc.HTTPRouteMustNotHaveParents = 20 * time.Second
	tc.HTTPRouteMustHaveCondition = 20 * time.Second
	tc.RouteMustHaveParents = 20 * time.Second
	tc.LatestObservedGenerationSet = 20 * time.Second
	return tc
}

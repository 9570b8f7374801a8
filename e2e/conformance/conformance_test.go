package conformance

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwconformance "sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/tests"
	"sigs.k8s.io/gateway-api/conformance/utils/config"
	"sigs.k8s.io/gateway-api/conformance/utils/flags"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/yaml"

	"github.com/infergate/infergate/e2e/cluster"
)

// envRun turns the suite on: it takes minutes, so `go test ./...` in e2e
// (and `make test`) skip it; `make conformance` sets it.
const envRun = "INFERGATE_CONFORMANCE"

const (
	className = "infergate"
	systemNS  = "infergate-system"
)

// classYAML is the GatewayClass under test. Its parameters give every
// Gateway one proxy (the load balancer stand-in sends a Gateway's traffic
// to its proxy pod's IP) without an HPA.
const classYAML = `apiVersion: v1
kind: ConfigMap
metadata: {name: conformance-proxy, namespace: infergate-system}
data: {replicas: "1", autoscaling: "false", cpuRequest: "10m"}
`

// TestGatewayAPIConformance runs gateway-api's conformance suite (the
// pinned version's GATEWAY-HTTP profile) against the real control plane
// and proxies on an envtest API server, with this package standing in for
// kubelet, EndpointSlice controller and cloud load balancer.
//
// The suite's own flags apply (-run-test, -skip-tests, -supported-features,
// -report-output, …: see sigs.k8s.io/gateway-api/conformance/utils/flags).
// Without -supported-features the suite reads them from the GatewayClass
// status, i.e. what the control plane claims.
func TestGatewayAPIConformance(t *testing.T) {
	if os.Getenv(envRun) == "" {
		t.Skipf("set %s=1 (make conformance) to run gateway-api's conformance suite", envRun)
	}
	// CONFORMANCE_CHANNEL=experimental installs gateway-api's experimental
	// CRDs (e.g. HTTPRoute retry); the default is the standard channel the
	// chart installs.
	experimental := false
	switch ch := os.Getenv("CONFORMANCE_CHANNEL"); ch {
	case "", "standard":
	case "experimental":
		experimental = true
	default:
		t.Fatalf("CONFORMANCE_CHANNEL=%q: want standard or experimental", ch)
	}
	e := startEnv(t, envOptions{GatewayExperimental: experimental, LogSubdir: "gateway-api"})
	started := e.started
	opts := suiteOptions(t, e)
	results := &resultLog{title: "Gateway API conformance"}
	opts.Hook = results.record
	cs, err := suite.NewConformanceTestSuite(opts)
	if err != nil {
		t.Fatal(err)
	}
	progress("running gateway-api %s conformance, profiles %v, features %v", cluster.GatewayAPIVersion, opts.ConformanceProfiles, sets.List(cs.SupportedFeatures))
	cs.Setup(t, tests.ConformanceTests)
	progress("base manifests ready (%s since start)", since(started))
	// The suite counts as running until Run's cleanup: report from a
	// cleanup registered before it, which runs after it.
	t.Cleanup(func() { finish(t, cs, results, opts.ReportOutputPath, started) })
	if err := cs.Run(t, tests.ConformanceTests); err != nil {
		t.Fatal(err)
	}
}

// finish prints the summary and writes the report.
func finish(t *testing.T, cs *suite.ConformanceTestSuite, results *resultLog, path string, started time.Time) {
	report, err := cs.Report()
	if err != nil {
		t.Fatal(err)
	}
	results.summary(report, time.Since(started))
	if path == "" {
		return
	}
	b, err := yaml.Marshal(report)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	progress("report written to %s", path)
}

// suiteOptions are the suite's options for this harness, with the suite's
// command-line flags applied on top.
func suiteOptions(t *testing.T, e *env) suite.ConformanceOptions {
	cfg, cl, cset := e.clients(t)
	n := e.node
	co := suite.ConfigurableOptions{
		GatewayClassName: className,
		// Namespaces never finish deleting without a namespace controller,
		// and the cluster is thrown away after the run anyway.
		CleanupBaseResources: false,
		CleanupTestResources: true,
		ConformanceProfiles:  []suite.ConformanceProfileName{suite.GatewayHTTPConformanceProfileName},
		TimeoutConfig:        timeouts(),
		Mode:                 flags.DefaultMode,
		Implementation: confv1.Implementation{
			Organization: "infergate", Project: "infergate", URL: "https://github.com/infergate/infergate",
			Version: "main", Contact: []string{"@infergate/maintainers"},
		},
		ReportOutputPath: os.Getenv("CONFORMANCE_REPORT"),
		// HTTPRouteServiceTypes writes EndpointSlices holding the backend
		// pods' IPs, which here are loopback addresses the API server
		// refuses in EndpointSlices ("may not be in the loopback range").
		SkipTests: []string{"HTTPRouteServiceTypes"},
		// GatewayStaticAddresses: the load balancer's pool holds one static
		// address; one outside it (TEST-NET-1) it cannot assign.
		UsableNetworkAddresses:   []gwv1.GatewaySpecAddress{{Type: new(gwv1.IPAddressType), Value: n.opts.StaticIPs[0]}},
		UnusableNetworkAddresses: []gwv1.GatewaySpecAddress{{Type: new(gwv1.IPAddressType), Value: "192.0.2.1"}},
	}
	flags.ApplyAll(&co)
	return suite.ConformanceOptions{
		ConfigurableOptions: co,
		Client:              cl,
		Clientset:           cset,
		RestConfig:          cfg,
		ManifestFS:          []fs.FS{&gwconformance.Manifests},
	}
}

// timeouts tighten the suite's defaults (sized for cloud load balancers
// and image pulls) to what a loopback cluster needs, so a failing test
// fails in seconds rather than minutes. Waits for traffic to converge
// keep enough room for a loaded 2-core machine.
func timeouts() config.TimeoutConfig {
	tc := loopbackTimeouts(config.DefaultTimeoutConfig())
	tc.MaxTimeToConsistency = 20 * time.Second
	tc.DefaultTestTimeout = 60 * time.Second
	return tc
}

func applyClass(ctx context.Context, c *cluster.Cluster) error {
	cm := &corev1.ConfigMap{}
	if err := yaml.Unmarshal([]byte(classYAML), cm); err != nil {
		return err
	}
	if _, err := c.Clientset.CoreV1().ConfigMaps(systemNS).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		return err
	}
	gc := map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
		"metadata": map[string]any{"name": className},
		"spec": map[string]any{
			"controllerName": "infergate.dev/gateway-controller",
			"parametersRef":  map[string]any{"group": "", "kind": "ConfigMap", "name": cm.Name, "namespace": systemNS},
		},
	}
	return createGatewayClass(ctx, c, gc)
}

// resultLog prints a line per test as it finishes and the summary.
type resultLog struct {
	title  string
	mu     sync.Mutex
	passed []string
	failed []string
	// skippedRun are the tests that skipped, skipped the harness's reasons
	// for those it skips.
	skippedRun []string
	skipped    map[string]string
}

func (r *resultLog) record(t *testing.T, test suite.ConformanceTest, _ *suite.ConformanceTestSuite) {
	r.mu.Lock()
	defer r.mu.Unlock()
	verdict := "PASS"
	switch {
	case t.Skipped():
		verdict = "SKIP"
		r.skippedRun = append(r.skippedRun, test.ShortName)
	case t.Failed():
		verdict = "FAIL"
		r.failed = append(r.failed, test.ShortName)
	default:
		r.passed = append(r.passed, test.ShortName)
	}
	if verdict != "SKIP" {
		progress("%s %s", verdict, test.ShortName)
	}
}

func (r *resultLog) summary(report *confv1.ConformanceReport, took time.Duration) {
	say := printSummary
	say("Gateway API conformance: gateway-api %s, %s channel, mode %s", report.GatewayAPIVersion, report.GatewayAPIChannel, report.Mode)
	for _, p := range report.ProfileReports {
		say("profile %s: %s", p.Name, p.Summary)
		line := func(level string, st confv1.Status) {
			say("  %-8s %-8s passed %d of %d (failed %d, skipped %d)", level, st.Result,
				st.Passed, st.Passed+st.Failed+st.Skipped, st.Failed, st.Skipped)
			if len(st.FailedTests) > 0 {
				say("           failed: %s", strings.Join(st.FailedTests, ", "))
			}
			if len(st.SkippedTests) > 0 {
				say("           skipped: %s", strings.Join(st.SkippedTests, ", "))
			}
		}
		line("core", p.Core)
		if p.Extended != nil {
			line("extended", p.Extended.Status)
			say("           supported features: %s", strings.Join(p.Extended.SupportedFeatures, ", "))
			say("           unsupported features: %s", strings.Join(p.Extended.UnsupportedFeatures, ", "))
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	say("tests run: %d passed, %d failed; took %s", len(r.passed), len(r.failed), took.Round(time.Second))
}

// printSummary prints a summary line (make's filter keeps lines starting
// with "| ").
func printSummary(format string, args ...any) { fmt.Printf("| "+format+"\n", args...) }

func progress(format string, args ...any) {
	fmt.Printf("%s conformance: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Second) }

// freeIPPool picks a random 127.N.0.0/16 for the run's pods whose first
// addresses have ports 80 and 443 free, so two runs on one machine (two
// worktrees' `make test`) do not collide on the Gateways' ports.
func freeIPPool(t *testing.T) *ipPool {
	for range 20 {
		second := byte(100 + rand.IntN(150))
		free := true
		for host := 1; host <= 8 && free; host++ {
			for _, port := range []string{"80", "443"} {
				l, err := net.Listen("tcp", net.JoinHostPort(net.IPv4(127, second, 0, byte(host)).String(), port))
				if errors.Is(err, syscall.EACCES) {
					t.Fatalf("the suite's Gateways listen on ports 80 and 443: run as root or with net.ipv4.ip_unprivileged_port_start=0 (%v)", err)
				}
				if err != nil {
					free = false
					break
				}
				_ = l.Close()
			}
		}
		if free {
			return newIPPool(second)
		}
	}
	t.Fatal("no free 127.N.0.0/16 for pod IPs")
	return nil
}

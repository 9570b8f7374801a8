package conformance

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	giconformance "sigs.k8s.io/gateway-api-inference-extension/conformance"
	gitests "sigs.k8s.io/gateway-api-inference-extension/conformance/tests"
	giconfig "sigs.k8s.io/gateway-api-inference-extension/conformance/utils/config"
	giversion "sigs.k8s.io/gateway-api-inference-extension/version"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/utils/flags"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"

	"github.com/infergate/infergate/e2e/cluster/k8sbin"
)

// inferenceSkips are the Inference Extension tests this harness does not
// run, each with the reason printed in the summary; none today.
var inferenceSkips = map[string]string{}

// TestInferenceExtensionConformance runs the Gateway API Inference
// Extension's conformance suite (sigs.k8s.io/gateway-api-inference-
// extension/conformance at the pinned version, profile Gateway, its own
// base manifests) against the real control plane and proxies, the harness
// running the suite's pods: echo-basic containers in process (several per
// pod where the manifests say so, on their HTTP_PORT/H2C_PORT), and its
// endpoint picker image as lwepp built from the module proxy at the
// suite's version. Six of its tests follow that picker, which proxies ask
// over ext_proc.
func TestInferenceExtensionConformance(t *testing.T) {
	if os.Getenv(envRun) == "" {
		t.Skipf("set %s=1 (make conformance) to run the Inference Extension's conformance suite", envRun)
	}
	lwepp, err := k8sbin.EnsureTool(context.Background(), k8sbin.Options{Progress: os.Stderr}, k8sbin.LWEPP)
	if err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, envOptions{PickerBinary: lwepp, LogSubdir: "inference-extension"})
	opts := inferenceSuiteOptions(t, e)
	results := &resultLog{title: "Inference Extension conformance", skipped: map[string]string{}}
	for name, why := range inferenceSkips {
		results.skipped[name] = why
	}
	opts.Hook = results.record
	progress("running gateway-api-inference-extension conformance %s, profile %s, base manifests %s", k8sbin.LWEPP.Version,
		giconformance.GatewayLayerProfileName, opts.BaseManifests)
	// What the suite's RunConformanceWithOptions does, but with the report
	// written from a cleanup: gateway-api's suite counts as running until
	// Run's own cleanup, so RunConformanceWithOptions's report, asked for
	// right after Run returns, fails ("the test suite is currently
	// running"). Cleanups run last-registered first: this one after Run's.
	ctx := context.Background()
	version, err := inferenceBundleVersion(ctx, opts.Client)
	if err != nil {
		t.Fatal(err)
	}
	suite.RegisterConformanceProfile(giconformance.GatewayLayerProfile)
	cs, err := suite.NewConformanceTestSuite(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		results.inferenceSummary(time.Since(e.started))
		if opts.ReportOutputPath == "" {
			return
		}
		report, err := cs.Report()
		if err != nil {
			t.Fatal(err)
		}
		ir := giconformance.GatewayAPIInferenceExtensionConformanceReport{GatewayAPIInferenceExtensionVersion: version, ConformanceReport: *report}
		if err := ir.WriteReport(t.Logf, opts.ReportOutputPath); err != nil {
			t.Fatal(err)
		}
		progress("report written to %s", opts.ReportOutputPath)
	})
	giconformance.SetupConformanceTestSuite(ctx, t, cs, opts, gitests.ConformanceTests)
	if err := cs.Run(t, gitests.ConformanceTests); err != nil {
		t.Fatal(err)
	}
}

// inferenceBundleVersion is the Inference Extension release of the
// cluster's CRDs (their bundle-version annotation), for the report.
func inferenceBundleVersion(ctx context.Context, c client.Client) (string, error) {
	var crds apiextensionsv1.CustomResourceDefinitionList
	if err := c.List(ctx, &crds); err != nil {
		return "", err
	}
	for _, crd := range crds.Items {
		if v := crd.Annotations[giversion.BundleVersionAnnotation]; v != "" {
			return v, nil
		}
	}
	return "", fmt.Errorf("no CRD carries %s", giversion.BundleVersionAnnotation)
}

// inferenceSuiteOptions are the suite's options for this harness (those
// its DefaultOptions sets, with this cluster's clients), the suite's
// command-line flags applied on top.
func inferenceSuiteOptions(t *testing.T, e *env) suite.ConformanceOptions {
	cfg, cl, cset := e.clients(t)
	co := suite.ConfigurableOptions{
		GatewayClassName: className,
		// Namespaces never finish deleting without a namespace controller.
		CleanupBaseResources: false,
		CleanupTestResources: true,
		ConformanceProfiles:  []suite.ConformanceProfileName{giconformance.GatewayLayerProfileName},
		SupportedFeatures:    giconformance.GatewayLayerProfile.CoreFeatures.UnsortedList(),
		TimeoutConfig:        inferenceTimeouts().TimeoutConfig,
		Mode:                 flags.DefaultMode,
		Implementation: confv1.Implementation{
			Organization: "infergate", Project: "infergate", URL: "https://github.com/infergate/infergate",
			Version: "main", Contact: []string{"@infergate/maintainers"},
		},
		ReportOutputPath: os.Getenv("CONFORMANCE_INFERENCE_REPORT"),
	}
	for name := range inferenceSkips {
		co.SkipTests = append(co.SkipTests, name)
	}
	flags.ApplyAll(&co)
	return suite.ConformanceOptions{
		ConfigurableOptions: co,
		Client:              cl,
		ClientOptions:       client.Options{Scheme: cl.Scheme()},
		Clientset:           cset,
		RestConfig:          cfg,
		BaseManifests:       "resources/base.yaml",
		ManifestFS:          []fs.FS{&giconformance.Manifests},
	}
}

// inferenceTimeouts tighten the suite's cloud-sized defaults where a
// loopback cluster needs less, keeping its long MaxTimeToConsistency:
// GatewayWeightedAcrossTwoInferencePools warms each pod up through a 70/30
// split with a picker header naming that pod, which converges only when
// three requests in a row draw its pool (for a 30% pool, a minute or so).
func inferenceTimeouts() giconfig.InferenceExtensionTimeoutConfig {
	tc := giconfig.DefaultInferenceExtensionTimeoutConfig()
	tc.TimeoutConfig = loopbackTimeouts(tc.TimeoutConfig)
	tc.NamespacesMustBeReady = 120 * time.Second
	return tc
}

// inferenceSummary prints the suite's verdicts.
func (r *resultLog) inferenceSummary(took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	say := func(format string, args ...any) { printSummary(format, args...) }
	say("%s: gateway-api-inference-extension %s, profile %s", r.title, k8sbin.LWEPP.Version, giconformance.GatewayLayerProfileName)
	say("  passed %d, failed %d, skipped %d", len(r.passed), len(r.failed), len(r.skippedRun)+len(r.skipped))
	if len(r.failed) > 0 {
		say("  failed: %s", strings.Join(r.failed, ", "))
	}
	for _, name := range r.skippedRun {
		why := r.skipped[name]
		if why == "" {
			why = "skipped by the suite (see the log)"
		}
		say("  skipped %s: %s", name, why)
	}
	say("tests run: %d passed, %d failed; took %s", len(r.passed), len(r.failed), took.Round(time.Second))
}

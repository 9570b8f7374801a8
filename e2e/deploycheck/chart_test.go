package deploycheck_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"

	"github.com/infergate/infergate/e2e/cluster"
	"github.com/infergate/infergate/e2e/cluster/k8sbin"
	"github.com/infergate/infergate/e2e/deploycheck"
)

const (
	chartDir = "../../deploy/helm/infergate"
	// examplesDir holds manifests users adapt (deploy/examples).
	examplesDir = "../../deploy/examples"
	namespace   = "infergate-system"
)

// TestCRDsUpToDate fails when the chart's committed CRDs differ from the
// module cache's at the pinned versions (run `make crds`).
func TestCRDsUpToDate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stale, err := deploycheck.StaleCRDs(ctx, filepath.Join(chartDir, "crds"))
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) > 0 {
		t.Fatalf("chart CRDs are stale: %v; run 'make crds' and commit", stale)
	}
}

// TestChart lints and renders the chart with the pinned helm (default values
// and a variant), checks what matters in the output, and applies every
// rendered object to a real kube-apiserver as a server-side dry run.
func TestChart(t *testing.T) {
	if testing.Short() {
		t.Skip("deploycheck: needs helm (built from the module proxy) and a kube-apiserver")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	helm, err := deploycheck.Helm(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("helm %s at %s (%s)", deploycheck.HelmVersion, helm, time.Since(start).Round(time.Millisecond))
	home := t.TempDir()

	if _, err := deploycheck.RunHelm(ctx, helm, home, "lint", "--strict", chartDir); err != nil {
		t.Fatal(err)
	}
	variant := filepath.Join("testdata", "values-variant.yaml")
	if _, err := deploycheck.RunHelm(ctx, helm, home, "lint", "--strict", "-f", variant, chartDir); err != nil {
		t.Fatal(err)
	}
	render := func(extra ...string) []*unstructured.Unstructured {
		args := append([]string{"template", "ig", chartDir, "--namespace", namespace, "--include-crds",
			"--kube-version", k8sbin.DefaultKubeVersion}, extra...)
		out, err := deploycheck.RunHelm(ctx, helm, home, args...)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeAll(out)
		if err != nil {
			t.Fatal(err)
		}
		return objs
	}
	defaults := render()
	variantObjs := render("-f", variant)
	checkDefaults(t, defaults)
	checkVariant(t, variantObjs)
	for name, objs := range map[string][]*unstructured.Unstructured{"default": defaults, "variant": variantObjs} {
		checkFlagsAccepted(t, name, containerArgs(t, find(objs, "Deployment", "")))
	}

	c := cluster.StartT(t, cluster.Options{})
	if err := c.CreateNamespace(ctx, namespace); err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	var dryRunIn func(o *unstructured.Unstructured, ns string) error
	dryRun := func(o *unstructured.Unstructured) error { return dryRunIn(o, namespace) }
	dryRunIn = func(o *unstructured.Unstructured, ns string) error {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return err
		}
		data, err := json.Marshal(o.Object)
		if err != nil {
			return err
		}
		opts := metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}, FieldManager: "deploycheck", Force: new(true), FieldValidation: "Strict"}
		ri := c.Dynamic.Resource(m.Resource)
		if m.Scope.Name() == "namespace" {
			if o.GetNamespace() != ns {
				return fmt.Errorf("in namespace %q, want %q", o.GetNamespace(), ns)
			}
			_, err = ri.Namespace(o.GetNamespace()).Patch(ctx, o.GetName(), types.ApplyPatchType, data, opts)
		} else {
			_, err = ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, opts)
		}
		return err
	}
	for name, objs := range map[string][]*unstructured.Unstructured{"default": defaults, "variant": variantObjs} {
		for _, o := range objs {
			if err := dryRun(o); err != nil {
				t.Errorf("%s: server-side dry-run apply of %s %s: %v", name, o.GetKind(), o.GetName(), err)
			}
		}
		t.Logf("%s values: %d objects pass server-side dry-run apply", name, len(objs))
	}
	// The autoscaling example (KEDA's CRD from the module cache).
	if _, err := c.InstallCRDs(ctx, cluster.KEDA); err != nil {
		t.Fatal(err)
	}
	mapper.Reset() // forget the discovery cached before ScaledObject existed
	examples, err := filepath.Glob(filepath.Join(examplesDir, "autoscaling", "*.yaml"))
	if err != nil || len(examples) == 0 {
		t.Fatalf("no autoscaling examples: %v", err)
	}
	var applied int
	for _, f := range examples {
		if strings.HasSuffix(f, "-values.yaml") {
			continue // values for another chart, checked by TestAutoscalingExample
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeAll(raw)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, o := range objs {
			if o.GetNamespace() != namespace {
				// Examples live in the user's namespace.
				if err := c.CreateNamespace(ctx, o.GetNamespace()); err != nil {
					t.Fatal(err)
				}
			}
			if err := dryRunIn(o, o.GetNamespace()); err != nil {
				t.Errorf("%s: server-side dry-run apply of %s %s: %v", filepath.Base(f), o.GetKind(), o.GetName(), err)
			}
			applied++
		}
	}
	t.Logf("autoscaling examples: %d objects pass server-side dry-run apply", applied)
	// The check has teeth: a misspelt field is refused.
	bad := find(defaults, "Deployment", "").DeepCopy()
	if err := unstructured.SetNestedField(bad.Object, int64(2), "spec", "replica"); err != nil {
		t.Fatal(err)
	}
	if err := dryRun(bad); err == nil {
		t.Error("a Deployment with an unknown field passed the dry run")
	}
}

func decodeAll(raw []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	var out []*unstructured.Unstructured
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		// Unstructured's decoder keeps integers as int64.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			return o
		}
	}
	return nil
}

func containerArgs(t *testing.T, d *unstructured.Unstructured) []string {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if len(cs) != 1 {
		t.Fatalf("deployment %s: %d containers", d.GetName(), len(cs))
	}
	args, _, _ := unstructured.NestedStringSlice(cs[0].(map[string]any), "args")
	return args
}

func checkDefaults(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	var crds int
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			crds++
		}
	}
	// Every generated CRD file (make crds) is installed by the chart.
	files, err := filepath.Glob(filepath.Join(chartDir, "crds", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRD files in the chart: %v", err)
	}
	if crds != len(files) {
		t.Errorf("rendered %d CRDs, want %d (one per file in crds/)", crds, len(files))
	}
	d := find(objs, "Deployment", "ig-infergate-controlplane")
	if d == nil {
		t.Fatal("no control-plane Deployment")
	}
	if r, _, _ := unstructured.NestedInt64(d.Object, "spec", "replicas"); r != 2 {
		t.Errorf("replicas = %d, want 2", r)
	}
	args := containerArgs(t, d)
	for _, want := range []string{
		"--xds-address=0.0.0.0:18000", "--leader-elect=true", "--leader-election-namespace=" + namespace,
		"--controller-name=infergate.dev/gateway-controller", "--log-format=json",
		"--proxy-xds-address=ig-infergate-controlplane." + namespace + ".svc:18000",
		"--admin-address=0.0.0.0:18001",
		"--xds-tls-secret=infergate-xds-tls", "--xds-token-audience=infergate.dev/xds",
		// Replicas relay the fleet exchange to the Service's other endpoints.
		"--fleet-peer-service=" + namespace + "/ig-infergate-controlplane",
		"--fleet-peer-token-file=/var/run/secrets/infergate/fleet/token",
	} {
		if !slices.Contains(args, want) {
			t.Errorf("control-plane args %v lack %s", args, want)
		}
	}
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	// The peer token: the control plane's own, bound to the xDS audience.
	vols, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "volumes")
	var audience string
	for _, v := range vols {
		if v.(map[string]any)["name"] != "fleet-token" {
			continue
		}
		srcs, _, _ := unstructured.NestedSlice(v.(map[string]any), "projected", "sources")
		for _, src := range srcs {
			audience, _, _ = unstructured.NestedString(src.(map[string]any), "serviceAccountToken", "audience")
		}
	}
	if audience != "infergate.dev/xds" {
		t.Errorf("fleet peer token volume's audience %q, want infergate.dev/xds (volumes %v)", audience, vols)
	}
	sc, _, _ := unstructured.NestedMap(cs[0].(map[string]any), "securityContext")
	if sc["readOnlyRootFilesystem"] != true || sc["runAsNonRoot"] != true || sc["allowPrivilegeEscalation"] != false {
		t.Errorf("container securityContext = %v", sc)
	}
	if n := len(dashboardConfigMaps(objs)); n != 0 {
		t.Errorf("%d dashboard ConfigMaps with dashboards.enabled off", n)
	}
	if path, _, _ := unstructured.NestedString(cs[0].(map[string]any), "readinessProbe", "httpGet", "path"); path != "/readyz" {
		t.Errorf("readiness probe path = %q, want /readyz", path)
	}
	for _, kind := range []string{"Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "PodDisruptionBudget", "GatewayClass"} {
		if find(objs, kind, "") == nil {
			t.Errorf("no %s rendered", kind)
		}
	}
	if find(objs, "ClusterRole", "ig-infergate-controlplane-provision") == nil {
		t.Error("no provisioning ClusterRole")
	}
	// Least privilege: nothing may write secrets, and no wildcards.
	for _, o := range objs {
		if o.GetKind() != "ClusterRole" && o.GetKind() != "Role" {
			continue
		}
		rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
		for _, r := range rules {
			rm := r.(map[string]any)
			res, _, _ := unstructured.NestedStringSlice(rm, "resources")
			verbs, _, _ := unstructured.NestedStringSlice(rm, "verbs")
			if slices.Contains(res, "*") || slices.Contains(verbs, "*") {
				t.Errorf("%s %s has a wildcard rule %v", o.GetKind(), o.GetName(), rm)
			}
			// Secrets: read anywhere (listener certificates); written only
			// in the release namespace (the xDS certificate Secret): create,
			// and other writes to that one Secret by name.
			names, _, _ := unstructured.NestedStringSlice(rm, "resourceNames")
			writes := slices.ContainsFunc(verbs, func(v string) bool { return v != "get" && v != "list" && v != "watch" })
			if slices.Contains(res, "secrets") && writes &&
				(o.GetKind() != "Role" || (len(names) == 0 && !slices.Equal(verbs, []string{"create"}))) {
				t.Errorf("%s %s may write secrets too broadly: %v", o.GetKind(), o.GetName(), rm)
			}
		}
	}
}

func checkVariant(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	d := find(objs, "Deployment", "gw-controlplane")
	if d == nil {
		t.Fatal("no control-plane Deployment named from fullnameOverride")
	}
	args := containerArgs(t, d)
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if _, ok, _ := unstructured.NestedMap(cs[0].(map[string]any), "readinessProbe", "tcpSocket"); !ok {
		t.Error("with the admin server on loopback the readiness probe must be a TCP check")
	}
	for _, want := range []string{"--leader-elect=false", "--admin-address=127.0.0.1:18001", "--provision-proxies=false", "--log-level=debug", "--debounce=50ms",
		"--proxy-image=registry.example.com/infergate/proxy:dev",
		// Without TLS the control plane must not ask proxies for tokens:
		// it refuses to start with --xds-auth and no TLS.
		"--xds-auth=false",
		"--tracing-endpoint=http://otel-collector.observability:4317", "--tracing-sample-ratio=0.1"} {
		if !slices.Contains(args, want) {
			t.Errorf("variant args %v lack %s", args, want)
		}
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--xds-tls-secret") || strings.HasPrefix(a, "--xds-token-audience") || strings.HasPrefix(a, "--fleet-peer-token-file") {
			t.Errorf("xDS TLS is off but the args have %s", a)
		}
	}
	// Without TLS the replicas still relay (in the clear, as xDS is
	// served), with no token to present.
	if want := "--fleet-peer-service=" + namespace + "/gw-controlplane"; !slices.Contains(args, want) {
		t.Errorf("variant args %v lack %s", args, want)
	}
	if vols, ok, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "volumes"); ok {
		t.Errorf("xDS TLS is off but the pod mounts %v", vols)
	}
	if r := find(objs, "Role", "gw-controlplane"); r == nil || strings.Contains(fmt.Sprint(r.Object["rules"]), "secrets") {
		t.Errorf("Role without xDS TLS: %v", r)
	}
	if find(objs, "PodDisruptionBudget", "") != nil {
		t.Error("a PodDisruptionBudget for a single replica blocks node drains")
	}
	checkDashboardConfigMaps(t, objs)
	if find(objs, "ClusterRole", "gw-controlplane-provision") != nil {
		t.Error("provisioning RBAC rendered with proxy.provision=false")
	}
	gc := find(objs, "GatewayClass", "infergate-dev")
	if gc == nil {
		t.Fatal("no GatewayClass infergate-dev")
	}
	if ref, _, _ := unstructured.NestedString(gc.Object, "spec", "parametersRef", "name"); ref != "gw-proxy-parameters" {
		t.Errorf("GatewayClass parametersRef name = %q", ref)
	}
	cm := find(objs, "ConfigMap", "gw-proxy-parameters")
	if cm == nil {
		t.Fatal("no parameters ConfigMap")
	}
	if v, _, _ := unstructured.NestedString(cm.Object, "data", "replicas"); strings.TrimSpace(v) != "3" {
		t.Errorf("parameters replicas = %q", v)
	}
}

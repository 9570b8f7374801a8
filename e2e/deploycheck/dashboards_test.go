package deploycheck_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/infergate/infergate/e2e/deploycheck"
)

const dashboardDir = chartDir + "/dashboards"

// TestDashboardsUpToDate: the chart's dashboards are what `make dashboards`
// generates, each passes Grafana's dashboard schema, and every query parses
// as PromQL. (That every metric they name is served is TestDashboardMetrics,
// in e2e/scenarios, against running binaries.)
func TestDashboardsUpToDate(t *testing.T) {
	want, err := deploycheck.DashboardFiles()
	if err != nil {
		t.Fatal(err)
	}
	got, err := filepath.Glob(filepath.Join(dashboardDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("chart has %d dashboards, the generator %d: run 'make dashboards' and commit", len(got), len(want))
	}
	for name, raw := range want {
		committed, err := os.ReadFile(filepath.Join(dashboardDir, name))
		if err != nil || string(committed) != string(raw) {
			t.Errorf("%s is stale (%v): run 'make dashboards' and commit", name, err)
			continue
		}
		if err := deploycheck.ValidateDashboard(committed); err != nil {
			t.Errorf("%s: not a valid Grafana dashboard: %v", name, err)
		}
		exprs, err := deploycheck.DashboardExprs(committed)
		if err != nil || len(exprs) < 5 {
			t.Fatalf("%s: %d queries (%v)", name, len(exprs), err)
		}
		for _, e := range exprs {
			if _, err := deploycheck.MetricNames(e); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

// TestValidateDashboardHasTeeth: a misspelt field or a wrong type fails the
// schema check.
func TestValidateDashboardHasTeeth(t *testing.T) {
	files, err := deploycheck.DashboardFiles()
	if err != nil {
		t.Fatal(err)
	}
	raw := string(files["infergate-gateway.json"])
	for _, bad := range []string{
		strings.Replace(raw, `"title": "infergate / Gateway"`, `"titel": "infergate / Gateway"`, 1),
		strings.Replace(raw, `"refresh": "30s"`, `"refresh": 30`, 1),
		strings.Replace(raw, `"legendFormat"`, `"legendFromat"`, 1),
	} {
		if bad == raw {
			t.Fatal("the mutation did not apply")
		}
		if err := deploycheck.ValidateDashboard([]byte(bad)); err == nil {
			t.Errorf("a broken dashboard passed:\n%.300s", bad)
		}
	}
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (route) (rate(infergate_proxy_requests_total{code=~"5.."}[$__rate_interval])) / sum(rate(infergate_proxy_requests_total[$__rate_interval]))`: {"infergate_proxy_requests_total"},
		`histogram_quantile(0.9, sum by (le) (rate(a_bucket{model_name=~"$model"}[5m]))) + on() group_left b`:                                                {"a_bucket", "b"},
		`label_values(inference_pool_ready_pods, name)`: {"inference_pool_ready_pods"},
		`{__name__="x", job="y"}`:                       {"x"},
		"ceil((max by (pool_namespace) (<<.Series>>{<<.LabelMatchers>>}) + sum(q{<<.LabelMatchers>>})) / 0.7)": nil, // <<.Series>> left: error
	} {
		got, err := deploycheck.MetricNames(expr)
		if want == nil {
			if err == nil {
				t.Errorf("%q: no error", expr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%q: %v %v, want %v", expr, got, err, want)
		}
	}
	if _, err := deploycheck.MetricNames(`sum(rate(x[5m])`); err == nil {
		t.Error("unbalanced PromQL parsed")
	}
}

// dashboardConfigMaps are the rendered ConfigMaps labelled for Grafana's
// sidecar.
func dashboardConfigMaps(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" && o.GetLabels()["grafana_dashboard"] == "1" {
			out = append(out, o)
		}
	}
	return out
}

// checkDashboardConfigMaps: with dashboards.enabled every dashboard file is
// one ConfigMap, verbatim, with the sidecar label and the given annotation.
func checkDashboardConfigMaps(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dashboardDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	cms := dashboardConfigMaps(objs)
	if len(cms) != len(files) || len(cms) == 0 {
		t.Fatalf("%d dashboard ConfigMaps for %d dashboards", len(cms), len(files))
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, cm := range cms {
			data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
			if v, ok := data[filepath.Base(f)]; ok {
				found = true
				if strings.TrimSpace(v) != strings.TrimSpace(string(raw)) {
					t.Errorf("ConfigMap %s: %s differs from the file", cm.GetName(), filepath.Base(f))
				}
				if cm.GetAnnotations()["grafana_folder"] != "infergate" {
					t.Errorf("ConfigMap %s lacks the folder annotation: %v", cm.GetName(), cm.GetAnnotations())
				}
			}
		}
		if !found {
			t.Errorf("no ConfigMap carries %s", filepath.Base(f))
		}
	}
}

// TestAutoscalingExample: the autoscaling examples' queries parse and name
// metrics (served by a running proxy: TestDashboardMetrics).
func TestAutoscalingExample(t *testing.T) {
	qs, err := deploycheck.ExampleQueries(filepath.Join(examplesDir, "autoscaling"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		names, err := deploycheck.MetricNames(q)
		if err != nil {
			t.Error(err)
		}
		for _, n := range names {
			if !strings.HasPrefix(n, "infergate_") {
				t.Errorf("%q names %s, not a gateway metric", q, n)
			}
		}
	}
}

package deploycheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

var registerOnce sync.Once

// registerPlugins lets the Foundation SDK decode panels and queries by
// their plugin's schema (a process-wide registry of the SDK).
func registerPlugins() { registerOnce.Do(plugins.RegisterDefaultPlugins) }

var (
	// Grafana's range variables stand where PromQL wants a duration.
	grafanaRange = regexp.MustCompile(`\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}`)
	// label_values(selector, label) is Grafana's, not PromQL.
	labelValues = regexp.MustCompile(`^\s*label_values\(\s*(.*?)\s*,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)
)

// MetricNames returns the metric names a PromQL expression (as a Grafana
// panel or variable, or an autoscaler, writes it) selects, sorted and
// each once. It fails on an expression PromQL cannot parse.
func MetricNames(expr string) ([]string, error) {
	if m := labelValues.FindStringSubmatch(expr); m != nil {
		expr = m[1]
	}
	expr = grafanaRange.ReplaceAllString(expr, "5m")
	// prometheus-adapter's templates (<<.Series>>{<<.LabelMatchers>>}).
	expr = strings.NewReplacer("{<<.LabelMatchers>>}", "", "<<.LabelMatchers>>", "").Replace(expr)
	if strings.Contains(expr, "<<.Series>>") {
		return nil, fmt.Errorf("template <<.Series>> left in %q: substitute the rule's seriesQuery metric first", expr)
	}
	e, err := parser.ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("PromQL %q: %w", expr, err)
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		if name == "" {
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" {
					name = m.Value
				}
			}
		}
		if name != "" {
			names = append(names, name)
		}
		return nil
	})
	if len(names) == 0 {
		return nil, fmt.Errorf("PromQL %q selects no metric by name", expr)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// ExampleQueries returns the PromQL of the autoscaling examples in dir
// (deploy/examples/autoscaling): prometheus-adapter rules (seriesQuery, and
// metricsQuery with <<.Series>> standing for the series' metric) and KEDA
// Prometheus triggers.
func ExampleQueries(dir string) ([]string, error) {
	var out []string
	adapter, err := os.ReadFile(filepath.Join(dir, "prometheus-adapter-values.yaml"))
	if err != nil {
		return nil, err
	}
	// The adapter's rule schema (its config.DiscoveryRule), read strictly
	// so a misspelt key fails here rather than in the adapter.
	var values struct {
		Rules struct {
			External []struct {
				SeriesQuery   string `json:"seriesQuery"`
				SeriesFilters []struct {
					Is    string `json:"is,omitempty"`
					IsNot string `json:"isNot,omitempty"`
				} `json:"seriesFilters,omitempty"`
				Resources struct {
					Overrides map[string]struct {
						Group    string `json:"group,omitempty"`
						Resource string `json:"resource"`
					} `json:"overrides,omitempty"`
					Template   string `json:"template,omitempty"`
					Namespaced *bool  `json:"namespaced,omitempty"`
				} `json:"resources"`
				Name struct {
					Matches string `json:"matches,omitempty"`
					As      string `json:"as,omitempty"`
				} `json:"name"`
				MetricsQuery string `json:"metricsQuery"`
			} `json:"external"`
		} `json:"rules"`
	}
	if err := yaml.UnmarshalStrict(adapter, &values); err != nil {
		return nil, fmt.Errorf("prometheus-adapter-values.yaml: %w", err)
	}
	for _, r := range values.Rules.External {
		series, err := MetricNames(r.SeriesQuery)
		if err != nil || len(series) != 1 {
			return nil, fmt.Errorf("prometheus-adapter rule: seriesQuery %q must select one metric (%v)", r.SeriesQuery, err)
		}
		out = append(out, r.SeriesQuery, strings.ReplaceAll(r.MetricsQuery, "<<.Series>>", series[0]))
	}
	keda, err := os.ReadFile(filepath.Join(dir, "keda-scaledobject.yaml"))
	if err != nil {
		return nil, err
	}
	var so struct {
		Spec struct {
			Triggers []struct {
				Type     string            `json:"type"`
				Metadata map[string]string `json:"metadata"`
			} `json:"triggers"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(keda, &so); err != nil {
		return nil, fmt.Errorf("keda-scaledobject.yaml: %w", err)
	}
	for _, tr := range so.Spec.Triggers {
		if tr.Type == "prometheus" {
			out = append(out, tr.Metadata["query"])
		}
	}
	if len(out) < 3 {
		return nil, fmt.Errorf("%s: found %d queries, want the adapter's two and KEDA's", dir, len(out))
	}
	return out, nil
}

package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/config/configtest"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

const gw = "ns/gw"

func valid() []snapshotv1.Named {
	return []snapshotv1.Named{
		&snapshotv1.Listener{Name: gw + "/http", Gateway: gw, SectionName: "http", Port: 8080, Protocol: snapshotv1.Listener_HTTP},
		&snapshotv1.Backend{Name: gw + "/inferencepool/ns/pool", Kind: snapshotv1.Backend_INFERENCE_POOL, Source: "ns/pool", Endpoints: gw + "/inferencepool/ns/pool"},
		&snapshotv1.Endpoints{Name: gw + "/inferencepool/ns/pool", Endpoints: []*snapshotv1.Endpoint{
			{Address: "10.0.0.1", Port: 8000, Pod: "ns/a"},
			{Address: "10.0.0.2", Port: 8000, MetricsPort: 9090, EngineType: "sglang"},
		}},
		&snapshotv1.Backend{Name: gw + "/service/ns/svc:80", Kind: snapshotv1.Backend_SERVICE, Source: "ns/svc", AppProtocol: snapshotv1.Backend_H2C},
		&snapshotv1.Route{Name: gw + "/ns/r/0", Route: "ns/r", Listeners: []string{gw + "/http"},
			Matches: []*snapshotv1.RouteMatch{{
				Path:    &snapshotv1.PathMatch{Type: snapshotv1.MatchType_PATH_PREFIX, Value: "/v1/"},
				Headers: []*snapshotv1.HeaderMatch{{Type: snapshotv1.MatchType_REGULAR_EXPRESSION, Name: "x-model", Value: "llama.*"}},
			}},
			Backends: []*snapshotv1.BackendRef{{Backend: gw + "/inferencepool/ns/pool", Weight: 3}, {Weight: 1, InvalidReason: "BackendNotFound"}}},
		&snapshotv1.ModelRule{Name: gw + "/InferenceModel/ns/m", Pool: gw + "/inferencepool/ns/pool", ModelName: "food-review", Priority: 1,
			Targets: []*snapshotv1.TargetModel{{Name: "food-review-1", Weight: 90}, {Name: "food-review-2", Weight: 10}}},
	}
}

func TestCompileValid(t *testing.T) {
	c, err := config.Compile(configtest.Resources(gw, valid()...))
	if err != nil {
		t.Fatal(err)
	}
	if c.Gateway != gw || len(c.Ports) != 1 || c.Ports[0].Port != 8080 {
		t.Fatalf("ports: %+v", c.Ports)
	}
	l := c.Ports[0].Listeners[0]
	if len(l.Routes) != 1 {
		t.Fatalf("listener routes: %d", len(l.Routes))
	}
	r := l.Routes[0]
	if r.TotalWeight != 4 || r.Backends[0].Backend == nil || r.Backends[1].Backend != nil {
		t.Fatalf("backends: %+v", r.Backends)
	}
	m := r.Matches[0]
	if m.PathType != config.PathPrefix || m.Path != "/v1" {
		t.Fatalf("path: %v %q (trailing slash must be dropped)", m.PathType, m.Path)
	}
	if h := m.Headers[0]; h.Name != "X-Model" || !h.Regex.MatchString("llama-3") || h.Regex.MatchString("my-llama") {
		t.Fatalf("header regex must be canonical and anchored: %+v", h)
	}
	pool := c.Backends[gw+"/inferencepool/ns/pool"]
	if !pool.IsPool() || len(pool.Endpoints) != 2 {
		t.Fatalf("pool: %+v", pool)
	}
	if e := pool.Endpoints[0]; e.Address != "10.0.0.1:8000" || e.MetricsAddress != "10.0.0.1:8000" || e.EngineType != "vllm" {
		t.Fatalf("endpoint 0: %+v", e)
	}
	if e := pool.Endpoints[1]; e.MetricsAddress != "10.0.0.2:9090" || e.EngineType != "sglang" {
		t.Fatalf("endpoint 1: %+v", e)
	}
	rule := pool.Models["food-review"]
	if rule == nil || rule.TotalWeight != 100 || rule.PickTarget(95) != "food-review-2" || rule.PickTarget(0) != "food-review-1" {
		t.Fatalf("model rule: %+v", rule)
	}
	if !c.Backends[gw+"/service/ns/svc:80"].H2C {
		t.Fatal("service should be h2c")
	}
}

func TestCompileIncomplete(t *testing.T) {
	res := configtest.Resources(gw, valid()...)
	delete(res[snapshotv1.TypeRoute], gw+"/ns/r/0")
	if _, err := config.Compile(res); !errors.Is(err, config.ErrIncomplete) {
		t.Fatalf("missing resource: got %v, want ErrIncomplete", err)
	}
	res = configtest.Resources(gw, valid()...)
	res.Add(&snapshotv1.Listener{Name: gw + "/http", Port: 9999})
	if _, err := config.Compile(res); !errors.Is(err, config.ErrIncomplete) {
		t.Fatalf("hash mismatch: got %v, want ErrIncomplete", err)
	}
	delete(res, snapshotv1.TypeManifest)
	if _, err := config.Compile(res); !errors.Is(err, config.ErrIncomplete) {
		t.Fatalf("no manifest: got %v, want ErrIncomplete", err)
	}
}

// TestCompileWaitsForLeftoversRemoved: a resource the Manifest does not
// describe (one of an older snapshot whose removal has not arrived yet) makes
// the state incomplete, never part of the config; once it is removed the
// set compiles.
func TestCompileWaitsForLeftoversRemoved(t *testing.T) {
	res := configtest.Resources(gw, valid()...)
	res.Add(&snapshotv1.Route{Name: "leftover", Listeners: []string{"nope"}})
	if _, err := config.Compile(res); !errors.Is(err, config.ErrIncomplete) {
		t.Fatalf("with a leftover: %v, want ErrIncomplete", err)
	}
	delete(res[snapshotv1.TypeRoute], "leftover")
	c, err := config.Compile(res)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Routes) != 1 {
		t.Fatalf("routes: %d", len(c.Routes))
	}
}

func TestCompileInvalid(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(rs []snapshotv1.Named)
		want   string
	}{
		{"bad path regex", func(rs []snapshotv1.Named) {
			rs[4].(*snapshotv1.Route).Matches[0].Path = &snapshotv1.PathMatch{Type: snapshotv1.MatchType_REGULAR_EXPRESSION, Value: "/v1/(("}
		}, `route "ns/gw/ns/r/0": match 0: path: invalid regex "/v1/(("`},
		{"bad header regex", func(rs []snapshotv1.Named) {
			rs[4].(*snapshotv1.Route).Matches[0].Headers[0].Value = "[a-"
		}, `route "ns/gw/ns/r/0": match 0: headers[0] "x-model": invalid regex`},
		{"relative path", func(rs []snapshotv1.Named) {
			rs[4].(*snapshotv1.Route).Matches[0].Path.Value = "v1"
		}, `route "ns/gw/ns/r/0": match 0: path: "v1" must start with /`},
		{"unknown listener", func(rs []snapshotv1.Named) {
			rs[4].(*snapshotv1.Route).Listeners = []string{"ns/gw/other"}
		}, `route "ns/gw/ns/r/0": listeners[0]: unknown listener "ns/gw/other"`},
		{"unknown backend", func(rs []snapshotv1.Named) {
			rs[4].(*snapshotv1.Route).Backends[0].Backend = "ns/gw/service/ns/gone:80"
		}, `route "ns/gw/ns/r/0": backends[0]: unknown backend`},
		{"bad endpoint address", func(rs []snapshotv1.Named) {
			rs[2].(*snapshotv1.Endpoints).Endpoints[1].Address = "pod-b"
		}, `backend "ns/gw/inferencepool/ns/pool": endpoints "ns/gw/inferencepool/ns/pool": endpoints[1]: address`},
		{"port zero", func(rs []snapshotv1.Named) {
			rs[0].(*snapshotv1.Listener).Port = 0
		}, `listener "ns/gw/http": port: 0 out of range`},
		{"rule on service", func(rs []snapshotv1.Named) {
			rs[5].(*snapshotv1.ModelRule).Pool = gw + "/service/ns/svc:80"
		}, `model rule "ns/gw/InferenceModel/ns/m": pool: backend "ns/gw/service/ns/svc:80" is not an InferencePool`},
		{"https without cert", func(rs []snapshotv1.Named) {
			rs[0].(*snapshotv1.Listener).Protocol = snapshotv1.Listener_HTTPS
		}, `listener "ns/gw/http": certificates: HTTPS listener without a certificate`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := valid()
			tc.mutate(rs)
			_, err := config.Compile(configtest.Resources(gw, rs...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant containing %s", err, tc.want)
			}
			if errors.Is(err, config.ErrIncomplete) {
				t.Fatal("a validation error must not look like an incomplete snapshot")
			}
		})
	}
}

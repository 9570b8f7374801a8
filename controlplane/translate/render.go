package translate

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// RenderYAML renders a translation as YAML: every gateway's resources (in
// protojson field names) and every status. The output is deterministic, so
// golden tests and `infergatectl`-style dumps can diff it.
func RenderYAML(out *Output) ([]byte, error) {
	type gatewayDoc struct {
		Listeners  []json.RawMessage `json:"listeners,omitempty"`
		Routes     []json.RawMessage `json:"routes,omitempty"`
		Backends   []json.RawMessage `json:"backends,omitempty"`
		Endpoints  []json.RawMessage `json:"endpoints,omitempty"`
		ModelRules []json.RawMessage `json:"modelRules,omitempty"`
	}
	doc := struct {
		Gateways map[string]gatewayDoc `json:"gateways"`
		Status   Status                `json:"status"`
	}{Gateways: map[string]gatewayDoc{}, Status: out.Status}
	for name, g := range out.Gateways {
		var d gatewayDoc
		var err error
		if d.Listeners, err = rawAll(g.Listeners); err != nil {
			return nil, err
		}
		if d.Routes, err = rawAll(g.Routes); err != nil {
			return nil, err
		}
		if d.Backends, err = rawAll(g.Backends); err != nil {
			return nil, err
		}
		if d.Endpoints, err = rawAll(g.Endpoints); err != nil {
			return nil, err
		}
		if d.ModelRules, err = rawAll(g.ModelRules); err != nil {
			return nil, err
		}
		doc.Gateways[name] = d
	}
	return yaml.Marshal(doc)
}

func rawAll[T proto.Message](ms []T) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(ms))
	for _, m := range ms {
		b, err := protojson.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("render %T: %w", m, err)
		}
		out = append(out, b)
	}
	return out, nil
}

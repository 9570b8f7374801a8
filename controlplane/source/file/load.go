// Package file is the file source of the control plane: a directory of
// Kubernetes-style YAML manifests, loaded into translator inputs and watched
// for changes.
package file

import (
	"bytes"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1b1 "sigs.k8s.io/gateway-api/apis/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/infergate/infergate/controlplane/apis/inferencealpha"
	"github.com/infergate/infergate/controlplane/translate"
)

// Load reads every *.yaml / *.yml file under dir (recursively, hidden files
// and directories skipped), each possibly holding several documents, into
// translator inputs. Objects of kinds the translator does not read are
// skipped with a log line. The first bad document fails the whole load with
// an error naming the file, the document index (1-based) and the line.
// Skipped objects are logged to log.
func Load(dir string, log *slog.Logger) (*translate.Inputs, error) {
	in := &translate.Inputs{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !isManifest(path) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return decodeFile(path, data, in, log)
	})
	if err != nil {
		return nil, err
	}
	return in, nil
}

// LoadFile reads one manifest file (any extension) into translator inputs,
// with the same decoding, errors and logging as Load.
func LoadFile(path string, log *slog.Logger) (*translate.Inputs, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	in := &translate.Inputs{}
	if err := decodeFile(path, data, in, log); err != nil {
		return nil, err
	}
	return in, nil
}

func isManifest(path string) bool {
	ext := strings.ToLower(filepath.Ext(path))
	return ext == ".yaml" || ext == ".yml"
}

// document is one YAML document of a file and the line it starts on.
type document struct {
	data  []byte
	index int // 1-based
	line  int // 1-based line of the document's first line
}

// splitDocuments splits on "---" separator lines, keeping line numbers.
func splitDocuments(data []byte) []document {
	var docs []document
	lines := bytes.SplitAfter(data, []byte("\n"))
	start, index := 0, 1
	flush := func(end int) {
		docs = append(docs, document{data: bytes.Join(lines[start:end], nil), index: index, line: start + 1})
		index++
	}
	for i, l := range lines {
		t := bytes.TrimRight(l, " \t\r\n")
		if bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) {
			flush(i)
			start = i + 1
		}
	}
	flush(len(lines))
	return docs
}

// empty reports a document holding only comments and blank lines.
func empty(doc []byte) bool {
	for _, l := range bytes.Split(doc, []byte("\n")) {
		t := bytes.TrimSpace(l)
		if len(t) > 0 && t[0] != '#' {
			return false
		}
	}
	return true
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// docError names file, document and line. YAML syntax errors carry a line
// relative to the document, which is turned into a file line.
func docError(path string, d document, err error) error {
	line := d.line
	msg := err.Error()
	if m := yamlLine.FindStringSubmatchIndex(msg); m != nil {
		if n, convErr := strconv.Atoi(msg[m[2]:m[3]]); convErr == nil {
			line = d.line + n - 1
			msg = msg[:m[0]] + "line " + strconv.Itoa(line) + msg[m[1]:]
		}
	}
	return fmt.Errorf("%s: document %d (line %d): %s", path, d.index, line, msg)
}

func decodeFile(path string, data []byte, in *translate.Inputs, log *slog.Logger) error {
	for _, d := range splitDocuments(data) {
		if empty(d.data) {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(d.data, &tm); err != nil {
			return docError(path, d, err)
		}
		if tm.APIVersion == "" || tm.Kind == "" {
			return docError(path, d, fmt.Errorf("apiVersion and kind are required"))
		}
		dec := decoder(tm.APIVersion + "/" + tm.Kind)
		if dec == nil {
			log.Info("skipping object of a kind the gateway does not read",
				"file", path, "document", d.index, "apiVersion", tm.APIVersion, "kind", tm.Kind)
			continue
		}
		if err := dec(d.data, in); err != nil {
			return docError(path, d, err)
		}
	}
	return nil
}

// decoder returns the decoder for "apiVersion/kind", nil for kinds the
// translator does not read. Gateway API v1beta1 types are identical in
// layout to v1 and decode into the v1 structs.
func decoder(apiVersionKind string) func([]byte, *translate.Inputs) error {
	switch apiVersionKind {
	case "gateway.networking.k8s.io/v1/GatewayClass", "gateway.networking.k8s.io/v1beta1/GatewayClass":
		return add(false, func(in *translate.Inputs, o *gwv1.GatewayClass) { in.GatewayClasses = append(in.GatewayClasses, o) })
	case "gateway.networking.k8s.io/v1/Gateway", "gateway.networking.k8s.io/v1beta1/Gateway":
		return add(true, func(in *translate.Inputs, o *gwv1.Gateway) { in.Gateways = append(in.Gateways, o) })
	case "gateway.networking.k8s.io/v1/HTTPRoute", "gateway.networking.k8s.io/v1beta1/HTTPRoute":
		return add(true, func(in *translate.Inputs, o *gwv1.HTTPRoute) { in.HTTPRoutes = append(in.HTTPRoutes, o) })
	case "gateway.networking.k8s.io/v1/ReferenceGrant", "gateway.networking.k8s.io/v1beta1/ReferenceGrant":
		return add(true, func(in *translate.Inputs, o *gwv1b1.ReferenceGrant) {
			in.ReferenceGrants = append(in.ReferenceGrants, o)
		})
	case "gateway.networking.k8s.io/v1/ListenerSet":
		return add(true, func(in *translate.Inputs, o *gwv1.ListenerSet) { in.ListenerSets = append(in.ListenerSets, o) })
	case "gateway.networking.k8s.io/v1/BackendTLSPolicy":
		return add(true, func(in *translate.Inputs, o *gwv1.BackendTLSPolicy) {
			in.BackendTLSPolicies = append(in.BackendTLSPolicies, o)
		})
	case "inference.networking.k8s.io/v1/InferencePool":
		return add(true, func(in *translate.Inputs, o *infv1.InferencePool) { in.InferencePools = append(in.InferencePools, o) })
	case inferencealpha.APIVersion + "/" + inferencealpha.KindInferenceObjective:
		return add(true, func(in *translate.Inputs, o *inferencealpha.InferenceObjective) {
			in.InferenceObjectives = append(in.InferenceObjectives, o)
		})
	case inferencealpha.APIVersion + "/" + inferencealpha.KindInferenceModelRewrite:
		return add(true, func(in *translate.Inputs, o *inferencealpha.InferenceModelRewrite) {
			in.InferenceModelRewrites = append(in.InferenceModelRewrites, o)
		})
	case inferencealpha.APIVersion + "/" + inferencealpha.KindInferenceModel:
		return add(true, func(in *translate.Inputs, o *inferencealpha.InferenceModel) {
			in.InferenceModels = append(in.InferenceModels, o)
		})
	case inferencealpha.APIVersion + "/" + inferencealpha.KindInferencePool:
		return add(true, func(in *translate.Inputs, o *inferencealpha.InferencePool) {
			in.LegacyInferencePools = append(in.LegacyInferencePools, o)
		})
	case "v1/Service":
		return add(true, func(in *translate.Inputs, o *corev1.Service) { in.Services = append(in.Services, o) })
	case "v1/Pod":
		return add(true, func(in *translate.Inputs, o *corev1.Pod) { in.Pods = append(in.Pods, o) })
	case "v1/ConfigMap":
		return add(true, func(in *translate.Inputs, o *corev1.ConfigMap) { in.ConfigMaps = append(in.ConfigMaps, o) })
	case "v1/Namespace":
		return add(false, func(in *translate.Inputs, o *corev1.Namespace) { in.Namespaces = append(in.Namespaces, o) })
	case "v1/Secret":
		return add(true, func(in *translate.Inputs, o *corev1.Secret) {
			// The API server folds stringData into data; do the same so
			// files can carry PEM text directly.
			for k, v := range o.StringData {
				if o.Data == nil {
					o.Data = map[string][]byte{}
				}
				o.Data[k] = []byte(v)
			}
			o.StringData = nil
			in.Secrets = append(in.Secrets, o)
		})
	case "discovery.k8s.io/v1/EndpointSlice":
		return add(true, func(in *translate.Inputs, o *discoveryv1.EndpointSlice) {
			in.EndpointSlices = append(in.EndpointSlices, o)
		})
	}
	return nil
}

// add builds a strict decoder for one type: unknown fields are errors, a name
// is required and namespaced objects default to namespace "default".
func add[T any, PT interface {
	*T
	metav1.Object
}](namespaced bool, appendTo func(*translate.Inputs, PT)) func([]byte, *translate.Inputs) error {
	return func(data []byte, in *translate.Inputs) error {
		o := PT(new(T))
		if err := yaml.UnmarshalStrict(data, o); err != nil {
			return err
		}
		if o.GetName() == "" {
			return fmt.Errorf("metadata.name is required")
		}
		if namespaced && o.GetNamespace() == "" {
			o.SetNamespace(metav1.NamespaceDefault)
		}
		appendTo(in, o)
		return nil
	}
}

package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Module versions the CRDs are read from. GatewayAPIVersion and
// InferencePoolVersion match the Go types the control plane is built
// against (pinned in go.mod; a test checks they agree with the workspace's
// build list). The alpha and legacy versions are not Go dependencies: their
// CRDs are fetched with `go mod download module@version` only.
const (
	GatewayAPIModule       = "sigs.k8s.io/gateway-api"
	InferenceExtModule     = "sigs.k8s.io/gateway-api-inference-extension"
	GatewayAPIVersion      = "v1.6.3"
	InferencePoolVersion   = "v1.6.0" // InferencePool v1, inference.networking.k8s.io
	InferenceAlphaVersion  = "v1.5.0" // InferenceObjective, InferenceModelRewrite (x-k8s.io v1alpha2)
	InferenceLegacyVersion = "v0.5.1" // InferencePool + InferenceModel (x-k8s.io v1alpha2)
	// KEDAModule's ScaledObject CRD checks the autoscaling example in
	// deploy/examples (v2.20.2: the newest whose go.mod takes Go 1.26).
	KEDAModule  = "github.com/kedacore/keda/v2"
	KEDAVersion = "v2.20.2"
)

// CRDSet names a group of CRDs that is installed (or left out) together, so
// a test can start a cluster with only some kinds and install the rest later
// (e.g. to check that a missing CRD is tolerated and picked up).
type CRDSet string

const (
	// GatewayAPI: GatewayClass, Gateway, HTTPRoute, ReferenceGrant from
	// gateway-api's standard channel (experimental with
	// Options.GatewayExperimental). GRPCRoute and the other route kinds are
	// left out: infergate does not watch them.
	GatewayAPI CRDSet = "gateway-api"
	// InferencePoolV1: InferencePool v1 (inference.networking.k8s.io) from
	// gateway-api-inference-extension v1.6.0.
	InferencePoolV1 CRDSet = "inferencepool-v1"
	// InferenceAlpha: InferenceObjective and InferenceModelRewrite
	// (inference.networking.x-k8s.io v1alpha2) from v1.5.0. Their poolRef
	// defaults to group inference.networking.k8s.io, i.e. the v1 pool.
	InferenceAlpha CRDSet = "inference-alpha"
	// InferenceLegacy: InferencePool and InferenceModel
	// (inference.networking.x-k8s.io v1alpha2) from v0.5.1.
	//
	// There is no name clash with InferenceAlpha: v1.5.0's config/crd/bases
	// holds no inferencepools.inference.networking.x-k8s.io (only the v1
	// pool, objectives, model rewrites and inferencepoolimports), so the
	// x-k8s.io InferencePool here comes from v0.5.1 alone — which is also
	// the one whose group InferenceModel.spec.poolRef defaults to.
	InferenceLegacy CRDSet = "inference-legacy"
	// KEDA: KEDA's ScaledObject (keda.sh v1alpha1), for the autoscaling
	// example only; not in AllCRDs.
	KEDA CRDSet = "keda"
)

// AllCRDs is every set, the default for Start.
var AllCRDs = []CRDSet{GatewayAPI, InferencePoolV1, InferenceAlpha, InferenceLegacy}

// crdSource says where a set's CRD files live: a module version and the
// files (relative to the module root) to take from it.
type crdSource struct {
	module, version string
	files           []string
}

func sourceFor(set CRDSet, gatewayExperimental bool) (crdSource, error) {
	switch set {
	case GatewayAPI:
		channel := "standard"
		if gatewayExperimental {
			channel = "experimental"
		}
		dir := "config/crd/" + channel + "/"
		return crdSource{GatewayAPIModule, GatewayAPIVersion, []string{
			dir + "gateway.networking.k8s.io_gatewayclasses.yaml",
			dir + "gateway.networking.k8s.io_gateways.yaml",
			dir + "gateway.networking.k8s.io_httproutes.yaml",
			dir + "gateway.networking.k8s.io_referencegrants.yaml",
			dir + "gateway.networking.k8s.io_backendtlspolicies.yaml",
			dir + "gateway.networking.k8s.io_listenersets.yaml",
		}}, nil
	case InferencePoolV1:
		return crdSource{InferenceExtModule, InferencePoolVersion, []string{
			"config/crd/bases/inference.networking.k8s.io_inferencepools.yaml",
		}}, nil
	case InferenceAlpha:
		return crdSource{InferenceExtModule, InferenceAlphaVersion, []string{
			"config/crd/bases/inference.networking.x-k8s.io_inferenceobjectives.yaml",
			"config/crd/bases/inference.networking.x-k8s.io_inferencemodelrewrites.yaml",
		}}, nil
	case InferenceLegacy:
		return crdSource{InferenceExtModule, InferenceLegacyVersion, []string{
			"config/crd/bases/inference.networking.x-k8s.io_inferencepools.yaml",
			"config/crd/bases/inference.networking.x-k8s.io_inferencemodels.yaml",
		}}, nil
	case KEDA:
		return crdSource{KEDAModule, KEDAVersion, []string{"config/crd/bases/keda.sh_scaledobjects.yaml"}}, nil
	}
	return crdSource{}, fmt.Errorf("cluster: unknown CRD set %q", set)
}

// CRDFiles returns the absolute paths of the CRD files of the given sets,
// downloading their modules into the module cache if needed.
func CRDFiles(ctx context.Context, gatewayExperimental bool, sets ...CRDSet) ([]string, error) {
	dirs := map[string]string{}
	var files []string
	for _, set := range sets {
		src, err := sourceFor(set, gatewayExperimental)
		if err != nil {
			return nil, err
		}
		key := src.module + "@" + src.version
		dir, ok := dirs[key]
		if !ok {
			if dir, err = ModuleDir(ctx, src.module, src.version); err != nil {
				return nil, err
			}
			dirs[key] = dir
		}
		for _, f := range src.files {
			files = append(files, filepath.Join(dir, filepath.FromSlash(f)))
		}
	}
	return files, nil
}

// LoadCRDs reads the CRDs of the given sets.
func LoadCRDs(ctx context.Context, gatewayExperimental bool, sets ...CRDSet) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	files, err := CRDFiles(ctx, gatewayExperimental, sets...)
	if err != nil {
		return nil, err
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		got, err := readCRDs(f)
		if err != nil {
			return nil, err
		}
		crds = append(crds, got...)
	}
	return crds, nil
}

// readCRDs decodes every CustomResourceDefinition document in a YAML file
// (other kinds, e.g. gateway-api's ValidatingAdmissionPolicy, are skipped).
func readCRDs(path string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster: read CRD file: %w", err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	var crds []*apiextensionsv1.CustomResourceDefinition
	for {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := dec.Decode(crd); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("cluster: decode %s: %w", path, err)
		}
		if crd.Kind != "CustomResourceDefinition" || crd.Name == "" {
			continue
		}
		crds = append(crds, crd)
	}
	if len(crds) == 0 {
		return nil, fmt.Errorf("cluster: no CRD in %s", path)
	}
	return crds, nil
}

// ModuleDir returns module@version's directory in the module cache,
// downloading it through the module proxy if needed. It runs outside any
// module and workspace so it never edits a go.mod/go.sum, and works for
// modules that are not dependencies (the legacy CRD versions). Versions
// must be exact: gateway-api-inference-extension's proxy refuses listing.
func ModuleDir(ctx context.Context, module, version string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", module+"@"+version)
	cmd.Dir = os.TempDir()
	cmd.Env = append(EnvWithout(os.Environ(), "GOWORK", "GOFLAGS"), "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr == nil && info.Error != "" {
		return "", fmt.Errorf("cluster: go mod download %s@%s: %s", module, version, info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("cluster: go mod download %s@%s: %w: %s", module, version, err, stderr.String())
	}
	if info.Dir == "" {
		return "", fmt.Errorf("cluster: go mod download %s@%s: no directory in output", module, version)
	}
	return info.Dir, nil
}

// EnvWithout returns env without the variables named (for running the go
// tool or helm outside the workspace's settings).
func EnvWithout(env []string, names ...string) []string {
	out := make([]string, 0, len(env))
outer:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue outer
			}
		}
		out = append(out, kv)
	}
	return out
}

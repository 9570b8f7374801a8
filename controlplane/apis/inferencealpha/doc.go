// +k8s:deepcopy-gen=package

// Package inferencealpha holds the project's own Go types for the alpha API
// group inference.networking.x-k8s.io/v1alpha2.
//
// One binary links a single version of sigs.k8s.io/gateway-api-inference-extension
// (v1.6.0, for InferencePool v1), yet users still run CRDs from older releases:
// InferenceObjective and InferenceModelRewrite as published in v1.5.0, and the
// legacy InferenceModel and InferencePool as published in v0.5.1. These types
// mirror those CRD schemas field for field (json names included) so they decode
// from YAML files and from unstructured objects alike. Only the fields the
// gateway reads or writes are here; unknown fields are rejected by strict
// decoding, which is why every spec field of the CRDs is present.
//
// The types implement runtime.Object (zz_generated.deepcopy.go, regenerate
// with `go generate ./apis/...`) and AddToScheme registers them, so typed
// clients and informers can use them as well as unstructured conversion.
package inferencealpha

//go:generate go run k8s.io/code-generator/cmd/deepcopy-gen@v0.36.3 --output-file zz_generated.deepcopy.go .

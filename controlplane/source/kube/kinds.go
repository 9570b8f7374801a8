package kube

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1b1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/infergate/infergate/controlplane/apis/inferencealpha"
	"github.com/infergate/infergate/controlplane/translate"
)

// Group/version/resources of the custom resources the source reads. They are
// public so the status writer and tests address the same resources.
var (
	GatewayClasses         = schema.GroupVersionResource{Group: gwv1.GroupName, Version: "v1", Resource: "gatewayclasses"}
	Gateways               = schema.GroupVersionResource{Group: gwv1.GroupName, Version: "v1", Resource: "gateways"}
	HTTPRoutes             = schema.GroupVersionResource{Group: gwv1.GroupName, Version: "v1", Resource: "httproutes"}
	ReferenceGrants        = schema.GroupVersionResource{Group: gwv1.GroupName, Version: "v1beta1", Resource: "referencegrants"}
	ListenerSets           = schema.GroupVersionResource{Group: gwv1.GroupName, Version: "v1", Resource: "listenersets"}
	BackendTLSPolicies     = schema.GroupVersionResource{Group: gwv1.GroupName, Version: "v1", Resource: "backendtlspolicies"}
	InferencePools         = schema.GroupVersionResource{Group: infv1.GroupName, Version: "v1", Resource: "inferencepools"}
	InferenceObjectives    = alpha(inferencealpha.ResourceInferenceObjectives)
	InferenceModelRewrites = alpha(inferencealpha.ResourceInferenceModelRewrites)
	InferenceModels        = alpha(inferencealpha.ResourceInferenceModels)
	LegacyInferencePools   = alpha(inferencealpha.ResourceInferencePools)
)

func alpha(resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: inferencealpha.Group, Version: inferencealpha.Version, Resource: resource}
}

// customKind is one custom resource the source watches with a dynamic
// informer: how to add a listed object to the translator inputs.
type customKind struct {
	gvr schema.GroupVersionResource
	add func(in *translate.Inputs, u *unstructured.Unstructured) error
}

// customKinds lists every custom resource the translator reads. Each may be
// missing from the cluster (CRD not installed); see Source.
func customKinds() []customKind {
	return []customKind{
		{GatewayClasses, appendTo(func(in *translate.Inputs) *[]*gwv1.GatewayClass { return &in.GatewayClasses })},
		{Gateways, appendTo(func(in *translate.Inputs) *[]*gwv1.Gateway { return &in.Gateways })},
		{HTTPRoutes, appendTo(func(in *translate.Inputs) *[]*gwv1.HTTPRoute { return &in.HTTPRoutes })},
		{ReferenceGrants, appendTo(func(in *translate.Inputs) *[]*gwv1b1.ReferenceGrant { return &in.ReferenceGrants })},
		{ListenerSets, appendTo(func(in *translate.Inputs) *[]*gwv1.ListenerSet { return &in.ListenerSets })},
		{BackendTLSPolicies, appendTo(func(in *translate.Inputs) *[]*gwv1.BackendTLSPolicy { return &in.BackendTLSPolicies })},
		{InferencePools, appendTo(func(in *translate.Inputs) *[]*infv1.InferencePool { return &in.InferencePools })},
		{InferenceObjectives, appendTo(func(in *translate.Inputs) *[]*inferencealpha.InferenceObjective { return &in.InferenceObjectives })},
		{InferenceModelRewrites, appendTo(func(in *translate.Inputs) *[]*inferencealpha.InferenceModelRewrite { return &in.InferenceModelRewrites })},
		{InferenceModels, appendTo(func(in *translate.Inputs) *[]*inferencealpha.InferenceModel { return &in.InferenceModels })},
		{LegacyInferencePools, appendTo(func(in *translate.Inputs) *[]*inferencealpha.InferencePool { return &in.LegacyInferencePools })},
	}
}

// appendTo converts an unstructured object into T and appends it to the
// inputs slice field picks.
func appendTo[T any](field func(*translate.Inputs) *[]*T) func(*translate.Inputs, *unstructured.Unstructured) error {
	return func(in *translate.Inputs, u *unstructured.Unstructured) error {
		v := new(T)
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, v); err != nil {
			return fmt.Errorf("decode %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		dst := field(in)
		*dst = append(*dst, v)
		return nil
	}
}

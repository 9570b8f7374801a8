package kube

import (
	"fmt"
	"log/slog"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
// informer: how an object of it becomes the translator's Go type, and how a
// converted object joins the inputs.
type customKind struct {
	gvr schema.GroupVersionResource
	// decode converts an object from the API server into its Go type. The
	// informer's transform calls it once per object version, as it enters
	// the cache, so a translation only collects typed objects (converting
	// by reflection on every change cost more than translating them).
	decode func(*unstructured.Unstructured) (metav1.Object, error)
	// add appends a decoded object to the inputs; false when obj is not
	// of the kind's type (it did not decode).
	add func(in *translate.Inputs, obj any) bool
}

// customKinds lists every custom resource the translator reads. Each may be
// missing from the cluster (CRD not installed); see Source.
func customKinds() []customKind {
	return []customKind{
		kind(GatewayClasses, func(in *translate.Inputs) *[]*gwv1.GatewayClass { return &in.GatewayClasses }),
		kind(Gateways, func(in *translate.Inputs) *[]*gwv1.Gateway { return &in.Gateways }),
		kind(HTTPRoutes, func(in *translate.Inputs) *[]*gwv1.HTTPRoute { return &in.HTTPRoutes }),
		kind(ReferenceGrants, func(in *translate.Inputs) *[]*gwv1b1.ReferenceGrant { return &in.ReferenceGrants }),
		kind(ListenerSets, func(in *translate.Inputs) *[]*gwv1.ListenerSet { return &in.ListenerSets }),
		kind(BackendTLSPolicies, func(in *translate.Inputs) *[]*gwv1.BackendTLSPolicy { return &in.BackendTLSPolicies }),
		kind(InferencePools, func(in *translate.Inputs) *[]*infv1.InferencePool { return &in.InferencePools }),
		kind(InferenceObjectives, func(in *translate.Inputs) *[]*inferencealpha.InferenceObjective { return &in.InferenceObjectives }),
		kind(InferenceModelRewrites, func(in *translate.Inputs) *[]*inferencealpha.InferenceModelRewrite { return &in.InferenceModelRewrites }),
		kind(InferenceModels, func(in *translate.Inputs) *[]*inferencealpha.InferenceModel { return &in.InferenceModels }),
		kind(LegacyInferencePools, func(in *translate.Inputs) *[]*inferencealpha.InferencePool { return &in.LegacyInferencePools }),
	}
}

// kind is the customKind of Go type T, held in the inputs slice field
// picks.
func kind[T any, PT interface {
	*T
	metav1.Object
}](gvr schema.GroupVersionResource, field func(*translate.Inputs) *[]*T) customKind {
	return customKind{
		gvr: gvr,
		decode: func(u *unstructured.Unstructured) (metav1.Object, error) {
			v := PT(new(T))
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, v); err != nil {
				return nil, fmt.Errorf("decode %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
			}
			return v, nil
		},
		add: func(in *translate.Inputs, obj any) bool {
			v, ok := obj.(PT)
			if ok {
				dst := field(in)
				*dst = append(*dst, (*T)(v))
			}
			return ok
		},
	}
}

// transform is the informer transform of k: objects from the API server
// are stored converted (managed fields dropped). It is idempotent, as
// client-go requires: an object already converted passes unchanged. One
// that does not decode — only possible when the CRD's schema differs from
// the types compiled in — is logged and kept as it is, and translations
// skip it.
func (k customKind) transform(log *slog.Logger) func(any) (any, error) {
	return func(obj any) (any, error) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return obj, nil
		}
		slimMeta(u)
		typed, err := k.decode(u)
		if err != nil {
			log.Warn("skipping object that does not decode", "resource", k.gvr.String(), "err", err)
			return u, nil
		}
		return typed, nil
	}
}

package inferencealpha

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// Group is the API group of every type in this package.
	Group = "inference.networking.x-k8s.io"
	// Version is the only version of the group the gateway reads.
	Version = "v1alpha2"
	// APIVersion is "group/version" as it appears in manifests.
	APIVersion = Group + "/" + Version

	KindInferenceObjective    = "InferenceObjective"
	KindInferenceModelRewrite = "InferenceModelRewrite"
	KindInferenceModel        = "InferenceModel"
	KindInferencePool         = "InferencePool"

	// ResourceInferenceObjectives etc. are the plural resource names, for
	// dynamic clients.
	ResourceInferenceObjectives    = "inferenceobjectives"
	ResourceInferenceModelRewrites = "inferencemodelrewrites"
	ResourceInferenceModels        = "inferencemodels"
	ResourceInferencePools         = "inferencepools"
)

// PoolObjectReference names an InferencePool in the referrer's namespace.
// The CRDs default group and kind; Group/Kind may therefore be empty in
// objects that never went through an API server (files), and readers apply
// the defaults themselves (see DefaultPoolRef*).
type PoolObjectReference struct {
	Group string `json:"group,omitempty"`
	Kind  string `json:"kind,omitempty"`
	Name  string `json:"name"`
}

// Condition types and reasons shared by the model resources.
const (
	ConditionAccepted = "Accepted"

	ReasonAccepted       = "Accepted"
	ReasonPending        = "Pending"
	ReasonModelNameInUse = "ModelNameInUse"
)

// ModelStatus is the status of InferenceObjective, InferenceModelRewrite and
// InferenceModel: a list of conditions.
type ModelStatus struct {
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// InferenceObjective (v1.5.0) gives a request objective a priority on a pool.
// Clients select it with the x-gateway-inference-objective header.
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type InferenceObjective struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   InferenceObjectiveSpec `json:"spec,omitempty"`
	Status ModelStatus            `json:"status,omitempty"`
}

// InferenceObjectiveSpec is the spec of an InferenceObjective.
type InferenceObjectiveSpec struct {
	// Priority: higher is served first; negative priorities are sheddable.
	// Unset means 0.
	Priority *int `json:"priority,omitempty"`
	// PoolRef defaults to group inference.networking.k8s.io, kind InferencePool.
	PoolRef PoolObjectReference `json:"poolRef"`
}

// InferenceModelRewrite (v1.5.0) rewrites client model names into weighted
// target models on a pool.
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type InferenceModelRewrite struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   InferenceModelRewriteSpec `json:"spec,omitempty"`
	Status ModelStatus               `json:"status,omitempty"`
}

// InferenceModelRewriteSpec is the spec of an InferenceModelRewrite.
type InferenceModelRewriteSpec struct {
	// PoolRef defaults to group inference.networking.k8s.io, kind InferencePool.
	PoolRef *PoolObjectReference        `json:"poolRef"`
	Rules   []InferenceModelRewriteRule `json:"rules"`
}

// InferenceModelRewriteRule maps matching model names to weighted targets.
type InferenceModelRewriteRule struct {
	// Matches are ORed; an empty list matches every model name.
	Matches []Match       `json:"matches,omitempty"`
	Targets []TargetModel `json:"targets,omitempty"`
}

// Match selects requests by model name.
type Match struct {
	Model *ModelMatch `json:"model,omitempty"`
}

// ModelMatch compares the request's model name; Type defaults to Exact (the
// only type the CRD allows).
type ModelMatch struct {
	Type  *string `json:"type,omitempty"`
	Value string  `json:"value"`
}

// MatchExact is the only ModelMatch type.
const MatchExact = "Exact"

// TargetModel is one weighted rewrite target.
type TargetModel struct {
	Weight       int32  `json:"weight"`
	ModelRewrite string `json:"modelRewrite"`
}

// InferenceModel (legacy, v0.5.1) maps a client model name to a criticality
// and weighted target models on a pool.
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type InferenceModel struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   InferenceModelSpec `json:"spec,omitempty"`
	Status ModelStatus        `json:"status,omitempty"`
}

// Criticality of a legacy InferenceModel.
type Criticality string

const (
	Critical  Criticality = "Critical"
	Standard  Criticality = "Standard"
	Sheddable Criticality = "Sheddable"
)

// InferenceModelSpec is the spec of a legacy InferenceModel.
type InferenceModelSpec struct {
	ModelName string `json:"modelName"`
	// Criticality defaults to Standard.
	Criticality  *Criticality        `json:"criticality,omitempty"`
	TargetModels []LegacyTargetModel `json:"targetModels,omitempty"`
	PoolRef      PoolObjectReference `json:"poolRef"`
}

// LegacyTargetModel is a weighted target of a legacy InferenceModel; a nil
// weight means all targets share traffic equally.
type LegacyTargetModel struct {
	Name   string `json:"name"`
	Weight *int32 `json:"weight,omitempty"`
}

// InferencePool (legacy, v0.5.1) selects model-server pods.
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type InferencePool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   InferencePoolSpec   `json:"spec,omitempty"`
	Status InferencePoolStatus `json:"status,omitempty"`
}

// InferencePoolSpec is the spec of a legacy InferencePool.
type InferencePoolSpec struct {
	// Selector is a plain label map (not a metav1.LabelSelector).
	Selector         map[string]string `json:"selector"`
	TargetPortNumber int32             `json:"targetPortNumber"`
	ExtensionRef     *Extension        `json:"extensionRef,omitempty"`
}

// Extension references an external endpoint picker (a Service; port 9002
// when unset), asked over ext_proc like a v1 pool's endpointPickerRef.
type Extension struct {
	Group       *string `json:"group,omitempty"`
	Kind        *string `json:"kind,omitempty"`
	Name        string  `json:"name"`
	PortNumber  *int32  `json:"portNumber,omitempty"`
	FailureMode *string `json:"failureMode,omitempty"`
}

// InferencePoolStatus of the legacy pool. Note the json name "parent" (singular),
// as in the v0.5.1 CRD.
type InferencePoolStatus struct {
	Parents []PoolStatus `json:"parent,omitempty"`
}

// PoolStatus is the pool's status as seen by one Gateway.
type PoolStatus struct {
	GatewayRef ParentGatewayReference `json:"parentRef"`
	Conditions []metav1.Condition     `json:"conditions,omitempty"`
}

// ParentGatewayReference names a Gateway.
type ParentGatewayReference struct {
	Group     *string `json:"group"`
	Kind      *string `json:"kind"`
	Name      string  `json:"name"`
	Namespace *string `json:"namespace,omitempty"`
}

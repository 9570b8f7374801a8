package translate_test

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/infergate/infergate/controlplane/translate"
)

func TestControllerNameOption(t *testing.T) {
	in := &translate.Inputs{
		GatewayClasses: []*gwv1.GatewayClass{
			{ObjectMeta: metav1.ObjectMeta{Name: "ours"}, Spec: gwv1.GatewayClassSpec{ControllerName: "example.com/custom"}},
			{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: gwv1.GatewayClassSpec{ControllerName: translate.DefaultControllerName}},
		},
		Gateways: []*gwv1.Gateway{
			{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns"}, Spec: gwv1.GatewaySpec{GatewayClassName: "ours"}},
			{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "ns"}, Spec: gwv1.GatewaySpec{GatewayClassName: "default"}},
		},
	}
	out := translate.Translate(in, translate.Options{ControllerName: "example.com/custom"})
	if _, ok := out.Gateways["ns/a"]; !ok || len(out.Gateways) != 1 {
		t.Fatalf("gateways %v, want only ns/a", keys(out.Gateways))
	}
	if _, ok := out.Status.GatewayClasses["ours"]; !ok || len(out.Status.GatewayClasses) != 1 {
		t.Fatalf("classes %v, want only ours", keys(out.Status.GatewayClasses))
	}
	// A gateway without listeners is served (empty) but not programmed.
	st := out.Status.Gateways["ns/a"]
	if c := st.Conditions[1]; c.Type != "Programmed" || c.Status != metav1.ConditionFalse {
		t.Fatalf("Programmed condition %+v", c)
	}
}

func TestTranslateNilInputs(t *testing.T) {
	if out := translate.Translate(nil, translate.Options{}); len(out.Gateways) != 0 {
		t.Fatal("gateways from nil inputs")
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestSupportedFeaturesFollowChannel: the retry features are published
// only when the cluster's CRDs are experimental (the standard HTTPRoute CRD
// has no retry field), and the list stays sorted either way.
func TestSupportedFeaturesFollowChannel(t *testing.T) {
	for _, tc := range []struct {
		channel   string
		wantRetry bool
	}{{"", false}, {"standard", false}, {translate.ChannelExperimental, true}} {
		in := &translate.Inputs{
			GatewayClasses:    []*gwv1.GatewayClass{{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: gwv1.GatewayClassSpec{ControllerName: translate.DefaultControllerName}}},
			GatewayAPIChannel: tc.channel,
		}
		got := translate.Translate(in, translate.Options{}).Status.GatewayClasses["c"].SupportedFeatures
		names := map[gwv1.FeatureName]bool{}
		for i, f := range got {
			names[f.Name] = true
			if i > 0 && got[i-1].Name >= f.Name {
				t.Errorf("channel %q: %s before %s, want ascending", tc.channel, got[i-1].Name, f.Name)
			}
		}
		if !names["HTTPRoute"] || names["HTTPRouteRetry"] != tc.wantRetry || names["HTTPRouteRetryConnectionError"] != tc.wantRetry {
			t.Errorf("channel %q: HTTPRoute %v, HTTPRouteRetry %v, want retry %v", tc.channel, names["HTTPRoute"], names["HTTPRouteRetry"], tc.wantRetry)
		}
		if len(got) != len(translate.SupportedFeatures)+map[bool]int{true: len(translate.ExperimentalFeatures)}[tc.wantRetry] {
			t.Errorf("channel %q: %d features", tc.channel, len(got))
		}
	}
}

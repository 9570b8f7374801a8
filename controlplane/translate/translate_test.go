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

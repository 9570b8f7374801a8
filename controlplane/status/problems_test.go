package status

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"

	"github.com/infergate/infergate/controlplane/apis/inferencealpha"
	"github.com/infergate/infergate/controlplane/fleet"
	"github.com/infergate/infergate/controlplane/source/kube"
	"github.com/infergate/infergate/controlplane/translate"
	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

const tokUnusable = fleetv1.ReasonTokenizerUnusable

// poolParent is our parent entry for Gateway ns/name with one Accepted
// condition.
func poolParent(ns, name string) infv1.ParentStatus {
	return infv1.ParentStatus{
		ParentRef:      infv1.ParentReference{Kind: "Gateway", Namespace: infv1.Namespace(ns), Name: infv1.ObjectName(name)},
		ControllerName: translate.DefaultControllerName,
		Conditions:     []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", ObservedGeneration: 3}},
	}
}

// The writer puts ConditionProxyProblems on the parent entry of the
// Gateway whose proxies report a problem of the pool — not on another
// Gateway's entry, not for another pool's or another Gateway's problems —
// and takes it off once they stop; the translation's status is not
// changed in the process.
func TestWriterShowsPoolProblems(t *testing.T) {
	ctx := context.Background()
	pool := &infv1.InferencePool{
		TypeMeta:   metav1.TypeMeta{APIVersion: "inference.networking.k8s.io/v1", Kind: "InferencePool"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "llama", Generation: 3, ResourceVersion: "1"},
	}
	legacy := &inferencealpha.InferencePool{
		TypeMeta:   metav1.TypeMeta{APIVersion: "inference.networking.x-k8s.io/v1alpha2", Kind: "InferencePool"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "old", Generation: 2, ResourceVersion: "1"},
	}
	var objs []runtime.Object
	for _, o := range []any{pool, legacy} {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, &unstructured.Unstructured{Object: u})
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		kube.InferencePools: "InferencePoolList", kube.LegacyInferencePools: "InferencePoolList"}, objs...)
	w := NewWriter(dyn, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	var reported map[string][]fleet.Problem
	w.SetPoolProblems(func() map[string][]fleet.Problem { return reported })

	gwA, gwB := "gw-ns/a", "gw-ns/b"
	want := infv1.InferencePoolStatus{Parents: []infv1.ParentStatus{poolParent("gw-ns", "a"), poolParent("gw-ns", "b")}}
	gwNS := "gw-ns"
	legacyWant := inferencealpha.InferencePoolStatus{Parents: []inferencealpha.PoolStatus{{
		GatewayRef: inferencealpha.ParentGatewayReference{Name: "a", Namespace: &gwNS},
		Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", ObservedGeneration: 2}},
	}}}
	in := &translate.Inputs{InferencePools: []*infv1.InferencePool{pool}, LegacyInferencePools: []*inferencealpha.InferencePool{legacy}}
	st := &translate.Status{
		InferencePools:       map[string]infv1.InferencePoolStatus{"ml/llama": want},
		LegacyInferencePools: map[string]inferencealpha.InferencePoolStatus{"ml/old": legacyWant},
	}
	// read returns the written parents' conditions, by Gateway name.
	read := func() (map[string][]metav1.Condition, []metav1.Condition) {
		t.Helper()
		got, err := dyn.Resource(kube.InferencePools).Namespace("ml").Get(ctx, "llama", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var p infv1.InferencePool
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(got.Object, &p); err != nil {
			t.Fatal(err)
		}
		out := map[string][]metav1.Condition{}
		for _, ps := range p.Status.Parents {
			out[string(ps.ParentRef.Name)] = ps.Conditions
		}
		got, err = dyn.Resource(kube.LegacyInferencePools).Namespace("ml").Get(ctx, "old", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var lp inferencealpha.InferencePool
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(got.Object, &lp); err != nil {
			t.Fatal(err)
		}
		if len(lp.Status.Parents) != 1 {
			t.Fatalf("legacy pool parents %+v", lp.Status.Parents)
		}
		return out, lp.Status.Parents[0].Conditions
	}
	write := func() {
		t.Helper()
		if _, err := w.Write(ctx, in, st); err != nil {
			t.Fatal(err)
		}
	}

	llama := translate.PoolBackendName(gwA, "ml", "llama", false)
	reported = map[string][]fleet.Problem{
		gwA: {
			{Node: "proxy-1", Pool: llama, Reason: tokUnusable, Message: "tokenizer /t/llama.json: unexpected EOF"},
			{Node: "proxy-2", Pool: llama, Reason: tokUnusable, Message: "tokenizer /t/llama.json: unexpected EOF"},
			// Another pool of the same Gateway, and the v1 pool's name
			// for the legacy kind: neither is this pool's.
			{Node: "proxy-1", Pool: translate.PoolBackendName(gwA, "ml", "other", false), Reason: tokUnusable, Message: "x"},
			{Node: "proxy-3", Pool: translate.PoolBackendName(gwA, "ml", "llama", true), Reason: tokUnusable, Message: "not v1"},
			{Node: "proxy-4", Pool: translate.PoolBackendName(gwA, "ml", "old", true), Reason: tokUnusable, Message: "legacy"},
		},
		// Gateway b's proxies report this pool under a's name: not theirs.
		gwB: {{Node: "proxy-9", Pool: llama, Reason: tokUnusable, Message: "y"}},
	}
	write()
	conds, legacyConds := read()
	c := meta.FindStatusCondition(conds["a"], ConditionProxyProblems)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != tokUnusable || c.ObservedGeneration != 3 ||
		c.Message != "tokenizer /t/llama.json: unexpected EOF (proxies proxy-1, proxy-2)" {
		t.Fatalf("gateway a's entry: %+v", conds["a"])
	}
	if meta.FindStatusCondition(conds["b"], ConditionProxyProblems) != nil {
		t.Fatalf("gateway b's entry has the condition: %+v", conds["b"])
	}
	if c := meta.FindStatusCondition(legacyConds, ConditionProxyProblems); c == nil || c.Message != "legacy (proxy proxy-4)" || c.ObservedGeneration != 2 {
		t.Fatalf("legacy pool's entry: %+v", legacyConds)
	}
	if len(st.InferencePools["ml/llama"].Parents[0].Conditions) != 1 || len(st.LegacyInferencePools["ml/old"].Parents[0].Conditions) != 1 {
		t.Fatal("the writer changed the translation's status")
	}

	// The proxies stop reporting it: the condition goes, the rest stays.
	reported = map[string][]fleet.Problem{}
	write()
	conds, legacyConds = read()
	for name, cs := range map[string][]metav1.Condition{"a": conds["a"], "b": conds["b"], "legacy": legacyConds} {
		if meta.FindStatusCondition(cs, ConditionProxyProblems) != nil || meta.FindStatusCondition(cs, "Accepted") == nil {
			t.Errorf("%s after the problems went: %+v", name, cs)
		}
	}
}

// The condition lists each distinct problem once with the proxies that
// report it, names a few proxies and counts the rest, says
// MultipleProblems for several reasons, and stays within its bound on a
// rune boundary.
func TestProblemCondition(t *testing.T) {
	var ps []fleet.Problem
	for _, n := range []string{"p1", "p2", "p3", "p4", "p5"} {
		ps = append(ps, fleet.Problem{Node: n, Pool: "x", Reason: tokUnusable, Message: "missing"})
	}
	c := problemCondition(ps, 1)
	if c.Reason != tokUnusable || c.Message != "missing (proxies p1, p2, p3 and 2 more)" {
		t.Errorf("five proxies: %s %q", c.Reason, c.Message)
	}
	c = problemCondition([]fleet.Problem{
		{Node: "p1", Pool: "x", Reason: "Another", Message: "b"},
		{Node: "p1", Pool: "x", Reason: tokUnusable, Message: "a"},
		{Node: "p2", Pool: "x", Reason: tokUnusable, Message: "c"},
	}, 1)
	if c.Reason != ReasonMultipleProblems || c.Message != "b (proxy p1); a (proxy p1); c (proxy p2)" {
		t.Errorf("several reasons: %s %q", c.Reason, c.Message)
	}
	c = problemCondition([]fleet.Problem{
		{Node: "p1", Pool: "x", Reason: tokUnusable, Message: strings.Repeat("é", 400)},
		{Node: "p2", Pool: "x", Reason: tokUnusable, Message: strings.Repeat("ü", 400)},
	}, 1)
	if len(c.Message) > maxRejectionMessage || !utf8.ValidString(c.Message) || !strings.HasSuffix(c.Message, "...") {
		t.Errorf("long: %d bytes, valid %v", len(c.Message), utf8.ValidString(c.Message))
	}
}

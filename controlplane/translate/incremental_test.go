package translate_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1b1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/infergate/infergate/controlplane/source/file"
	"github.com/infergate/infergate/controlplane/translate"
)

// inputSlices returns the slice fields of in ([]*T), addressable.
func inputSlices(in *translate.Inputs) []reflect.Value {
	v := reflect.ValueOf(in).Elem()
	var out []reflect.Value
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Slice {
			out = append(out, f)
		}
	}
	return out
}

// tweak returns a changed copy of obj, the kind of edit a user or a
// controller makes: a pod's readiness, a route's path or parent, a port.
func tweak(r *rand.Rand, obj any, gateways []*gwv1.Gateway) any {
	c := reflect.ValueOf(obj).MethodByName("DeepCopy").Call(nil)[0].Interface()
	switch o := c.(type) {
	case *corev1.Pod:
		for i := range o.Status.Conditions {
			if o.Status.Conditions[i].Type == corev1.PodReady {
				if o.Status.Conditions[i].Status == corev1.ConditionTrue {
					o.Status.Conditions[i].Status = corev1.ConditionFalse
				} else {
					o.Status.Conditions[i].Status = corev1.ConditionTrue
				}
				return o
			}
		}
		o.Status.PodIP = fmt.Sprintf("10.99.%d.%d", r.IntN(250), r.IntN(250)+1)
	case *gwv1.HTTPRoute:
		switch {
		case r.IntN(3) == 0 && len(o.Spec.ParentRefs) > 0 && len(gateways) > 0:
			// Move to another Gateway (maybe in another namespace).
			gw := gateways[r.IntN(len(gateways))]
			ns := gwv1.Namespace(gw.Namespace)
			o.Spec.ParentRefs[0].Name, o.Spec.ParentRefs[0].Namespace = gwv1.ObjectName(gw.Name), &ns
		case len(o.Spec.Rules) > 0 && len(o.Spec.Rules[0].BackendRefs) > 0:
			o.Spec.Rules[0].BackendRefs = o.Spec.Rules[0].BackendRefs[1:]
		default:
			o.Spec.Hostnames = append(o.Spec.Hostnames, "changed.example.com")
		}
	case *corev1.Service:
		if len(o.Spec.Ports) > 0 {
			o.Spec.Ports[0].Port++
		}
	case *gwv1.Gateway:
		if len(o.Spec.Listeners) > 0 {
			o.Spec.Listeners[0].Port++
		}
	case *infv1.InferencePool:
		if len(o.Spec.TargetPorts) > 0 {
			o.Spec.TargetPorts[0].Number++
		}
	case *corev1.Secret:
		o.Data = nil
	case *corev1.ConfigMap:
		o.Data = nil
	case *corev1.Namespace:
		if o.Labels == nil {
			o.Labels = map[string]string{}
		}
		o.Labels["tweaked"] = "yes"
	case *gwv1b1.ReferenceGrant:
		o.Spec.From = nil
	case *discoveryv1.EndpointSlice:
		if n := len(o.Endpoints); n > 0 {
			o.Endpoints = o.Endpoints[:n-1]
		}
	case *gwv1.ListenerSet:
		if r.IntN(2) == 0 && len(gateways) > 0 {
			o.Spec.ParentRef.Name = gwv1.ObjectName(gateways[r.IntN(len(gateways))].Name)
		} else if len(o.Spec.Listeners) > 0 {
			o.Spec.Listeners[0].Port++
		}
	default:
		m := c.(metav1.Object)
		a := map[string]string{}
		for k, v := range m.GetAnnotations() {
			a[k] = v
		}
		a["test.infergate.dev/tweak"] = fmt.Sprint(r.Int())
		m.SetAnnotations(a)
	}
	return c
}

// TestIncrementalEqualsFull edits every golden input at random — objects
// removed, put back and changed, a few at a time — and checks after each
// round that translating only the gateways the noted changes affect gives
// exactly what translating everything gives (resources and statuses),
// chaining each incremental output into the next round.
func TestIncrementalEqualsFull(t *testing.T) {
	ins, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ins = append(ins, "testdata/incremental/mixed.yaml")
	rounds := 80
	if testing.Short() {
		rounds = 20
	}
	for _, path := range ins {
		name := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(path), ".yaml"), ".in")
		t.Run(name, func(t *testing.T) {
			in, err := file.LoadFile(path, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(uint64(len(name)), 7))
			prev := translate.Translate(in, translate.Options{})
			type removed struct {
				field int
				obj   reflect.Value
			}
			var gone []removed
			reused, redone := 0, 0
			for round := range rounds {
				var ch translate.Changes
				var did []string
				for range 1 + r.IntN(3) {
					fields := inputSlices(in)
					switch op := r.IntN(4); {
					case op == 0 && len(gone) > 0: // put one back
						i := r.IntN(len(gone))
						g := gone[i]
						gone = append(gone[:i], gone[i+1:]...)
						f := fields[g.field]
						f.Set(reflect.Append(f, g.obj))
						ch.Note(g.obj.Interface())
						did = append(did, fmt.Sprintf("re-add %T", g.obj.Interface()))
					default: // remove (op 1) or change (ops 2, 3) one
						var nonEmpty []int
						for i, f := range fields {
							if f.Len() > 0 {
								nonEmpty = append(nonEmpty, i)
							}
						}
						if len(nonEmpty) == 0 {
							continue
						}
						fi := nonEmpty[r.IntN(len(nonEmpty))]
						f := fields[fi]
						j := r.IntN(f.Len())
						old := f.Index(j)
						ch.Note(old.Interface())
						if op == 1 {
							gone = append(gone, removed{fi, old})
							rest := reflect.AppendSlice(reflect.MakeSlice(f.Type(), 0, f.Len()-1), f.Slice(0, j))
							f.Set(reflect.AppendSlice(rest, f.Slice(j+1, f.Len())))
							did = append(did, fmt.Sprintf("remove %T", old.Interface()))
							continue
						}
						nv := tweak(r, old.Interface(), in.Gateways)
						ch.Note(nv)
						// A new slice: the previous inputs stay as they were.
						cp := reflect.AppendSlice(reflect.MakeSlice(f.Type(), 0, f.Len()), f)
						cp.Index(j).Set(reflect.ValueOf(nv))
						f.Set(cp)
						did = append(did, fmt.Sprintf("change %T", nv))
					}
				}
				inc := translate.TranslateIncremental(prev, in, translate.Options{}, &ch)
				full := translate.Translate(in, translate.Options{})
				if got, want := render(t, inc), render(t, full); !bytes.Equal(got, want) {
					t.Fatalf("round %d (%s; changes %+v): incremental differs from full:\n%s", round, strings.Join(did, ", "), ch, diff(string(want), string(got)))
				}
				for g, res := range inc.Gateways {
					if prev.Gateways[g] == res {
						reused++
					} else {
						redone++
					}
				}
				prev = inc
			}
			t.Logf("%d gateway translations reused, %d redone", reused, redone)
		})
	}
}

// TestIncrementalReusesUnaffectedGateways: a change in one gateway's
// namespace translates that gateway only; the other keeps its resources.
func TestIncrementalReusesUnaffectedGateways(t *testing.T) {
	in, err := file.LoadFile("testdata/two-gateways.in.yaml", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	prev := translate.Translate(in, translate.Options{})
	if len(prev.Gateways) < 2 {
		t.Fatalf("want two gateways, got %d", len(prev.Gateways))
	}
	var ch translate.Changes
	var changed string
	for _, r := range in.HTTPRoutes {
		c := r.DeepCopy()
		c.Spec.Hostnames = append(c.Spec.Hostnames, "new.example.com")
		ch.Note(r)
		ch.Note(c)
		*r = *c
		changed = string(r.Spec.ParentRefs[0].Name)
		break
	}
	inc := translate.TranslateIncremental(prev, in, translate.Options{}, &ch)
	same := 0
	for g, res := range inc.Gateways {
		if prev.Gateways[g] == res {
			same++
			if strings.HasSuffix(g, "/"+changed) {
				t.Errorf("gateway %s, named by the changed route, was not translated again", g)
			}
		}
	}
	if same == 0 {
		t.Error("every gateway was translated again")
	}
	if (&translate.Changes{}).Empty() != true || ch.Empty() {
		t.Error("Empty is wrong")
	}
	// Nothing noted (a status written): the previous output as it is.
	if again := translate.TranslateIncremental(inc, in, translate.Options{}, &translate.Changes{}); again != inc {
		t.Error("an empty change translated again")
	}
	if again := translate.TranslateIncremental(inc, in, translate.Options{ControllerName: "example.com/other"}, &translate.Changes{}); again == inc {
		t.Error("other options kept the previous output")
	}
}

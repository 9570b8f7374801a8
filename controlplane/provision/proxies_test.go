package provision

import (
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestReadyProxies(t *testing.T) {
	pod := func(ns, name string, labels map[string]string, ready bool, mutate ...func(*corev1.Pod)) *corev1.Pod {
		status := corev1.ConditionFalse
		if ready {
			status = corev1.ConditionTrue
		}
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			Status: corev1.PodStatus{PodIP: "10.0.0.1", Conditions: []corev1.PodCondition{
				{Type: corev1.PodReady, Status: status},
			}},
		}
		for _, m := range mutate {
			m(p)
		}
		return p
	}
	gwA, gwB := SelectorLabels("a"), SelectorLabels("b")
	now := metav1.Now()
	pods := []*corev1.Pod{
		pod("default", "a-1", gwA, true),
		pod("default", "a-2", gwA, true),
		pod("default", "a-3", gwA, false), // not Ready yet
		pod("default", "a-4", gwA, true, func(p *corev1.Pod) { p.DeletionTimestamp = &now }),
		pod("default", "a-5", gwA, true, func(p *corev1.Pod) { p.Status.PodIP = "" }),
		pod("other", "a-1", gwA, true), // Gateway other/a, not default/a
		pod("default", "b-1", gwB, true),
		pod("default", "sim", map[string]string{"app": "sim"}, true),
		pod("default", "lookalike", map[string]string{LabelGateway: "a"}, true), // not our proxy
	}
	want := map[string]int{"default/a": 2, "other/a": 1, "default/b": 1}
	if got := ReadyProxies(pods); !maps.Equal(got, want) {
		t.Fatalf("ReadyProxies = %v, want %v", got, want)
	}
}

package provision

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/infergate/infergate/controlplane/translate"
)

// ReadyProxies counts the serving proxy pods of every Gateway, keyed
// "<namespace>/<name>": pods carrying SelectorLabels(name) in the Gateway's
// namespace that are Ready, have an IP and are not terminating. It is a
// pure function of the pods, so every control-plane replica reading the
// same informer cache gets the same counts (the xDS server's proxy count
// builds on it).
func ReadyProxies(pods []*corev1.Pod) map[string]int {
	out := map[string]int{}
	for _, p := range pods {
		gw, ok := p.Labels[LabelGateway]
		if !ok || p.Labels[LabelName] != nameValue || !translate.PodServing(p) {
			continue
		}
		out[p.Namespace+"/"+gw]++
	}
	return out
}

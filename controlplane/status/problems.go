package status

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"

	"github.com/infergate/infergate/controlplane/apis/inferencealpha"
	"github.com/infergate/infergate/controlplane/fleet"
	"github.com/infergate/infergate/controlplane/translate"
	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// ConditionProxyProblems is the condition on a pool's parent entry for a
// Gateway (implementation-specific, hence the domain prefix), present
// (True) while any live proxy of the Gateway reports that it cannot run
// the pool as configured, and absent otherwise. Its reason is the
// proxies' (fleetv1.ReasonTokenizerUnusable: the pool's tokenizer file
// does not load, so its prefix matching stays approximate), or
// ReasonMultipleProblems when they report several; the message says what
// and which proxies.
const ConditionProxyProblems = "infergate.dev/ProxyProblems"

// ReasonMultipleProblems is ConditionProxyProblems' reason when the
// proxies report problems of more than one reason.
const ReasonMultipleProblems = "MultipleProblems"

// maxProblemProxies bounds the proxies a problem message names.
const maxProblemProxies = 3

// SetPoolProblems gives the writer the problems the Gateways' proxies
// currently report about their pools, per Gateway ("<ns>/<name>"), as
// fleet.Aggregator Problems returns them; a pool parent entry for a
// Gateway whose proxies report problems of that pool carries
// ConditionProxyProblems. Call before Run.
func (w *Writer) SetPoolProblems(fn func() map[string][]fleet.Problem) {
	w.mu.Lock()
	w.problems = fn
	w.mu.Unlock()
}

// poolProblems are the problems of one pool, by Gateway.
type poolProblems struct {
	byGateway map[string][]fleet.Problem
}

// of returns the problems the proxies of gw report about the pool named
// backend.
func (p poolProblems) of(gw, backend string) []fleet.Problem {
	var out []fleet.Problem
	for _, pr := range p.byGateway[gw] {
		if pr.Pool == backend {
			out = append(out, pr)
		}
	}
	return out
}

// withPoolProblems returns want with ConditionProxyProblems on each parent
// Gateway entry whose proxies report problems of pool o, and whether any
// did.
func withPoolProblems(want infv1.InferencePoolStatus, o *infv1.InferencePool, ps poolProblems) (infv1.InferencePoolStatus, bool) {
	var found bool
	backend := func(gw string) string { return translate.PoolBackendName(gw, o.Namespace, o.Name, false) }
	want.Parents, found = withProblems(want.Parents, ps, o.Generation, backend, func(p *infv1.ParentStatus) (string, *[]metav1.Condition) {
		if p.ParentRef.Kind != "" && p.ParentRef.Kind != "Gateway" {
			return "", nil
		}
		ns := string(p.ParentRef.Namespace)
		if ns == "" {
			ns = o.Namespace
		}
		return ns + "/" + string(p.ParentRef.Name), &p.Conditions
	})
	return want, found
}

// withLegacyPoolProblems is withPoolProblems for a v1alpha2 pool.
func withLegacyPoolProblems(want inferencealpha.InferencePoolStatus, o *inferencealpha.InferencePool, ps poolProblems) (inferencealpha.InferencePoolStatus, bool) {
	var found bool
	backend := func(gw string) string { return translate.PoolBackendName(gw, o.Namespace, o.Name, true) }
	want.Parents, found = withProblems(want.Parents, ps, o.Generation, backend, func(p *inferencealpha.PoolStatus) (string, *[]metav1.Condition) {
		if p.GatewayRef.Kind != nil && *p.GatewayRef.Kind != "Gateway" {
			return "", nil
		}
		ns := o.Namespace
		if p.GatewayRef.Namespace != nil && *p.GatewayRef.Namespace != "" {
			ns = *p.GatewayRef.Namespace
		}
		return ns + "/" + p.GatewayRef.Name, &p.Conditions
	})
	return want, found
}

// withProblems adds the condition to each parent entry whose Gateway's
// proxies report problems of the pool; parent gives an entry's Gateway
// ("<ns>/<name>"; "": not a Gateway) and its conditions, backend the
// pool's Backend name in a Gateway's snapshot. The parents belong to the
// translation: they are copied before a change, never changed.
func withProblems[P any](parents []P, ps poolProblems, generation int64, backend func(gw string) string, parent func(*P) (string, *[]metav1.Condition)) ([]P, bool) {
	found := false
	for i := range parents {
		gw, _ := parent(&parents[i])
		if gw == "" {
			continue
		}
		mine := ps.of(gw, backend(gw))
		if len(mine) == 0 {
			continue
		}
		if !found {
			parents = slices.Clone(parents)
			found = true
		}
		_, conds := parent(&parents[i])
		*conds = append(slices.Clone(*conds), problemCondition(mine, generation))
	}
	return parents, found
}

// problemCondition summarises one pool's problems as its proxies report
// them (sorted by reason, then proxy): each distinct problem once, with
// the proxies that report it.
func problemCondition(ps []fleet.Problem, generation int64) metav1.Condition {
	type group struct {
		reason, message string
		nodes           []string
	}
	var groups []*group
	reasons := map[string]bool{}
	for _, p := range ps {
		reasons[p.Reason] = true
		i := slices.IndexFunc(groups, func(g *group) bool { return g.reason == p.Reason && g.message == p.Message })
		if i < 0 {
			groups = append(groups, &group{reason: p.Reason, message: p.Message})
			i = len(groups) - 1
		}
		groups[i].nodes = append(groups[i].nodes, p.Node)
	}
	parts := make([]string, len(groups))
	for i, g := range groups {
		slices.Sort(g.nodes)
		who := "proxy " + g.nodes[0]
		if n := len(g.nodes); n > 1 {
			shown := g.nodes[:min(n, maxProblemProxies)]
			who = "proxies " + strings.Join(shown, ", ")
			if n > len(shown) {
				who += fmt.Sprintf(" and %d more", n-len(shown))
			}
		}
		parts[i] = fmt.Sprintf("%s (%s)", g.message, who)
	}
	reason := ps[0].Reason
	if len(reasons) > 1 {
		reason = ReasonMultipleProblems
	}
	return metav1.Condition{
		Type:               ConditionProxyProblems,
		Status:             metav1.ConditionTrue,
		Reason:             reason,
		Message:            fleetv1.ShortenMessage(strings.Join(parts, "; "), maxRejectionMessage),
		ObservedGeneration: generation,
	}
}

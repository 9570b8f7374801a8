package translate

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"

	"github.com/infergate/infergate/controlplane/apis/inferencealpha"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Priorities of the legacy criticalities (Critical > Standard = 0 > Sheddable).
const (
	PriorityCritical  = 1
	PriorityStandard  = 0
	PrioritySheddable = -1
)

// modelSource is one InferenceModel / InferenceObjective / InferenceModelRewrite
// normalised into rule templates for its pool.
type modelSource struct {
	kind   string // lower-case kind, used in rule names
	meta   *metav1.ObjectMeta
	poolID string
	// rules carry a name suffix ("<kind>/<ns>/<name>[/...]") and no pool;
	// modelRules scopes them to a gateway.
	rules []*snapshotv1.ModelRule
	// conflict is the reason this source is not served ("" when it is).
	conflict, conflictMsg string
	// served is set when a gateway of ours references the pool.
	served bool
	// notes explain parts of an accepted source that are not served.
	notes []string
}

type modelIndex struct {
	byPool map[string][]*modelSource
	all    []*modelSource
}

// poolRefID resolves a model resource's poolRef into a pool identity (see
// resolvedRef.poolID), "" when it names something other than an InferencePool.
func poolRefID(ref inferencealpha.PoolObjectReference, ns, defaultGroup string) string {
	group, kind := ref.Group, ref.Kind
	if group == "" {
		group = defaultGroup
	}
	if kind == "" {
		kind = kindPool
	}
	if kind != kindPool {
		return ""
	}
	switch group {
	case infv1.GroupName:
		return "v1/" + ns + "/" + ref.Name
	case inferencealpha.Group:
		return "v1alpha2/" + ns + "/" + ref.Name
	}
	return ""
}

func (t *translator) indexModels() *modelIndex {
	idx := &modelIndex{byPool: map[string][]*modelSource{}}
	add := func(s *modelSource) {
		if s.poolID == "" {
			return
		}
		idx.all = append(idx.all, s)
		idx.byPool[s.poolID] = append(idx.byPool[s.poolID], s)
	}

	// Legacy InferenceModels: the oldest claim on a model name in a pool wins.
	models := append([]*inferencealpha.InferenceModel(nil), t.in.InferenceModels...)
	sort.Slice(models, func(i, j int) bool { return olderFirst(&models[i].ObjectMeta, &models[j].ObjectMeta) })
	claimed := map[string]string{} // poolID + "\x00" + modelName -> winner
	for _, m := range models {
		s := &modelSource{kind: "inferencemodel", meta: &m.ObjectMeta,
			poolID: poolRefID(m.Spec.PoolRef, m.Namespace, inferencealpha.Group)}
		claim := s.poolID + "\x00" + m.Spec.ModelName
		if winner, ok := claimed[claim]; ok {
			s.conflict = inferencealpha.ReasonModelNameInUse
			s.conflictMsg = fmt.Sprintf("model name %q is already served on this pool by %s", m.Spec.ModelName, winner)
		} else {
			claimed[claim] = "InferenceModel " + key(&m.ObjectMeta)
			prio := int32(PriorityStandard)
			if m.Spec.Criticality != nil {
				switch *m.Spec.Criticality {
				case inferencealpha.Critical:
					prio = PriorityCritical
				case inferencealpha.Sheddable:
					prio = PrioritySheddable
				}
			}
			rule := &snapshotv1.ModelRule{
				Name:      "inferencemodel/" + key(&m.ObjectMeta),
				ModelName: m.Spec.ModelName,
				Priority:  prio,
				Source:    "InferenceModel " + key(&m.ObjectMeta),
			}
			for _, tm := range m.Spec.TargetModels {
				w := uint32(1)
				if tm.Weight != nil {
					w = uint32(max(*tm.Weight, 0))
				}
				rule.Targets = append(rule.Targets, &snapshotv1.TargetModel{Name: tm.Name, Weight: w})
			}
			s.rules = []*snapshotv1.ModelRule{rule}
		}
		add(s)
	}

	for _, o := range t.in.InferenceObjectives {
		prio := int32(0)
		if o.Spec.Priority != nil {
			prio = int32(*o.Spec.Priority)
		}
		add(&modelSource{kind: "inferenceobjective", meta: &o.ObjectMeta,
			poolID: poolRefID(o.Spec.PoolRef, o.Namespace, infv1.GroupName),
			rules: []*snapshotv1.ModelRule{{
				Name:      "inferenceobjective/" + key(&o.ObjectMeta),
				Objective: o.Name,
				Priority:  prio,
				Source:    "InferenceObjective " + key(&o.ObjectMeta),
			}}})
	}

	// Rewrites claim model names after the legacy InferenceModels (which
	// also carry a priority), oldest first; a proxy accepts one rule per
	// model name and pool, so later claims are dropped with a note.
	rewrites := append([]*inferencealpha.InferenceModelRewrite(nil), t.in.InferenceModelRewrites...)
	sort.Slice(rewrites, func(i, j int) bool { return olderFirst(&rewrites[i].ObjectMeta, &rewrites[j].ObjectMeta) })
	for _, rw := range rewrites {
		if rw.Spec.PoolRef == nil {
			continue
		}
		s := &modelSource{kind: "inferencemodelrewrite", meta: &rw.ObjectMeta,
			poolID: poolRefID(*rw.Spec.PoolRef, rw.Namespace, infv1.GroupName)}
		for i, rule := range rw.Spec.Rules {
			targets := rewriteTargets(rule.Targets)
			base := fmt.Sprintf("inferencemodelrewrite/%s/%d", key(&rw.ObjectMeta), i)
			src := fmt.Sprintf("InferenceModelRewrite %s rule %d", key(&rw.ObjectMeta), i)
			if len(rule.Matches) == 0 {
				// A rule without matches applies to every model; the
				// snapshot has no catch-all model rule yet.
				s.notes = append(s.notes, fmt.Sprintf("rule %d has no matches; catch-all rewrites are not supported and it is ignored", i))
			}
			for j, m := range rule.Matches {
				if m.Model == nil || len(targets) == 0 {
					continue
				}
				claim := s.poolID + "\x00" + m.Model.Value
				if winner, ok := claimed[claim]; ok {
					s.notes = append(s.notes, fmt.Sprintf("rule %d: model %q is already handled by %s; ignored", i, m.Model.Value, winner))
					continue
				}
				claimed[claim] = src
				s.rules = append(s.rules, &snapshotv1.ModelRule{
					Name: fmt.Sprintf("%s/%d", base, j), ModelName: m.Model.Value, Targets: targets, Source: src,
				})
			}
		}
		add(s)
	}
	for _, ss := range idx.byPool {
		sort.Slice(ss, func(i, j int) bool {
			if ss[i].kind != ss[j].kind {
				return ss[i].kind < ss[j].kind
			}
			return key(ss[i].meta) < key(ss[j].meta)
		})
	}
	return idx
}

// rewriteTargets: weights are all set or all unset (0); unset means equal.
func rewriteTargets(ts []inferencealpha.TargetModel) []*snapshotv1.TargetModel {
	out := make([]*snapshotv1.TargetModel, 0, len(ts))
	for _, tm := range ts {
		w := uint32(max(tm.Weight, 0))
		if w == 0 {
			w = 1
		}
		out = append(out, &snapshotv1.TargetModel{Name: tm.ModelRewrite, Weight: w})
	}
	return out
}

// modelRules scopes the rules of every pool this gateway references to it.
func (t *translator) modelRules(gs *gatewayState) []*snapshotv1.ModelRule {
	var out []*snapshotv1.ModelRule
	for id, backend := range gs.pools {
		for _, s := range t.models.byPool[id] {
			for _, r := range s.rules {
				c := cloneRule(r)
				c.Name = gs.name + "/" + r.Name
				c.Pool = backend
				out = append(out, c)
			}
		}
	}
	return out
}

func cloneRule(r *snapshotv1.ModelRule) *snapshotv1.ModelRule {
	return &snapshotv1.ModelRule{
		Name: r.Name, Pool: r.Pool, ModelName: r.ModelName, Objective: r.Objective,
		Priority: r.Priority, Targets: r.Targets, Source: r.Source,
	}
}

// modelStatuses reports Accepted on every model resource whose pool a
// Gateway of ours serves; others belong to nobody we know and are left alone.
func (t *translator) modelStatuses() {
	for _, s := range t.models.all {
		if !s.served {
			continue
		}
		c := cond(inferencealpha.ConditionAccepted, true, inferencealpha.ReasonAccepted, strings.Join(s.notes, "; "), s.meta.Generation)
		if s.conflict != "" {
			c = cond(inferencealpha.ConditionAccepted, false, s.conflict, s.conflictMsg, s.meta.Generation)
		}
		st := inferencealpha.ModelStatus{Conditions: []metav1.Condition{c}}
		switch s.kind {
		case "inferencemodel":
			t.out.Status.InferenceModels[key(s.meta)] = st
		case "inferenceobjective":
			t.out.Status.InferenceObjectives[key(s.meta)] = st
		case "inferencemodelrewrite":
			t.out.Status.InferenceModelRewrites[key(s.meta)] = st
		}
	}
}

// poolStatuses adds this gateway as a parent of every pool its routes
// reference: Accepted unless no such route is accepted; ResolvedRefs checks
// the optional endpoint picker reference (without one the proxies pick
// in-process, so a pool without one is fine). Annotations that cannot be
// used are named in Accepted's message.
func (t *translator) poolStatuses(gs *gatewayState) {
	ids := make([]string, 0, len(gs.poolAccepted))
	for id := range gs.poolAccepted {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	accepted := func(ok bool, gen int64) metav1.Condition {
		if ok {
			return cond(string(infv1.InferencePoolConditionAccepted), true, string(infv1.InferencePoolReasonAccepted), "", gen)
		}
		return cond(string(infv1.InferencePoolConditionAccepted), false, string(infv1.InferencePoolReasonHTTPRouteNotAccepted),
			"no HTTPRoute referencing this pool is accepted by the Gateway", gen)
	}
	resolved := func(ns string, ref *pickerRef, gen int64) metav1.Condition {
		if ref != nil {
			if _, _, msg := t.resolvePicker(ns, ref); msg != "" {
				return cond(string(infv1.InferencePoolConditionResolvedRefs), false, string(infv1.InferencePoolReasonInvalidExtensionRef), msg, gen)
			}
		}
		return cond(string(infv1.InferencePoolConditionResolvedRefs), true, string(infv1.InferencePoolReasonResolvedRefs), "", gen)
	}
	for _, id := range ids {
		ok := gs.poolAccepted[id]
		if p := t.poolByID(id); p != nil {
			k := key(&p.ObjectMeta)
			t.frag.poolParents[k] = append(t.frag.poolParents[k], infv1.ParentStatus{
				ParentRef: infv1.ParentReference{
					Group: ptr(infv1.Group(gatewayGroup)), Kind: kindGateway,
					Namespace: infv1.Namespace(gs.gw.Namespace), Name: infv1.ObjectName(gs.gw.Name),
				},
				ControllerName: infv1.ControllerName(t.opts.ControllerName),
				Conditions: t.withAnnotations([]metav1.Condition{accepted(ok, p.Generation),
					resolved(p.Namespace, v1PickerRef(p.Spec.EndpointPickerRef), p.Generation)}, p.Annotations, p.Generation),
			})
		} else if lp := t.legacyByID(id); lp != nil {
			k := key(&lp.ObjectMeta)
			t.frag.legacyParents[k] = append(t.frag.legacyParents[k], inferencealpha.PoolStatus{
				GatewayRef: inferencealpha.ParentGatewayReference{
					Group: ptr(gatewayGroup), Kind: ptr(kindGateway), Name: gs.gw.Name, Namespace: ptr(gs.gw.Namespace),
				},
				Conditions: t.withAnnotations([]metav1.Condition{accepted(ok, lp.Generation),
					resolved(lp.Namespace, legacyPickerRef(lp.Spec.ExtensionRef), lp.Generation)}, lp.Annotations, lp.Generation),
			})
		}
	}
}

// Condition on a pool's parent status that reports its picker profile
// annotation (PickerProfileAnnotation), present only on pools that have one:
// True (Valid) when the proxies run it, True (ApproximatePrefixMatching)
// when they run it without its unusable kvEvents, False (Invalid) with the
// reason when they run the default profile instead.
const (
	ConditionPickerProfile     = "infergate.dev/PickerProfile"
	ReasonPickerProfileValid   = "Valid"
	ReasonPickerProfileInvalid = "Invalid"
	// ReasonApproximatePrefixMatching: the proxies run the profile, but
	// its kvEvents cannot be used (no usable tokenizer), so prefix
	// matching stays approximate; the message says why.
	ReasonApproximatePrefixMatching = "ApproximatePrefixMatching"
)

// ConditionEndpointPickerTimeout reports a pool's
// EndpointPickerTimeoutAnnotation like ConditionPickerProfile its profile:
// present only with the annotation, True (Valid) when the proxies use it,
// False (Invalid) when they use their default.
const ConditionEndpointPickerTimeout = "infergate.dev/EndpointPickerTimeout"

// withAnnotations appends the conditions of the pool's annotations to a
// pool parent's conditions.
func (t *translator) withAnnotations(conds []metav1.Condition, annotations map[string]string, gen int64) []metav1.Condition {
	conds = t.withProfile(conds, annotations, gen)
	if _, ok := annotations[EndpointPickerTimeoutAnnotation]; !ok {
		return conds
	}
	if _, err := pickerTimeout(annotations); err != nil {
		return append(conds, cond(ConditionEndpointPickerTimeout, false, ReasonPickerProfileInvalid,
			err.Error()+"; the proxies' default timeout applies", gen))
	}
	return append(conds, cond(ConditionEndpointPickerTimeout, true, ReasonPickerProfileValid, "", gen))
}

// withProfile appends the PickerProfile condition to a pool parent's
// conditions when the pool has the annotation.
func (t *translator) withProfile(conds []metav1.Condition, annotations map[string]string, gen int64) []metav1.Condition {
	if _, ok := annotations[PickerProfileAnnotation]; !ok {
		return conds
	}
	var approx *ApproximateMatching
	if _, err := t.pickerProfile(annotations); errors.As(err, &approx) {
		return append(conds, cond(ConditionPickerProfile, true, ReasonApproximatePrefixMatching, err.Error(), gen))
	} else if err != nil {
		return append(conds, cond(ConditionPickerProfile, false, ReasonPickerProfileInvalid,
			err.Error()+"; the pool runs the default picker profile", gen))
	}
	return append(conds, cond(ConditionPickerProfile, true, ReasonPickerProfileValid, "", gen))
}

func (t *translator) poolByID(id string) *infv1.InferencePool {
	if len(id) > 3 && id[:3] == "v1/" {
		return t.pools[id[3:]]
	}
	return nil
}

func (t *translator) legacyByID(id string) *inferencealpha.InferencePool {
	const p = "v1alpha2/"
	if len(id) > len(p) && id[:len(p)] == p {
		return t.legacy[id[len(p):]]
	}
	return nil
}

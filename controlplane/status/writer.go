// Package status writes the statuses the translator computed back to the
// API server, and turns proxy NACKs into Events on their Gateway.
//
// The Writer only writes what changed: it compares the status an object has
// in the informer cache with the one to write (LastTransitionTime of
// conditions whose status did not change is carried over, so an unchanged
// status compares equal), and writes through the status subresource with the
// cached resourceVersion. A conflict re-reads the object and merges again.
// Other controllers' parent entries on HTTPRoutes and InferencePools (and
// ancestor entries on BackendTLSPolicies) are kept.
package status

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/infergate/infergate/controlplane/apis/inferencealpha"
	"github.com/infergate/infergate/controlplane/fleet"
	"github.com/infergate/infergate/controlplane/source/kube"
	"github.com/infergate/infergate/controlplane/translate"
)

// FieldManager names the writer in managedFields.
const FieldManager = "infergate-controlplane"

// maxConflicts bounds re-read-and-merge attempts per object and round.
const maxConflicts = 3

// retryAfter is the pause before writing again after a failed round.
const retryAfter = 2 * time.Second

// Writer writes translated statuses. Submit hands it the latest translation;
// Run writes while the caller holds leadership.
type Writer struct {
	dyn        dynamic.Interface
	controller string
	log        *slog.Logger
	now        func() metav1.Time

	mu         sync.Mutex
	latest     *job
	pending    chan struct{}
	rejections func() map[string][]Rejection
	problems   func() map[string][]fleet.Problem

	// writing serialises rounds; inSync belongs to the round holding it.
	writing sync.Mutex
	// inSync is, per object, the status last wanted for it and the
	// resourceVersion it had when found holding that status or written
	// with it. A round skips an object whose cached version and wanted
	// status are both unchanged since: at thousands of routes, merging and
	// comparing every status on every translation was most of the control
	// plane's CPU, while a change alters the statuses of a few. Another
	// writer's change to the object changes its version, so drift is still
	// repaired.
	inSync map[syncKey]synced
	// last is the last round that ended with every object in sync (none
	// failed, no rejections or pool problems shown, not cancelled): the objects it visited, by
	// identity, and the statuses it wanted. A round with the same objects
	// (the cache hands out a new object for every change) and equal wants
	// has nothing to do — what pod churn asks for on every translation.
	last *lastRound
}

type lastRound struct {
	objects map[any]struct{}
	st      *translate.Status
}

type syncKey struct {
	gvr             schema.GroupVersionResource
	namespace, name string
}

type synced struct {
	version string
	want    any
}

type job struct {
	in *translate.Inputs
	st *translate.Status
	// reported is set by write when a Gateway carried rejections or a
	// pool its proxies' problems: both can go away without a translation
	// or a Kick (a proxy that leaves sends no ACK, reported problems
	// expire), so Run checks again.
	reported bool
}

// NewWriter returns a writer for the GatewayClasses of controllerName.
func NewWriter(dyn dynamic.Interface, controllerName string, log *slog.Logger) *Writer {
	if controllerName == "" {
		controllerName = translate.DefaultControllerName
	}
	return &Writer{
		dyn:        dyn,
		controller: controllerName,
		log:        log,
		now:        func() metav1.Time { return metav1.Now().Rfc3339Copy() },
		pending:    make(chan struct{}, 1),
	}
}

// Submit records the statuses of one translation together with the inputs it
// was computed from (their statuses are the "current" side of the
// comparison). It never blocks: a submission not yet written is replaced.
func (w *Writer) Submit(in *translate.Inputs, st *translate.Status) {
	w.mu.Lock()
	w.latest = &job{in: in, st: st}
	w.mu.Unlock()
	select {
	case w.pending <- struct{}{}:
	default:
	}
}

// SetRejections gives the writer the current proxy rejections per Gateway
// ("<ns>/<name>"); a Gateway with any carries ConditionConfigRejected. Call
// before Run. Only proxies connected to this replica are known to it.
func (w *Writer) SetRejections(fn func() map[string][]Rejection) {
	w.mu.Lock()
	w.rejections = fn
	w.mu.Unlock()
}

// Kick makes Run check the latest submission again (e.g. after a proxy
// NACKed or ACKed) without a new translation.
func (w *Writer) Kick() {
	select {
	case w.pending <- struct{}{}:
	default:
	}
}

// Run writes the latest submission at once (statuses may have drifted while
// another replica led), then every new one, until ctx is done.
func (w *Writer) Run(ctx context.Context) {
	for {
		w.mu.Lock()
		j := w.latest
		w.mu.Unlock()
		var retry <-chan time.Time
		if j != nil {
			if _, err := w.write(ctx, j); err != nil || j.reported {
				// Transient API errors: try again even without a new
				// translation. Proxy reports are re-checked too: a proxy
				// that goes away sends no ACK to clear its NACK, and
				// reported problems expire.
				retry = time.After(retryAfter)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-w.pending:
		case <-retry:
		}
	}
}

// Write writes one translation's statuses synchronously and returns how many
// objects were updated and the first error.
func (w *Writer) Write(ctx context.Context, in *translate.Inputs, st *translate.Status) (int, error) {
	return w.write(ctx, &job{in: in, st: st})
}

func (w *Writer) write(ctx context.Context, j *job) (int, error) {
	w.writing.Lock()
	defer w.writing.Unlock()
	start := time.Now()
	now := w.now()
	in, st := j.in, j.st
	w.mu.Lock()
	rejectionsFn, problemsFn := w.rejections, w.problems
	w.mu.Unlock()
	var rejections map[string][]Rejection
	if rejectionsFn != nil {
		rejections = rejectionsFn()
	}
	var problems poolProblems
	if problemsFn != nil {
		problems.byGateway = problemsFn()
	}
	objects := statusObjects(in)
	if len(rejections) == 0 && len(problems.byGateway) == 0 && w.last.covers(objects, st) {
		j.reported = false
		return 0, nil
	}
	w.last = nil
	r := &round{w: w, ctx: ctx, inSync: make(map[syncKey]synced, len(w.inSync))}
	defer func() {
		// Objects this round does not visit (deleted ones) are forgotten.
		w.inSync = r.inSync
		if r.err == nil && r.failed == 0 && !j.reported && ctx.Err() == nil {
			w.last = &lastRound{objects: make(map[any]struct{}, len(objects)), st: st}
			for _, o := range objects {
				w.last.objects[o] = struct{}{}
			}
		}
	}()

	for _, o := range in.GatewayClasses {
		want, ok := st.GatewayClasses[o.Name]
		if !ok {
			continue
		}
		syncStatus(r, kube.GatewayClasses, "GatewayClass", o, o.Status, want, func(cur gwv1.GatewayClassStatus) gwv1.GatewayClassStatus {
			return mergeGatewayClass(cur, want, now)
		})
	}
	j.reported = false
	ours := map[string]bool{}
	for _, o := range in.Gateways {
		want, ok := st.Gateways[key(&o.ObjectMeta)]
		if !ok {
			continue
		}
		ours[key(&o.ObjectMeta)] = true
		if rs := rejections[key(&o.ObjectMeta)]; len(rs) > 0 {
			j.reported = true
			// Copy: want's slices belong to the translation.
			want.Conditions = append(append([]metav1.Condition(nil), want.Conditions...), rejectionCondition(rs, o.Generation))
		}
		syncStatus(r, kube.Gateways, "Gateway", o, o.Status, want, func(cur gwv1.GatewayStatus) gwv1.GatewayStatus {
			return mergeGateway(cur, want, now)
		})
	}
	for _, o := range in.ListenerSets {
		want, ok := st.ListenerSets[key(&o.ObjectMeta)]
		if !ok {
			continue
		}
		syncStatus(r, kube.ListenerSets, "ListenerSet", o, o.Status, want, func(cur gwv1.ListenerSetStatus) gwv1.ListenerSetStatus {
			return mergeListenerSet(cur, want, now)
		})
	}
	// Every route and pool is visited, not only those in st: one that lost
	// its last Gateway of ours must lose our parent entries.
	for _, o := range in.HTTPRoutes {
		want := st.HTTPRoutes[key(&o.ObjectMeta)]
		syncStatus(r, kube.HTTPRoutes, "HTTPRoute", o, o.Status, want, func(cur gwv1.HTTPRouteStatus) gwv1.HTTPRouteStatus {
			return mergeHTTPRoute(cur, want, w.controller, now)
		})
	}
	for _, o := range in.BackendTLSPolicies {
		want := st.BackendTLSPolicies[key(&o.ObjectMeta)]
		syncStatus(r, kube.BackendTLSPolicies, "BackendTLSPolicy", o, o.Status, want, func(cur gwv1.PolicyStatus) gwv1.PolicyStatus {
			return mergeBackendTLSPolicy(cur, want, w.controller, now)
		})
	}
	for _, o := range in.InferencePools {
		want := st.InferencePools[key(&o.ObjectMeta)]
		if len(problems.byGateway) > 0 {
			var found bool
			if want, found = withPoolProblems(want, o, problems); found {
				j.reported = true
			}
		}
		syncStatus(r, kube.InferencePools, "InferencePool", o, o.Status, want, func(cur infv1.InferencePoolStatus) infv1.InferencePoolStatus {
			return mergeInferencePool(cur, want, w.controller, now)
		})
	}
	for _, o := range in.LegacyInferencePools {
		want := st.LegacyInferencePools[key(&o.ObjectMeta)]
		if len(problems.byGateway) > 0 {
			var found bool
			if want, found = withLegacyPoolProblems(want, o, problems); found {
				j.reported = true
			}
		}
		// Its merge depends on which Gateways are ours too: no want to
		// remember, compared every round (legacy pools are few).
		syncStatus(r, kube.LegacyInferencePools, inferencealpha.KindInferencePool, o, o.Status, nil, func(cur inferencealpha.InferencePoolStatus) inferencealpha.InferencePoolStatus {
			return mergeLegacyPool(cur, want, o.Namespace, ours, now)
		})
	}
	models := []struct {
		gvr  schema.GroupVersionResource
		kind string
		want map[string]inferencealpha.ModelStatus
		objs []modelObject
	}{
		{kube.InferenceModels, inferencealpha.KindInferenceModel, st.InferenceModels, modelObjects(in.InferenceModels, func(o *inferencealpha.InferenceModel) (*metav1.ObjectMeta, inferencealpha.ModelStatus) {
			return &o.ObjectMeta, o.Status
		})},
		{kube.InferenceObjectives, inferencealpha.KindInferenceObjective, st.InferenceObjectives, modelObjects(in.InferenceObjectives, func(o *inferencealpha.InferenceObjective) (*metav1.ObjectMeta, inferencealpha.ModelStatus) {
			return &o.ObjectMeta, o.Status
		})},
		{kube.InferenceModelRewrites, inferencealpha.KindInferenceModelRewrite, st.InferenceModelRewrites, modelObjects(in.InferenceModelRewrites, func(o *inferencealpha.InferenceModelRewrite) (*metav1.ObjectMeta, inferencealpha.ModelStatus) {
			return &o.ObjectMeta, o.Status
		})},
	}
	for _, m := range models {
		for _, o := range m.objs {
			want, ok := m.want[key(o.meta)]
			if !ok {
				continue
			}
			syncStatus(r, m.gvr, m.kind, o.obj, o.status, want, func(cur inferencealpha.ModelStatus) inferencealpha.ModelStatus {
				return mergeModel(cur, want, now)
			})
		}
	}
	if r.updated > 0 || r.err != nil {
		w.log.Info("statuses written", "updated", r.updated, "failed", r.failed, "duration", time.Since(start).Round(time.Millisecond))
	}
	return r.updated, r.err
}

// covers reports whether a round over objects wanting st would find what
// l found: every object in sync. l may be nil.
func (l *lastRound) covers(objects []any, st *translate.Status) bool {
	if l == nil || len(objects) != len(l.objects) {
		return false
	}
	for _, o := range objects {
		if _, ok := l.objects[o]; !ok {
			return false
		}
	}
	return st == l.st || sameStatus(st, l.st)
}

// sameStatus reports whether a and b want the same statuses. The parents of
// routes and pools a translation reused are the very same slices, so those
// (thousands) compare by pointer; everything else by value.
func sameStatus(a, b *translate.Status) bool {
	parents := func(x, y gwv1.HTTPRouteStatus) bool {
		return sameSlice(x.Parents, y.Parents) || reflect.DeepEqual(x, y)
	}
	poolParents := func(x, y infv1.InferencePoolStatus) bool {
		return sameSlice(x.Parents, y.Parents) || reflect.DeepEqual(x, y)
	}
	return sameMap(a.HTTPRoutes, b.HTTPRoutes, parents) &&
		sameMap(a.InferencePools, b.InferencePools, poolParents) &&
		sameMap(a.GatewayClasses, b.GatewayClasses, deepEqual) &&
		sameMap(a.Gateways, b.Gateways, deepEqual) &&
		sameMap(a.ListenerSets, b.ListenerSets, deepEqual) &&
		sameMap(a.BackendTLSPolicies, b.BackendTLSPolicies, deepEqual) &&
		sameMap(a.LegacyInferencePools, b.LegacyInferencePools, deepEqual) &&
		sameMap(a.InferenceModels, b.InferenceModels, deepEqual) &&
		sameMap(a.InferenceObjectives, b.InferenceObjectives, deepEqual) &&
		sameMap(a.InferenceModelRewrites, b.InferenceModelRewrites, deepEqual)
}

func sameMap[V any](a, b map[string]V, eq func(x, y V) bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, x := range a {
		y, ok := b[k]
		if !ok || !eq(x, y) {
			return false
		}
	}
	return true
}

func deepEqual[V any](x, y V) bool { return reflect.DeepEqual(x, y) }

// sameSlice reports whether a and b are the same non-empty slice (the same
// elements in the same memory); false says nothing.
func sameSlice[E any](a, b []E) bool {
	return len(a) == len(b) && len(a) > 0 && &a[0] == &b[0]
}

// statusObjects lists every object whose status a round may write.
func statusObjects(in *translate.Inputs) []any {
	out := make([]any, 0, len(in.GatewayClasses)+len(in.Gateways)+len(in.ListenerSets)+len(in.HTTPRoutes)+
		len(in.BackendTLSPolicies)+len(in.InferencePools)+len(in.LegacyInferencePools)+len(in.InferenceModels)+
		len(in.InferenceObjectives)+len(in.InferenceModelRewrites))
	out = appendObjects(out, in.GatewayClasses)
	out = appendObjects(out, in.Gateways)
	out = appendObjects(out, in.ListenerSets)
	out = appendObjects(out, in.HTTPRoutes)
	out = appendObjects(out, in.BackendTLSPolicies)
	out = appendObjects(out, in.InferencePools)
	out = appendObjects(out, in.LegacyInferencePools)
	out = appendObjects(out, in.InferenceModels)
	out = appendObjects(out, in.InferenceObjectives)
	return appendObjects(out, in.InferenceModelRewrites)
}

func appendObjects[T any](out []any, objs []*T) []any {
	for _, o := range objs {
		out = append(out, o)
	}
	return out
}

type modelObject struct {
	obj    any
	meta   *metav1.ObjectMeta
	status inferencealpha.ModelStatus
}

func modelObjects[T any](objs []*T, get func(*T) (*metav1.ObjectMeta, inferencealpha.ModelStatus)) []modelObject {
	out := make([]modelObject, 0, len(objs))
	for _, o := range objs {
		m, s := get(o)
		out = append(out, modelObject{obj: o, meta: m, status: s})
	}
	return out
}

// round collects the outcome of one write pass.
type round struct {
	w       *Writer
	ctx     context.Context
	updated int
	failed  int
	err     error
	// inSync replaces the Writer's at the end of the round.
	inSync map[syncKey]synced
}

// syncStatus writes merge(cur) to obj's status subresource unless it equals cur.
// obj is the cached typed object (cur is its status); on a conflict the
// object is read again and merged anew. want is what merge merges in (nil:
// merge depends on more than want and cur, so the object is compared every
// round); an object whose version and want are those it was last in sync
// with is skipped.
func syncStatus[S any](r *round, gvr schema.GroupVersionResource, kind string, obj any, cur S, want any, merge func(S) S) {
	if r.ctx.Err() != nil {
		return
	}
	meta, _ := obj.(metav1.Object)
	var sk syncKey
	if want != nil && meta != nil {
		sk = syncKey{gvr, meta.GetNamespace(), meta.GetName()}
		// reflect.DeepEqual: both sides come from the translator (no
		// decoded times or quantities), and it is several times cheaper
		// than the semantic comparison of cur below.
		if s, ok := r.w.inSync[sk]; ok && s.version == meta.GetResourceVersion() && reflect.DeepEqual(s.want, want) {
			// Remember this want, not the equal one before it: a
			// translation that reuses a gateway's statuses hands the next
			// round the very same slices, and DeepEqual returns at the
			// first pointer comparison instead of walking every condition.
			r.inSync[sk] = synced{version: s.version, want: want}
			return
		}
	}
	remember := func(version string) {
		if sk.name != "" {
			r.inSync[sk] = synced{version: version, want: want}
		}
	}
	next := merge(cur)
	if equality.Semantic.DeepEqual(cur, next) {
		if meta != nil {
			remember(meta.GetResourceVersion())
		}
		return
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		r.fail(gvr, "", err)
		return
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(gvr.GroupVersion().String())
	u.SetKind(kind)
	client := r.w.dyn.Resource(gvr).Namespace(u.GetNamespace())
	name := u.GetName()
	for attempt := 0; ; attempt++ {
		st, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&next)
		if err != nil {
			r.fail(gvr, name, err)
			return
		}
		u.Object["status"] = st
		written, err := client.UpdateStatus(r.ctx, u, metav1.UpdateOptions{FieldManager: FieldManager})
		switch {
		case err == nil:
			r.updated++
			remember(written.GetResourceVersion())
			r.w.log.Debug("status updated", "resource", gvr.Resource, "namespace", u.GetNamespace(), "name", name)
			return
		case apierrors.IsNotFound(err):
			return // deleted meanwhile; the next translation drops it
		case !apierrors.IsConflict(err) || attempt >= maxConflicts:
			r.fail(gvr, name, err)
			return
		}
		// Our cache lagged behind (often our own previous write): merge
		// into the object as it is now.
		if u, err = client.Get(r.ctx, name, metav1.GetOptions{}); err != nil {
			if !apierrors.IsNotFound(err) {
				r.fail(gvr, name, err)
			}
			return
		}
		var fresh S
		if raw, ok := u.Object["status"].(map[string]any); ok {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &fresh); err != nil {
				r.fail(gvr, name, fmt.Errorf("decode current status: %w", err))
				return
			}
		}
		next = merge(fresh)
		if equality.Semantic.DeepEqual(fresh, next) {
			remember(u.GetResourceVersion())
			return
		}
	}
}

func (r *round) fail(gvr schema.GroupVersionResource, name string, err error) {
	r.failed++
	if r.err == nil {
		r.err = fmt.Errorf("update %s %s status: %w", gvr.Resource, name, err)
	}
	if r.ctx.Err() == nil {
		r.w.log.Warn("status update failed", "resource", gvr.Resource, "name", name, "err", err)
	}
}

func key(m *metav1.ObjectMeta) string {
	return m.Namespace + "/" + m.Name
}

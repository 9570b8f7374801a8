package conformance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Labels the node puts on the pods it creates for a Deployment.
const (
	labelDeployment = "conformance.infergate.dev/deployment"
	labelTemplate   = "pod-template-hash"
	proxyAppName    = "infergate-proxy" // provision's app.kubernetes.io/name value
)

// nodeOptions configure the stand-in node.
type nodeOptions struct {
	// ProxyBinary is bin/proxy, run for provisioned proxy Deployments.
	ProxyBinary string
	// Dir holds the pods' volumes and log files.
	Dir string
	// IPs hands out pod IPs (each pod gets its own loopback address).
	IPs *ipPool
	// StaticIPs are the load balancer's pool of static addresses
	// (spec.loadBalancerIP); see staticLB.
	StaticIPs []string
	Logger    *slog.Logger
	// PickerBinary is lwepp, run for the Inference Extension suite's
	// picker containers with Kubeconfig; unset, they are not run.
	PickerBinary string
	Kubeconfig   string
}

// node plays what a cluster adds to a bare API server for the suite: the
// Deployment controller and kubelet (pods, their containers, readiness,
// logs), the EndpointSlice controller (names, not IPs: see
// reconcileSlices) and a cloud load balancer for LoadBalancer Services. It
// is level-triggered: any change to a watched object, and a
// short tick for readiness probes, re-runs reconcile over everything.
type node struct {
	cs   kubernetes.Interface
	opts nodeOptions
	log  *slog.Logger

	deployments cacheLister[*appsv1.Deployment]
	pods        cacheLister[*corev1.Pod]
	services    cacheLister[*corev1.Service]
	slices      cacheLister[*discoveryv1.EndpointSlice]
	kick        chan struct{}
	lb          *staticLB

	mu      sync.Mutex
	running map[string]*container // by pod "ns/name"
}

type cacheLister[T any] struct{ store cache.Store }

func (l cacheLister[T]) list() []T {
	var out []T
	for _, o := range l.store.List() {
		out = append(out, o.(T))
	}
	return out
}

func newNode(cs kubernetes.Interface, opts nodeOptions) *node {
	return &node{cs: cs, opts: opts, log: opts.Logger, kick: make(chan struct{}, 1), running: map[string]*container{},
		lb: newStaticLB(opts.StaticIPs, opts.Logger)}
}

// run watches Deployments, Pods and Services until ctx ends, then stops
// every container it started.
func (n *node) run(ctx context.Context) {
	defer n.stopAll()
	defer n.lb.close()
	f := informers.NewSharedInformerFactory(n.cs, 0)
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { n.trigger() },
		UpdateFunc: func(any, any) { n.trigger() },
		DeleteFunc: func(any) { n.trigger() },
	}
	for _, inf := range []cache.SharedIndexInformer{
		f.Apps().V1().Deployments().Informer(), f.Core().V1().Pods().Informer(), f.Core().V1().Services().Informer(),
		f.Discovery().V1().EndpointSlices().Informer(),
	} {
		_, _ = inf.AddEventHandler(h)
	}
	n.deployments = cacheLister[*appsv1.Deployment]{f.Apps().V1().Deployments().Informer().GetStore()}
	n.pods = cacheLister[*corev1.Pod]{f.Core().V1().Pods().Informer().GetStore()}
	n.services = cacheLister[*corev1.Service]{f.Core().V1().Services().Informer().GetStore()}
	n.slices = cacheLister[*discoveryv1.EndpointSlice]{f.Discovery().V1().EndpointSlices().Informer().GetStore()}
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			f.Shutdown()
			return
		case <-n.kick:
		case <-tick.C:
		}
		n.reconcilePods(ctx)
		n.reconcileServices(ctx)
		n.reconcileSlices(ctx)
	}
}

func (n *node) trigger() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// logsOf finds a running pod's log, for the pods/log transport.
func (n *node) logsOf(ns, pod string) (*podLog, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, ok := n.running[ns+"/"+pod]
	if !ok {
		return nil, false
	}
	return c.log, true
}

// templateHash names a pod template version, like the Deployment
// controller's pod-template-hash.
func templateHash(t corev1.PodTemplateSpec) string {
	b, _ := json.Marshal(t)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:10]
}

// reconcilePods keeps spec.replicas pods of the current template per
// Deployment, running, with their status written; other pods it made go.
func (n *node) reconcilePods(ctx context.Context) {
	want := map[string]*appsv1.Deployment{} // pod key → its deployment
	for _, d := range n.deployments.list() {
		if d.DeletionTimestamp != nil {
			continue
		}
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		hash := templateHash(d.Spec.Template)
		for i := range replicas {
			want[fmt.Sprintf("%s/%s-%s-%d", d.Namespace, d.Name, hash, i)] = d
		}
	}
	have := map[string]*corev1.Pod{}
	for _, p := range n.pods.list() {
		if _, ours := p.Labels[labelDeployment]; ours {
			have[p.Namespace+"/"+p.Name] = p
		}
	}
	for key, p := range have {
		if _, ok := want[key]; !ok {
			n.deletePod(ctx, p)
		}
	}
	n.mu.Lock()
	for key, c := range n.running {
		if _, ok := want[key]; !ok {
			delete(n.running, key)
			go c.stop()
		}
	}
	n.mu.Unlock()
	for _, key := range slices.Sorted(maps.Keys(want)) {
		d := want[key]
		ns, name, _ := strings.Cut(key, "/")
		n.mu.Lock()
		c := n.running[key]
		n.mu.Unlock()
		if c == nil {
			var err error
			if c, err = n.startPod(ctx, d, ns, name); err != nil {
				n.log.Error("start pod", "pod", key, "err", err)
				continue
			}
			n.mu.Lock()
			n.running[key] = c
			n.mu.Unlock()
		}
		n.tryStart(ctx, c)
		n.syncStatus(ctx, c, have[key])
	}
}

// startPod creates the Pod object and starts its container.
func (n *node) startPod(ctx context.Context, d *appsv1.Deployment, ns, name string) (*container, error) {
	tmpl := d.Spec.Template
	lbls := maps.Clone(tmpl.Labels)
	if lbls == nil {
		lbls = map[string]string{}
	}
	lbls[labelDeployment] = d.Name
	lbls[labelTemplate] = templateHash(tmpl)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, Labels: lbls, Annotations: tmpl.Annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID}},
		},
		Spec: *tmpl.Spec.DeepCopy(),
	}
	created, err := n.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = n.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(n.opts.Dir, ns, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(n.opts.Dir, ns+"_"+name+".log"))
	if err != nil {
		return nil, err
	}
	c := &container{pod: created, ip: n.opts.IPs.next(), dir: dir, log: newPodLog(logFile), logFile: logFile}
	n.tryStart(ctx, c)
	return c, nil
}

// tryStart starts the container unless it runs already. A failure (say,
// a Secret volume whose Secret does not exist yet) leaves the pod
// waiting; the next reconcile tries again, as a kubelet does.
func (n *node) tryStart(ctx context.Context, c *container) {
	if c.failed == nil && !c.started.IsZero() {
		return
	}
	err := n.startContainer(ctx, c)
	if err != nil {
		if c.failed == nil || c.failed.Error() != err.Error() {
			c.log.printf("[harness] container failed to start: %v", err)
		}
		c.failed = err
		return
	}
	c.failed, c.started = nil, time.Now()
}

// syncStatus writes the pod's status when readiness changes (or was
// never written).
func (n *node) syncStatus(ctx context.Context, c *container, cur *corev1.Pod) {
	ready := !c.started.IsZero() && c.probe()
	if cur != nil && cur.Status.PodIP == c.ip && podReady(cur) == ready && cur.Status.Phase == podStatus(c, ready).Phase {
		return
	}
	pod := cur
	if pod == nil {
		pod = c.pod
	}
	pod = pod.DeepCopy()
	pod.Status = podStatus(c, ready)
	if _, err := n.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
		n.log.Warn("pod status", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podStatus(c *container, ready bool) corev1.PodStatus {
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	now := metav1.Now()
	started, phase := metav1.NewTime(c.started), corev1.PodRunning
	if c.started.IsZero() {
		started, phase = now, corev1.PodPending
	}
	st := corev1.PodStatus{
		Phase: phase, HostIP: "127.0.0.1", HostIPs: []corev1.HostIP{{IP: "127.0.0.1"}},
		PodIP: c.ip, PodIPs: []corev1.PodIP{{IP: c.ip}}, StartTime: &started,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: started},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: started},
			{Type: corev1.ContainersReady, Status: cond, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: cond, LastTransitionTime: now},
		},
	}
	for _, ct := range c.pod.Spec.Containers {
		cs := corev1.ContainerStatus{Name: ct.Name, Image: ct.Image, Ready: ready, Started: &ready}
		if c.failed != nil {
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "StartError", Message: c.failed.Error()}
		} else {
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: started}
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	return st
}

func (n *node) deletePod(ctx context.Context, p *corev1.Pod) {
	zero := int64(0)
	err := n.cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil && !apierrors.IsNotFound(err) {
		n.log.Warn("delete pod", "pod", p.Namespace+"/"+p.Name, "err", err)
	}
}

func (n *node) stopAll() {
	n.mu.Lock()
	all := slices.Collect(maps.Values(n.running))
	n.running = map[string]*container{}
	n.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Go(c.stop)
	}
	wg.Wait()
}

// selectorMatches reports whether sel (a Service selector) selects pod p.
func selectorMatches(sel map[string]string, p *corev1.Pod) bool {
	return len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(p.Labels))
}

// ipPool hands out distinct loopback addresses (Linux routes all of
// 127/8 to lo) from 127.<second>.0.0/16.
type ipPool struct {
	mu     sync.Mutex
	second byte
	n      int
}

func newIPPool(second byte) *ipPool { return &ipPool{second: second} }

// staticAddress is the pool's address for a load balancer's static IP:
// 127.<second>.255.<host>, far above the pod addresses next hands out.
func (p *ipPool) staticAddress(host byte) string {
	return net.IPv4(127, p.second, 255, host).String()
}

func (p *ipPool) next() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	return net.IPv4(127, p.second, byte(p.n>>8), byte(p.n)).String()
}

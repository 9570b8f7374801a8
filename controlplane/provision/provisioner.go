package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/infergate/infergate/controlplane/translate"
	"github.com/infergate/infergate/proto/tracing"
)

// FieldManager owns the provisioned objects and Gateway.status.addresses
// (server-side apply); the status writer owns the Gateway's conditions.
const FieldManager = "infergate-provisioner"

var (
	gatewayGVR = schema.GroupVersionResource{Group: gwapiv1.GroupName, Version: "v1", Resource: "gateways"}
	classGVR   = schema.GroupVersionResource{Group: gwapiv1.GroupName, Version: "v1", Resource: "gatewayclasses"}
)

// Options configure a Provisioner.
type Options struct {
	// ControllerName selects the GatewayClasses served (spec.controllerName).
	ControllerName string
	// Image is the proxy image unless parameters name another.
	Image string
	// XDSAddress is the control plane's address as proxies dial it.
	XDSAddress string
	// XDSCACert, XDSServerName and TokenAudience: see RenderOptions. Set
	// XDSCACert to the CA of the xDS serving certificate (the ca.crt of the
	// control plane's TLS Secret) and TokenAudience to the audience the
	// control plane's TokenReviews check.
	XDSCACert     []byte
	XDSServerName string
	TokenAudience string
	// Tracing is passed to every proxy (see RenderOptions).
	Tracing tracing.Options
	// Resync re-checks every Gateway this often, repairing drift in the
	// provisioned objects (default 10m).
	Resync time.Duration
	// Workers reconcile Gateways concurrently (default 2).
	Workers int
	// ListenerPorts, when set, adds the ports of ListenerSet listeners to
	// each Gateway's Service and Deployment; a change re-renders them.
	ListenerPorts *ListenerPorts
	Logger        *slog.Logger
}

// Provisioner keeps every Gateway of the class provisioned.
type Provisioner struct {
	client kubernetes.Interface
	dyn    dynamic.Interface
	opts   Options
	log    *slog.Logger

	gateways   cache.GenericLister
	classes    cache.GenericLister
	configMaps corelisters.ConfigMapLister
	queue      workqueue.TypedRateLimitingInterface[string]
	events     record.EventRecorder
}

// Reasons of the Warning Events recorded on a Gateway that cannot be
// provisioned (kubectl describe gateway shows them).
const (
	ReasonInvalidParameters  = "InvalidParameters"
	ReasonProvisioningFailed = "ProvisioningFailed"
)

// New returns a Provisioner; Run starts it.
func New(client kubernetes.Interface, dyn dynamic.Interface, opts Options) *Provisioner {
	if opts.Resync <= 0 {
		opts.Resync = 10 * time.Minute
	}
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Provisioner{client: client, dyn: dyn, opts: opts, log: opts.Logger.With("component", "provision")}
}

// Run provisions until ctx is done. Start it only on the elected leader
// (e.g. inside leader.Run's lead callback): two writers would fight over
// the HPA-chosen replica count and the Gateway's addresses. Every Run
// builds its own informers, so it can be started again in a later term.
func (p *Provisioner) Run(ctx context.Context) error {
	if p.opts.Image == "" || p.opts.XDSAddress == "" {
		return errors.New("provision: Options.Image and Options.XDSAddress are required")
	}
	p.queue = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "provision"})
	defer p.queue.ShutDown()
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: p.client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	p.events = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "infergate-provisioner"})

	dynFactory := dynamicinformer.NewDynamicSharedInformerFactory(p.dyn, p.opts.Resync)
	gwInf := dynFactory.ForResource(gatewayGVR)
	classInf := dynFactory.ForResource(classGVR)
	coreFactory := informers.NewSharedInformerFactory(p.client, 0)
	cmInf := coreFactory.Core().V1().ConfigMaps()
	ownedFactory := informers.NewSharedInformerFactoryWithOptions(p.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = managedSelector().String() }))
	svcInf := ownedFactory.Core().V1().Services()
	p.gateways, p.classes, p.configMaps = gwInf.Lister(), classInf.Lister(), cmInf.Lister()

	handlers := []struct {
		inf cache.SharedIndexInformer
		on  func(obj any)
	}{
		{gwInf.Informer(), func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				p.queue.Add(key)
			}
		}},
		{classInf.Informer(), func(obj any) {
			p.enqueueMatching(func(gw *gwapiv1.Gateway) bool { return string(gw.Spec.GatewayClassName) == metaName(obj) })
		}},
		{cmInf.Informer(), p.enqueueConfigMapUsers},
		{svcInf.Informer(), p.enqueueOwner},
	}
	for _, h := range handlers {
		if _, err := h.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    h.on,
			UpdateFunc: func(_, obj any) { h.on(obj) },
			DeleteFunc: h.on,
		}); err != nil {
			return err
		}
	}
	if lp := p.opts.ListenerPorts; lp != nil {
		lp.notify(func(gateway string) { p.queue.Add(gateway) })
		defer lp.notify(nil)
	}
	dynFactory.Start(ctx.Done())
	coreFactory.Start(ctx.Done())
	ownedFactory.Start(ctx.Done())
	defer dynFactory.Shutdown()
	defer coreFactory.Shutdown()
	defer ownedFactory.Shutdown()
	for _, inf := range []cache.SharedIndexInformer{gwInf.Informer(), classInf.Informer(), cmInf.Informer(), svcInf.Informer()} {
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			return ctx.Err()
		}
	}
	// Objects of Gateways deleted while no leader ran have no event to
	// come: look for them once.
	if err := p.enqueueOrphans(ctx); err != nil {
		p.log.Warn("listing provisioned objects failed; orphans are removed on the next resync", "err", err)
	}
	p.log.Info("provisioning proxies", "controller", p.opts.ControllerName, "image", p.opts.Image, "xds", p.opts.XDSAddress)

	done := make(chan struct{})
	for range p.opts.Workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for p.next(ctx) {
			}
		}()
	}
	<-ctx.Done()
	p.queue.ShutDown()
	for range p.opts.Workers {
		<-done
	}
	return nil
}

func (p *Provisioner) next(ctx context.Context) bool {
	key, quit := p.queue.Get()
	if quit {
		return false
	}
	defer p.queue.Done(key)
	if err := p.reconcile(ctx, key); err != nil {
		if ctx.Err() != nil {
			return true
		}
		p.log.Warn("provisioning failed; retrying", "gateway", key, "err", err)
		p.queue.AddRateLimited(key)
		return true
	}
	p.queue.Forget(key)
	return true
}

func metaName(obj any) string {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if m, ok := obj.(metav1.Object); ok {
		return m.GetName()
	}
	return ""
}

func managedSelector() labels.Selector {
	return labels.SelectorFromSet(labels.Set{LabelManagedBy: managedByValue, LabelName: nameValue})
}

// enqueueOwner queues the Gateway a provisioned object belongs to.
func (p *Provisioner) enqueueOwner(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if m, ok := obj.(metav1.Object); ok {
		if gw := m.GetLabels()[LabelGateway]; gw != "" {
			p.queue.Add(m.GetNamespace() + "/" + gw)
		}
	}
}

func (p *Provisioner) enqueueMatching(match func(*gwapiv1.Gateway) bool) {
	objs, err := p.gateways.List(labels.Everything())
	if err != nil {
		return
	}
	for _, o := range objs {
		gw, err := toGateway(o)
		if err == nil && match(gw) {
			p.queue.Add(gw.Namespace + "/" + gw.Name)
		}
	}
}

// enqueueConfigMapUsers queues the Gateways whose parameters (their own or
// their class's) are in the ConfigMap.
func (p *Provisioner) enqueueConfigMapUsers(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return
	}
	classes := map[string]bool{}
	if objs, err := p.classes.List(labels.Everything()); err == nil {
		for _, o := range objs {
			if c, err := toClass(o); err == nil {
				if ns, name, ok := classParamsRef(c); ok && ns == cm.Namespace && name == cm.Name {
					classes[c.Name] = true
				}
			}
		}
	}
	p.enqueueMatching(func(gw *gwapiv1.Gateway) bool {
		if classes[string(gw.Spec.GatewayClassName)] {
			return true
		}
		name, ok := gatewayParamsRef(gw)
		return ok && gw.Namespace == cm.Namespace && name == cm.Name
	})
}

func (p *Provisioner) enqueueOrphans(ctx context.Context) error {
	var errs []error
	for _, k := range kinds {
		list, err := p.dyn.Resource(k.gvr).List(ctx, metav1.ListOptions{LabelSelector: managedSelector().String()})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for i := range list.Items {
			p.enqueueOwner(&list.Items[i])
		}
	}
	return errors.Join(errs...)
}

func toGateway(obj runtime.Object) (*gwapiv1.Gateway, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("provision: unexpected %T", obj)
	}
	gw := &gwapiv1.Gateway{}
	return gw, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, gw)
}

func toClass(obj runtime.Object) (*gwapiv1.GatewayClass, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("provision: unexpected %T", obj)
	}
	c := &gwapiv1.GatewayClass{}
	return c, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, c)
}

// classParamsRef is the ConfigMap a GatewayClass's parametersRef names
// (other kinds are not supported).
func classParamsRef(c *gwapiv1.GatewayClass) (ns, name string, ok bool) {
	r := c.Spec.ParametersRef
	if r == nil || r.Group != "" || r.Kind != "ConfigMap" || r.Namespace == nil {
		return "", "", false
	}
	return string(*r.Namespace), r.Name, true
}

// gatewayParamsRef is the ConfigMap (in the Gateway's namespace) a Gateway's
// infrastructure.parametersRef names, when it is one the translator accepts.
func gatewayParamsRef(gw *gwapiv1.Gateway) (string, bool) {
	if gw.Spec.Infrastructure == nil || gw.Spec.Infrastructure.ParametersRef == nil || translate.InvalidParameters(gw) != "" {
		return "", false
	}
	return gw.Spec.Infrastructure.ParametersRef.Name, true
}

// reconcile brings the objects of Gateway key in line with the cluster:
// provisioned when the Gateway exists and is of our class, gone otherwise.
func (p *Provisioner) reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	obj, err := p.gateways.ByNamespace(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return p.prune(ctx, ns, name, nil)
	}
	if err != nil {
		return err
	}
	gw, err := toGateway(obj)
	if err != nil {
		return err
	}
	class, ok := p.classOf(gw)
	if !ok || gw.DeletionTimestamp != nil {
		return p.prune(ctx, ns, name, nil)
	}
	log := p.log.With("gateway", key, "class", class.Name)
	if msg := translate.UnsupportedAddress(gw); msg != "" {
		// Not Accepted (the translator says why): like bad parameters, the
		// running proxies are left alone.
		log.Warn("not provisioning: unsupported address", "err", msg)
		return nil
	}
	params, err := p.params(gw, class)
	if err != nil {
		// Bad parameters leave the running proxies alone; a ConfigMap fix
		// re-queues the Gateway.
		log.Warn("not provisioning: invalid parameters", "err", err)
		p.events.Event(gatewayRef(gw), corev1.EventTypeWarning, ReasonInvalidParameters, err.Error())
		return nil
	}
	ro := RenderOptions{
		XDSAddress: p.opts.XDSAddress, XDSCACert: p.opts.XDSCACert,
		XDSServerName: p.opts.XDSServerName, TokenAudience: p.opts.TokenAudience,
		Tracing: p.opts.Tracing,
	}
	if p.opts.ListenerPorts != nil {
		ro.ExtraPorts = p.opts.ListenerPorts.Get(key)
	}
	objs, err := Render(gw, class, params, ro)
	if err != nil {
		log.Warn("not provisioning", "err", err)
		p.events.Event(gatewayRef(gw), corev1.EventTypeWarning, ReasonProvisioningFailed, err.Error())
		return nil
	}
	if objs.HPA != nil {
		p.keepScaledReplicas(ctx, objs)
	}
	var svc *corev1.Service
	keep := map[string]bool{}
	for _, o := range objs.List() {
		u, err := ApplyConfig(o)
		if err != nil {
			return err
		}
		applied, err := p.apply(ctx, u)
		if err != nil {
			err = fmt.Errorf("apply %s %s/%s: %w", u.GetKind(), ns, u.GetName(), err)
			p.events.Event(gatewayRef(gw), corev1.EventTypeWarning, ReasonProvisioningFailed, err.Error())
			return err
		}
		keep[u.GetKind()+"/"+u.GetName()] = true
		if u.GetKind() == "Service" {
			svc = &corev1.Service{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(applied.Object, svc); err != nil {
				return err
			}
		}
	}
	if err := p.prune(ctx, ns, name, keep); err != nil {
		return err
	}
	log.Debug("provisioned", "replicas", *objs.Deployment.Spec.Replicas, "service", svc.Spec.Type)
	return p.writeAddresses(ctx, gw, Addresses(svc))
}

func gatewayRef(gw *gwapiv1.Gateway) *corev1.ObjectReference {
	return &corev1.ObjectReference{
		APIVersion: gwapiv1.GroupVersion.String(), Kind: "Gateway",
		Namespace: gw.Namespace, Name: gw.Name, UID: gw.UID, ResourceVersion: gw.ResourceVersion,
	}
}

// classOf returns gw's GatewayClass if this control plane serves it.
func (p *Provisioner) classOf(gw *gwapiv1.Gateway) (*gwapiv1.GatewayClass, bool) {
	obj, err := p.classes.Get(string(gw.Spec.GatewayClassName))
	if err != nil {
		return nil, false
	}
	class, err := toClass(obj)
	if err != nil || string(class.Spec.ControllerName) != p.opts.ControllerName {
		return nil, false
	}
	return class, true
}

func (p *Provisioner) params(gw *gwapiv1.Gateway, class *gwapiv1.GatewayClass) (Params, error) {
	var data []map[string]string
	if ns, name, ok := classParamsRef(class); ok {
		cm, err := p.configMaps.ConfigMaps(ns).Get(name)
		if err != nil {
			return Params{}, fmt.Errorf("GatewayClass parametersRef ConfigMap %s/%s: %w", ns, name, err)
		}
		data = append(data, cm.Data)
	} else if class.Spec.ParametersRef != nil {
		return Params{}, fmt.Errorf("GatewayClass parametersRef must be a namespaced core ConfigMap")
	}
	if name, ok := gatewayParamsRef(gw); ok {
		cm, err := p.configMaps.ConfigMaps(gw.Namespace).Get(name)
		if err != nil {
			return Params{}, fmt.Errorf("infrastructure parametersRef ConfigMap %s/%s: %w", gw.Namespace, name, err)
		}
		data = append(data, cm.Data)
	} else if msg := translate.InvalidParameters(gw); msg != "" {
		return Params{}, errors.New(msg)
	}
	return ParseParams(p.opts.Image, data...)
}

// keepScaledReplicas leaves the replica count the HPA chose when it is
// within the HPA's bounds, so applying does not undo autoscaling.
func (p *Provisioner) keepScaledReplicas(ctx context.Context, objs *Objects) {
	cur, err := p.client.AppsV1().Deployments(objs.Deployment.Namespace).Get(ctx, objs.Deployment.Name, metav1.GetOptions{})
	if err != nil || cur.Spec.Replicas == nil {
		return
	}
	if n := *cur.Spec.Replicas; n >= *objs.HPA.Spec.MinReplicas && n <= objs.HPA.Spec.MaxReplicas {
		objs.Deployment.Spec.Replicas = &n
	}
}

func (p *Provisioner) apply(ctx context.Context, u *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	gvr, err := gvrOf(u.GetKind())
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(u.Object)
	if err != nil {
		return nil, err
	}
	return p.dyn.Resource(gvr).Namespace(u.GetNamespace()).Patch(ctx, u.GetName(), types.ApplyPatchType, data,
		metav1.PatchOptions{FieldManager: FieldManager, Force: new(true)})
}

// prune deletes the objects provisioned for Gateway ns/name except those in
// keep ("Kind/name"). Owner references let a real cluster's garbage
// collector do this too; deleting explicitly also covers a Gateway that
// left our class, and API servers without a collector.
func (p *Provisioner) prune(ctx context.Context, ns, name string, keep map[string]bool) error {
	sel := labels.SelectorFromSet(labels.Set{LabelManagedBy: managedByValue, LabelName: nameValue, LabelGateway: name}).String()
	var errs []error
	for _, k := range slices.Backward(kinds) {
		list, err := p.dyn.Resource(k.gvr).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, o := range list.Items {
			if keep[k.kind+"/"+o.GetName()] {
				continue
			}
			prop := metav1.DeletePropagationBackground
			err := p.dyn.Resource(k.gvr).Namespace(ns).Delete(ctx, o.GetName(), metav1.DeleteOptions{PropagationPolicy: &prop})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
				continue
			}
			p.log.Info("deleted provisioned object", "gateway", ns+"/"+name, "kind", k.kind, "name", o.GetName())
		}
	}
	return errors.Join(errs...)
}

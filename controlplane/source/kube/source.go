// Package kube is the Kubernetes source of the control plane: client-go
// shared informers over Gateway API, Inference Extension and core objects,
// turned into translator inputs on every (debounced) change.
//
// Core kinds use typed informers. Custom resources use dynamic informers
// whose transform converts each object into the translator's Go types once,
// as it enters the cache (which lets one binary read the alpha group, our
// own types, next to InferencePool v1); building inputs only collects them.
// Pods, Secrets and ConfigMaps are cached with only the fields the
// translator reads (transform.go). A custom resource whose CRD is not
// installed is logged once and ignored; discovery is polled so it is picked
// up once installed.
package kube

import (
	"context"

	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/infergate/infergate/controlplane/source/debounce"
	"github.com/infergate/infergate/controlplane/translate"
)

// Options tune a Source. Zero values take the defaults.
type Options struct {
	// Debounce is the quiet time after a change before inputs are rebuilt
	// (default 20ms); a steady stream of changes postpones a rebuild by at
	// most MaxDelay after its first event (default 10 × Debounce).
	Debounce time.Duration
	MaxDelay time.Duration
	// DiscoveryInterval is how often missing CRDs are looked for (default 5s).
	DiscoveryInterval time.Duration
	Logger            *slog.Logger
}

// Source watches a cluster and produces translator inputs.
type Source struct {
	opts Options
	log  *slog.Logger
	core kubernetes.Interface
	dyn  dynamic.Interface
	disc discovery.DiscoveryInterface

	changed *debounce.Signal

	mu      sync.Mutex
	custom  []*customInformer
	missing map[schema.GroupVersionResource]bool // logged as not installed
	// channel is the Gateway API CRDs' release channel (refreshChannel);
	// channelWarned that failing to read it was logged.
	channel       string
	channelWarned bool
	// pending is what changed since the inputs were last built.
	pending translate.Changes
}

type customInformer struct {
	kind     customKind
	informer cache.SharedIndexInformer
	started  bool
	synced   bool
}

// New returns a Source reading through the given clients.
func New(core kubernetes.Interface, dyn dynamic.Interface, opts Options) *Source {
	if opts.Debounce <= 0 {
		opts.Debounce = 20 * time.Millisecond
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 10 * opts.Debounce
	}
	if opts.DiscoveryInterval <= 0 {
		opts.DiscoveryInterval = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Source{
		opts:    opts,
		log:     opts.Logger,
		core:    core,
		dyn:     dyn,
		disc:    core.Discovery(),
		changed: debounce.NewSignal(),
		missing: map[schema.GroupVersionResource]bool{},
	}
	for _, k := range customKinds() {
		s.custom = append(s.custom, &customInformer{kind: k})
	}
	return s
}

// Run starts the informers, waits for their caches, calls onChange with the
// full inputs, and again after every debounced change, until ctx is done
// (then it returns nil). With the inputs comes what changed since the
// previous call (nil on the first: everything), for
// translate.TranslateIncremental. onChange runs on Run's goroutine, one call
// at a time.
func (s *Source) Run(ctx context.Context, onChange func(*translate.Inputs, *translate.Changes)) error {
	coreFactory := informers.NewSharedInformerFactoryWithOptions(s.core, 0, informers.WithTransform(slimCore))
	listers := coreListers{
		services: coreFactory.Core().V1().Services().Lister(),
		slices:   coreFactory.Discovery().V1().EndpointSlices().Lister(),
		pods:     coreFactory.Core().V1().Pods().Lister(),
		secrets:  coreFactory.Core().V1().Secrets().Lister(),
		cms:      coreFactory.Core().V1().ConfigMaps().Lister(),
		nsLister: coreFactory.Core().V1().Namespaces().Lister(),
	}
	for _, inf := range []cache.SharedIndexInformer{
		coreFactory.Core().V1().Services().Informer(),
		coreFactory.Discovery().V1().EndpointSlices().Informer(),
		coreFactory.Core().V1().Pods().Informer(),
		coreFactory.Core().V1().Secrets().Informer(),
		coreFactory.Core().V1().ConfigMaps().Informer(),
		coreFactory.Core().V1().Namespaces().Informer(),
	} {
		if _, err := inf.AddEventHandler(s.handler()); err != nil {
			return fmt.Errorf("register event handler: %w", err)
		}
		listers.informers = append(listers.informers, inf)
	}
	dynFactory := dynamicinformer.NewDynamicSharedInformerFactory(s.dyn, 0)
	defer coreFactory.Shutdown()
	defer dynFactory.Shutdown()

	coreFactory.Start(ctx.Done())
	s.startInstalled(ctx, dynFactory)
	for _, inf := range listers.informers {
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			return nil // ctx done
		}
	}
	if !s.waitCustomSynced(ctx) {
		return nil
	}
	s.log.Info("informer caches synced")

	s.refreshChannel(ctx)
	go s.pollDiscovery(ctx, dynFactory)

	s.takeChanges() // the first inputs are translated whole
	onChange(s.build(&listers), nil)
	for s.changed.Wait(ctx, s.opts.Debounce, s.opts.MaxDelay) {
		// Taken before the caches are listed: a change noted later shows
		// in the next call, possibly twice, never in none (the informers
		// update their cache before notifying).
		ch := s.takeChanges()
		onChange(s.build(&listers), ch)
	}
	return nil
}

// note records changed objects (both versions of an update) and wakes Run.
func (s *Source) note(objs ...any) {
	s.mu.Lock()
	for _, o := range objs {
		s.pending.Note(o)
	}
	s.mu.Unlock()
	s.changed.Notify()
}

// noteAll makes the next inputs be translated whole (a kind started being
// watched, the CRDs' channel changed) and wakes Run.
func (s *Source) noteAll() {
	s.mu.Lock()
	s.pending.All = true
	s.mu.Unlock()
	s.changed.Notify()
}

// takeChanges returns what changed since the last call.
func (s *Source) takeChanges() *translate.Changes {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.pending
	s.pending = translate.Changes{}
	return &ch
}

func (s *Source) handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { s.note(obj) },
		UpdateFunc: func(old, obj any) {
			if statusOnly(old, obj) {
				// Nothing to translate again, but fresh inputs let the
				// status writer see what is written now (ours, or
				// someone else's to put right).
				s.changed.Notify()
				return
			}
			s.note(old, obj)
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			s.note(obj)
		},
	}
}

// startInstalled starts informers for the custom resources the API server
// serves and that are not watched yet. Discovery errors leave the kind for
// the next poll.
func (s *Source) startInstalled(ctx context.Context, f dynamicinformer.DynamicSharedInformerFactory) {
	served := map[schema.GroupVersion]map[string]bool{}
	s.mu.Lock()
	defer s.mu.Unlock()
	started := false
	for _, ci := range s.custom {
		if ci.started {
			continue
		}
		gv := ci.kind.gvr.GroupVersion()
		res, ok := served[gv]
		if !ok {
			res = map[string]bool{}
			list, err := s.disc.ServerResourcesForGroupVersion(gv.String())
			switch {
			case err == nil:
				for _, r := range list.APIResources {
					res[r.Name] = true
				}
			case apierrors.IsNotFound(err):
			default:
				s.log.Warn("discovery failed; will retry", "groupVersion", gv.String(), "err", err)
				continue
			}
			served[gv] = res
		}
		if !res[ci.kind.gvr.Resource] {
			if !s.missing[ci.kind.gvr] {
				s.missing[ci.kind.gvr] = true
				s.log.Warn("custom resource not installed; ignoring it until its CRD appears", "resource", ci.kind.gvr.String())
			}
			continue
		}
		if s.missing[ci.kind.gvr] {
			s.log.Info("custom resource installed; watching it", "resource", ci.kind.gvr.String())
			delete(s.missing, ci.kind.gvr)
		}
		ci.informer = f.ForResource(ci.kind.gvr).Informer()
		if err := ci.informer.SetTransform(ci.kind.transform(s.log)); err != nil {
			// Only fails on an informer already started: not ours.
			s.log.Error("cannot convert cached objects; ignoring the resource", "resource", ci.kind.gvr.String(), "err", err)
			continue
		}
		if _, err := ci.informer.AddEventHandler(s.handler()); err != nil {
			s.log.Error("register event handler", "resource", ci.kind.gvr.String(), "err", err)
			continue
		}
		ci.started = true
		started = true
	}
	if started {
		f.Start(ctx.Done())
	}
}

// waitCustomSynced waits for every started custom informer's cache; false
// when ctx is done first.
func (s *Source) waitCustomSynced(ctx context.Context) bool {
	s.mu.Lock()
	var pending []*customInformer
	for _, ci := range s.custom {
		if ci.started && !ci.synced {
			pending = append(pending, ci)
		}
	}
	s.mu.Unlock()
	for _, ci := range pending {
		if !cache.WaitForCacheSync(ctx.Done(), ci.informer.HasSynced) {
			return false
		}
		s.mu.Lock()
		ci.synced = true
		s.mu.Unlock()
	}
	return true
}

// pollDiscovery picks up CRDs installed after start, and a change of the
// Gateway API CRDs' channel (an upgrade to experimental). A newly watched
// kind takes part in inputs once its cache has synced, so a half-filled
// cache never makes objects disappear from the proxies.
func (s *Source) pollDiscovery(ctx context.Context, f dynamicinformer.DynamicSharedInformerFactory) {
	t := time.NewTicker(s.opts.DiscoveryInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.refreshChannel(ctx) {
			s.noteAll()
		}
		s.mu.Lock()
		missing := len(s.missing) > 0
		s.mu.Unlock()
		if !missing {
			continue
		}
		s.startInstalled(ctx, f)
		if s.waitCustomSynced(ctx) {
			s.noteAll()
		}
	}
}

type coreListers struct {
	services  corelisters.ServiceLister
	slices    discoverylisters.EndpointSliceLister
	pods      corelisters.PodLister
	secrets   corelisters.SecretLister
	cms       corelisters.ConfigMapLister
	nsLister  corelisters.NamespaceLister
	informers []cache.SharedIndexInformer
}

// build lists every cache into fresh inputs. Objects are shared with the
// caches and must not be modified (the translator never does).
func (s *Source) build(l *coreListers) *translate.Inputs {
	in := &translate.Inputs{}
	var err error
	everything := labels.Everything()
	// Listers over synced caches do not fail; errors are kept for clarity.
	if in.Services, err = l.services.List(everything); err != nil {
		s.log.Error("list services", "err", err)
	}
	if in.EndpointSlices, err = l.slices.List(everything); err != nil {
		s.log.Error("list endpointslices", "err", err)
	}
	if in.Pods, err = l.pods.List(everything); err != nil {
		s.log.Error("list pods", "err", err)
	}
	if in.Secrets, err = l.secrets.List(everything); err != nil {
		s.log.Error("list secrets", "err", err)
	}
	if in.ConfigMaps, err = l.cms.List(everything); err != nil {
		s.log.Error("list configmaps", "err", err)
	}
	if in.Namespaces, err = l.nsLister.List(everything); err != nil {
		s.log.Error("list namespaces", "err", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in.GatewayAPIChannel = s.channel
	for _, ci := range s.custom {
		if !ci.synced {
			continue
		}
		for _, obj := range ci.informer.GetStore().List() {
			// An object that did not decode was logged by the transform.
			ci.kind.add(in, obj)
		}
	}
	return in
}

package fleet

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// PeerPortName is the port of the control plane's Service that serves
// gRPC (the chart's name for it); a slice with one port uses that one.
const PeerPortName = "grpc-xds"

// WatchPeers keeps set informed of the control-plane replicas behind
// Service ns/service, from its EndpointSlices: the ready endpoints'
// addresses with the gRPC port, except the pod named self (this replica).
// It returns when ctx ends.
func WatchPeers(ctx context.Context, client kubernetes.Interface, ns, service, self string, log *slog.Logger, set func([]string)) {
	f := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = labels.Set{discoveryv1.LabelServiceName: service}.String()
		}))
	inf := f.Discovery().V1().EndpointSlices()
	lister := inf.Lister()
	changed := make(chan struct{}, 1)
	kick := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    kick,
		UpdateFunc: func(_, n any) { kick(n) },
		DeleteFunc: kick,
	})
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return
	}
	var last []string
	for {
		found, err := lister.EndpointSlices(ns).List(labels.Everything())
		if err != nil {
			log.Warn("fleet: listing the control plane's EndpointSlices", "err", err)
		}
		addrs := PeerAddrs(found, self)
		if last == nil || !slices.Equal(addrs, last) {
			log.Info("fleet: peers", "service", ns+"/"+service, "peers", addrs)
			set(addrs)
			last = append([]string{}, addrs...)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// PeerAddrs returns the sorted "ip:port" of the ready endpoints of
// slices, leaving out pod self.
func PeerAddrs(eps []*discoveryv1.EndpointSlice, self string) []string {
	var out []string
	for _, s := range eps {
		port := int32(0)
		for _, p := range s.Ports {
			if p.Port != nil && (len(s.Ports) == 1 || (p.Name != nil && *p.Name == PeerPortName)) {
				port = *p.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			if e.TargetRef != nil && e.TargetRef.Kind == "Pod" && e.TargetRef.Name == self && self != "" {
				continue
			}
			for _, a := range e.Addresses {
				out = append(out, net.JoinHostPort(a, strconv.Itoa(int(port))))
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

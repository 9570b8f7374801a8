package kube

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The release channel of the cluster's Gateway API CRDs is read from the
// HTTPRoute CRD, whose fields decide which route features can work at all
// (the standard channel's CRD has no `retry`, so the API server drops it).
const (
	httpRouteCRD      = "httproutes.gateway.networking.k8s.io"
	channelAnnotation = "gateway.networking.k8s.io/channel"
)

func crdResource() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
}

// refreshChannel reads the HTTPRoute CRD's channel annotation ("" when the
// CRD is missing) and reports whether it changed. When the CRD cannot be
// read (say, RBAC without customresourcedefinitions get) the last known
// channel stays, and the first failure is logged.
func (s *Source) refreshChannel(ctx context.Context) bool {
	crd, err := s.dyn.Resource(crdResource()).Get(ctx, httpRouteCRD, metav1.GetOptions{})
	channel := ""
	switch {
	case err == nil:
		channel = crd.GetAnnotations()[channelAnnotation]
	case apierrors.IsNotFound(err):
	default:
		s.mu.Lock()
		warn := !s.channelWarned
		s.channelWarned = true
		s.mu.Unlock()
		if warn && ctx.Err() == nil {
			s.log.Warn("cannot read the HTTPRoute CRD to learn the Gateway API channel; GatewayClasses publish the standard channel's features",
				"crd", httpRouteCRD, "err", err)
		}
		return false
	}
	s.mu.Lock()
	changed := channel != s.channel
	s.channel, s.channelWarned = channel, false
	s.mu.Unlock()
	if changed {
		s.log.Info("Gateway API CRD channel", "channel", channel)
	}
	return changed
}

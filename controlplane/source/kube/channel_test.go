package kube

import (
	"context"
	"log/slog"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestRefreshChannel: the channel follows the HTTPRoute CRD's annotation,
// a missing CRD means none, and a CRD the control plane may not read keeps
// the last known channel.
func TestRefreshChannel(t *testing.T) {
	ctx := context.Background()
	crd := &unstructured.Unstructured{}
	crd.SetAPIVersion("apiextensions.k8s.io/v1")
	crd.SetKind("CustomResourceDefinition")
	crd.SetName(httpRouteCRD)
	crd.SetAnnotations(map[string]string{channelAnnotation: "experimental"})
	dyn := dynamicfake.NewSimpleDynamicClient(runtime.NewScheme(), crd)
	s := New(kubefake.NewClientset(), dyn, Options{Logger: slog.New(slog.DiscardHandler)})

	if !s.refreshChannel(ctx) || s.channel != "experimental" {
		t.Fatalf("channel %q, want experimental (and a change)", s.channel)
	}
	if s.refreshChannel(ctx) {
		t.Error("an unchanged channel was reported as changed")
	}

	forbidden := true
	dyn.PrependReactor("get", "customresourcedefinitions", func(k8stesting.Action) (bool, runtime.Object, error) {
		if !forbidden {
			return false, nil, nil
		}
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions"}, httpRouteCRD, nil)
	})
	if s.refreshChannel(ctx) || s.channel != "experimental" || !s.channelWarned {
		t.Errorf("forbidden: channel %q (warned %v), want the last known, experimental", s.channel, s.channelWarned)
	}

	forbidden = false
	if err := dyn.Resource(crdResource()).Delete(ctx, httpRouteCRD, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if !s.refreshChannel(ctx) || s.channel != "" || s.channelWarned {
		t.Errorf("CRD gone: channel %q (warned %v), want none", s.channel, s.channelWarned)
	}
}

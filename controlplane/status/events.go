package status

import (
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/infergate/infergate/controlplane/translate"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// ReasonConfigRejected is the reason of the Warning Event recorded when a
// proxy rejects (NACKs) its Gateway's configuration.
const ReasonConfigRejected = "ProxyRejectedConfig"

// NackEvents records a Warning Event on a Gateway when one of its proxies
// NACKs a pushed resource type. Every replica records the NACKs of the
// proxies connected to it (they are not status, so no leadership is needed);
// the event recorder aggregates repeats.
type NackEvents struct {
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder

	mu   sync.Mutex
	uids map[string]types.UID // Gateway "<ns>/<name>" → UID
}

// NewNackEvents starts an event broadcaster writing through client. Call
// Shutdown when done.
func NewNackEvents(client kubernetes.Interface, component string) *NackEvents {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	return &NackEvents{
		broadcaster: b,
		recorder:    b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component}),
		uids:        map[string]types.UID{},
	}
}

// Observe remembers the Gateways' UIDs, so events attach to the right object
// (kubectl describe matches them by UID).
func (e *NackEvents) Observe(in *translate.Inputs) {
	uids := make(map[string]types.UID, len(in.Gateways))
	for _, g := range in.Gateways {
		uids[g.Namespace+"/"+g.Name] = g.UID
	}
	e.mu.Lock()
	e.uids = uids
	e.mu.Unlock()
}

// Nack records the rejection; it has the signature of xds.WithOnNack's hook.
func (e *NackEvents) Nack(gateway, nodeID, typeURL, reason string) {
	ns, name, ok := strings.Cut(gateway, "/")
	if !ok {
		return
	}
	e.mu.Lock()
	uid := e.uids[gateway]
	e.mu.Unlock()
	ref := &corev1.ObjectReference{
		APIVersion: gwv1.GroupVersion.String(),
		Kind:       "Gateway",
		Namespace:  ns,
		Name:       name,
		UID:        uid,
	}
	e.recorder.Event(ref, corev1.EventTypeWarning, ReasonConfigRejected,
		fmt.Sprintf("proxy %s rejected %s: %s", nodeID, snapshotv1.TypeName(typeURL), reason))
}

// Shutdown flushes and stops the broadcaster.
func (e *NackEvents) Shutdown() {
	e.broadcaster.Shutdown()
}

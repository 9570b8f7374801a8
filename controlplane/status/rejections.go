package status

import (
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// ConditionConfigRejected is the Gateway condition (implementation-specific,
// hence the domain prefix) present while a proxy of the Gateway rejects its
// configuration. It is absent otherwise.
const ConditionConfigRejected = "infergate.dev/ConfigRejected"

// maxRejectionMessage bounds the messages of the conditions of proxy
// reports (rejections, pool problems); the first ones are enough to act
// on.
const maxRejectionMessage = 1024

// Rejection is a connected proxy's current refusal (NACK) of one resource
// type of its Gateway's configuration.
type Rejection struct {
	Node, TypeURL, Reason string
}

// rejectionCondition summarises a Gateway's rejections, naming the resource
// type and reason of each.
func rejectionCondition(rs []Rejection, generation int64) metav1.Condition {
	rs = append([]Rejection(nil), rs...)
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Node != rs[j].Node {
			return rs[i].Node < rs[j].Node
		}
		return rs[i].TypeURL < rs[j].TypeURL
	})
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("proxy %s rejected %s: %s", r.Node, snapshotv1.TypeName(r.TypeURL), r.Reason)
	}
	return metav1.Condition{
		Type:               ConditionConfigRejected,
		Status:             metav1.ConditionTrue,
		Reason:             ReasonConfigRejected,
		Message:            fleetv1.ShortenMessage(strings.Join(parts, "; "), maxRejectionMessage),
		ObservedGeneration: generation,
	}
}

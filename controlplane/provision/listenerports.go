package provision

import (
	"slices"
	"sync"

	"github.com/infergate/infergate/controlplane/translate"
)

// ListenerPorts holds, per Gateway ("<ns>/<name>"), the ports of the
// listeners its proxies serve as the translator computed them — the
// Gateway's own and those of the ListenerSets attached to it. The
// provisioner reads only the Gateway, so without them a ListenerSet
// listener on a port the Gateway does not list would get no Service or
// container port. Safe for concurrent use.
type ListenerPorts struct {
	mu      sync.Mutex
	ports   map[string][]int32
	changed func(gateway string)
}

// NewListenerPorts returns an empty registry.
func NewListenerPorts() *ListenerPorts {
	return &ListenerPorts{ports: map[string][]int32{}}
}

// Update takes one translation's listener ports and reports each Gateway
// whose ports changed to the function set by notify (a running
// provisioner re-renders its objects).
func (l *ListenerPorts) Update(out *translate.Output) {
	next := make(map[string][]int32, len(out.Gateways))
	for gw, res := range out.Gateways {
		var ports []int32
		for _, ln := range res.Listeners {
			ports = append(ports, int32(ln.GetPort()))
		}
		slices.Sort(ports)
		next[gw] = slices.Compact(ports)
	}
	l.mu.Lock()
	prev, changed := l.ports, l.changed
	l.ports = next
	l.mu.Unlock()
	if changed == nil {
		return
	}
	for gw, ports := range next {
		if !slices.Equal(prev[gw], ports) {
			changed(gw)
		}
	}
}

// Get returns the ports of gateway, ascending (nil when unknown).
func (l *ListenerPorts) Get(gateway string) []int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ports[gateway]
}

// notify sets (or, with nil, clears) the function Update calls.
func (l *ListenerPorts) notify(fn func(gateway string)) {
	l.mu.Lock()
	l.changed = fn
	l.mu.Unlock()
}

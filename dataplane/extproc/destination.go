package extproc

import (
	"net/netip"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/infergate/infergate/dataplane/endpoints"
)

// Names of the Endpoint Picker Protocol (GIE docs/proposals/004).
const (
	// DestinationKey names the picked endpoints, "ip:port[,ip:port…]" in
	// order of preference: a request header the picker sets, and a key of
	// its dynamic metadata under LBNamespace.
	DestinationKey = "x-gateway-destination-endpoint"
	// FallbackKey is the single fallback of protocol v0.3, still read
	// after DestinationKey's list.
	FallbackKey = "x-gateway-destination-endpoint-fallback"
	// ServedKey reports the endpoint that served a request, in the
	// metadata sent with the response headers.
	ServedKey = "x-gateway-destination-endpoint-served"
	// SubsetKey lists the endpoints the picker may choose from, in the
	// metadata sent with the request headers under SubsetNamespace.
	SubsetKey = "x-gateway-destination-endpoint-subset"

	LBNamespace     = "envoy.lb"
	SubsetNamespace = "envoy.lb.subset_hint"
)

// destinationHeader is DestinationKey in canonical header form.
const destinationHeader = "X-Gateway-Destination-Endpoint"

// MaxDestinations bounds the endpoints read from one answer: the list is
// tried in order, and no pool retries more often than this.
const MaxDestinations = 64

// destinationList gathers the picker's list in order: the header it set,
// then its metadata under LBNamespace, lb (the protocol says they agree;
// a picker setting only one is served too), then the v0.3 fallback;
// duplicates dropped. Entries are returned as written (trimmed), for the
// caller to resolve against the pool.
func destinationList(header string, lb *structpb.Struct) []string {
	var out []string
	add := func(list string) {
		for item := range strings.SplitSeq(list, ",") {
			item = strings.TrimSpace(item)
			if item != "" && len(out) < MaxDestinations && !slices.Contains(out, item) {
				out = append(out, item)
			}
		}
	}
	add(header)
	for _, key := range []string{DestinationKey, FallbackKey} {
		v := lb.GetFields()[key]
		switch k := v.GetKind().(type) {
		case *structpb.Value_StringValue:
			add(k.StringValue)
		case *structpb.Value_ListValue:
			for _, e := range k.ListValue.GetValues() {
				add(e.GetStringValue())
			}
		}
	}
	return out
}

// canonicalAddr is an "ip:port" entry in the form endpoint addresses take
// (IPv4-mapped IPv6 unmapped, IPv6 bracketed), ok false when malformed.
func canonicalAddr(s string) (string, bool) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return "", false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()).String(), true
}

// resolveDestinations maps the picker's list onto the pool: entries that
// are not "ip:port" of one of its endpoints are refused. A picker may only
// send a request where the pool's config says a model server is.
func resolveDestinations(list []string, pool map[string]*endpoints.Endpoint) (dests []*endpoints.Endpoint, refused []string) {
	for _, d := range list {
		addr, ok := canonicalAddr(d)
		ep := pool[addr]
		if !ok || ep == nil {
			refused = append(refused, d)
			continue
		}
		if !slices.Contains(dests, ep) {
			dests = append(dests, ep)
		}
	}
	return dests, refused
}

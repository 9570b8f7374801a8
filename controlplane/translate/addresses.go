package translate

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// UnsupportedAddress says why the Gateway's spec.addresses cannot be
// served ("" when they can): only IPAddress entries (the default type) are
// — a proxy Service asks its load balancer for an IP. Such a Gateway is not
// Accepted (UnsupportedAddress) and, like one with invalid parameters, gets
// no proxies.
func UnsupportedAddress(gw *gwv1.Gateway) string {
	for _, a := range gw.Spec.Addresses {
		if a.Type != nil && *a.Type != gwv1.IPAddressType {
			return fmt.Sprintf("address type %q is not supported; only IPAddress", *a.Type)
		}
		if _, err := netip.ParseAddr(a.Value); a.Value != "" && err != nil {
			return fmt.Sprintf("address %q is not an IP address", a.Value)
		}
	}
	return ""
}

// StaticAddresses are the IP addresses spec.addresses asks for (entries
// with a value; one without asks for any address, as without the entry).
func StaticAddresses(gw *gwv1.Gateway) []string {
	var out []string
	for _, a := range gw.Spec.Addresses {
		if a.Value != "" && (a.Type == nil || *a.Type == gwv1.IPAddressType) {
			out = append(out, a.Value)
		}
	}
	return out
}

// addressNotUsable says why a Gateway asking for a static address is not
// Programmed (AddressNotUsable), "" when it asks for none or has it: a
// proxy Service requests one load-balancer IP, and the address is in use
// once it is among the Gateway's status.addresses — which the provisioner
// copies from what the load balancer assigned. (Without a provisioner,
// nothing assigns it.)
func addressNotUsable(gw *gwv1.Gateway) string {
	want := StaticAddresses(gw)
	switch {
	case len(want) == 0:
		return ""
	case len(want) > 1:
		return fmt.Sprintf("%d static addresses requested (%s); a Gateway's proxy Service takes one", len(want), strings.Join(want, ", "))
	}
	if !slices.ContainsFunc(gw.Status.Addresses, func(a gwv1.GatewayStatusAddress) bool { return a.Value == want[0] }) {
		return fmt.Sprintf("address %s has not been assigned by the load balancer", want[0])
	}
	return ""
}

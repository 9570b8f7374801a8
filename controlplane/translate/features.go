package translate

import (
	"slices"
	"strings"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/pkg/features"
)

// SupportedFeatures are the Gateway API features infergate implements, as
// published in GatewayClass.status.supportedFeatures: exactly those whose
// tests pass in gateway-api's conformance suite (GATEWAY-HTTP profile,
// standard channel, `make conformance`), so the suite run with features
// inferred from the GatewayClass passes. Left out although implemented:
// HTTPRouteRetry (the standard-channel CRD has no `retry` field, so the API
// server drops it; see ExperimentalFeatures).
var SupportedFeatures = sortedFeatures(
	features.SupportGateway,
	features.SupportHTTPRoute,
	features.SupportBackendTLSPolicy,
	features.SupportBackendTLSPolicySANValidation,
	features.SupportReferenceGrant,
	features.SupportGatewayPort8080,
	features.SupportGatewayStaticAddresses,
	features.SupportGatewayFrontendClientCertificateValidation,
	features.SupportGatewayFrontendClientCertificateValidationInsecureFallback,
	features.SupportGatewayHTTPListenerIsolation,
	features.SupportGatewayHTTPSListenerDetectMisdirectedRequests,
	features.SupportGatewayInfrastructure,
	features.SupportGatewayAddressEmpty,
	features.SupportGatewayBackendClientCertificate,
	features.SupportHTTPRoute303RedirectStatusCode,
	features.SupportHTTPRoute307RedirectStatusCode,
	features.SupportHTTPRoute308RedirectStatusCode,
	features.SupportHTTPRouteBackendProtocolH2C,
	features.SupportHTTPRouteBackendProtocolWebSocket,
	features.SupportHTTPRouteBackendRequestHeaderModification,
	features.SupportHTTPRouteBackendTimeout,
	features.SupportHTTPRouteCORS,
	features.SupportHTTPRouteDestinationPortMatching,
	features.SupportHTTPRouteHostRewrite,
	features.SupportHTTPRouteMethodMatching,
	features.SupportHTTPRouteNamedRouteRule,
	features.SupportHTTPRouteParentRefPort,
	features.SupportHTTPRoutePathRedirect,
	features.SupportHTTPRoutePathRewrite,
	features.SupportHTTPRoutePortRedirect,
	features.SupportHTTPRouteQueryParamMatching,
	features.SupportHTTPRouteRequestMirror,
	features.SupportHTTPRouteRequestMultipleMirrors,
	features.SupportHTTPRouteRequestPercentageMirror,
	features.SupportHTTPRouteRequestTimeout,
	features.SupportHTTPRouteResponseHeaderModification,
	features.SupportHTTPRouteSchemeRedirect,
	features.SupportListenerSet,
)

// ExperimentalFeatures are implemented features whose fields only the
// experimental-channel CRDs have (the standard-channel HTTPRoute CRD has no
// `retry`, so the API server drops it): published, in addition to
// SupportedFeatures, when the cluster's HTTPRoute CRD is experimental
// (Inputs.GatewayAPIChannel), and passing there
// (`make conformance CONFORMANCE_CHANNEL=experimental`).
var ExperimentalFeatures = sortedFeatures(
	features.SupportHTTPRouteRetry,
	features.SupportHTTPRouteRetryBackendTimeout,
	features.SupportHTTPRouteRetryConnectionError,
)

// ChannelExperimental is the value of the CRDs' gateway.networking.k8s.io/channel
// annotation in gateway-api's experimental channel.
const ChannelExperimental = "experimental"

// featuresFor is what a GatewayClass publishes under the given channel.
func featuresFor(channel string) []gwv1.SupportedFeature {
	out := slices.Clone(SupportedFeatures)
	if channel == ChannelExperimental {
		out = append(out, ExperimentalFeatures...)
		slices.SortFunc(out, func(a, b gwv1.SupportedFeature) int { return strings.Compare(string(a.Name), string(b.Name)) })
	}
	return out
}

// sortedFeatures lists names in ascending order, as the API asks.
func sortedFeatures(names ...features.FeatureName) []gwv1.SupportedFeature {
	slices.Sort(names)
	out := make([]gwv1.SupportedFeature, len(names))
	for i, n := range names {
		out[i] = gwv1.SupportedFeature{Name: gwv1.FeatureName(n)}
	}
	return out
}

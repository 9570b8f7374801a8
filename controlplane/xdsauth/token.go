package xdsauth

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/infergate/infergate/controlplane/xds"
)

// DefaultAudience is the audience proxies' projected tokens are bound to, so
// a token minted for the API server (or anything else) is not accepted here.
const DefaultAudience = "infergate.dev/xds"

// TokenAuthorizer admits a proxy only with a ServiceAccount token, bound to
// Audience, of the ServiceAccount allowed to read the gateway it asks for.
type TokenAuthorizer struct {
	Client   kubernetes.Interface
	Audience string
	// ServiceAccountFor names ("ns/name") the ServiceAccount whose proxies
	// may read gateway ("ns/name"); false when the gateway is unknown.
	ServiceAccountFor func(gateway string) (string, bool)
}

// Authorize is an xds.WithAuthorizer hook.
func (a *TokenAuthorizer) Authorize(ctx context.Context, node *corev3.Node) error {
	gw := node.GetMetadata().GetFields()[xds.MetadataGateway].GetStringValue()
	user, err := a.authenticate(ctx)
	if err != nil {
		return err
	}
	ns, name, ok := serviceAccount(user)
	if !ok {
		return status.Errorf(codes.PermissionDenied, "%s is not a ServiceAccount; proxies authenticate with their own", user)
	}
	want, known := a.ServiceAccountFor(gw)
	if !known {
		return status.Errorf(codes.PermissionDenied, "gateway %q is not served by this control plane", gw)
	}
	if want != ns+"/"+name {
		return status.Errorf(codes.PermissionDenied, "ServiceAccount %s/%s may not read gateway %s", ns, name, gw)
	}
	return nil
}

// PeerAuthorizer admits a peer replica's fleet relay: its token, bound to
// Audience, must be of the ServiceAccount named Self ("ns/name"), the
// control plane's own.
func (a *TokenAuthorizer) PeerAuthorizer(self string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		user, err := a.authenticate(ctx)
		if err != nil {
			return err
		}
		ns, name, ok := serviceAccount(user)
		if !ok || ns+"/"+name != self {
			return status.Errorf(codes.PermissionDenied, "%s is not the control plane's ServiceAccount %s; only control-plane replicas relay fleet reports", user, self)
		}
		return nil
	}
}

// ServiceAccountOf reviews token (bound to Audience) and returns its
// ServiceAccount as ns/name: how a control-plane replica learns its own
// from its projected token.
func (a *TokenAuthorizer) ServiceAccountOf(ctx context.Context, token string) (string, error) {
	user, err := a.review(ctx, token)
	if err != nil {
		return "", err
	}
	ns, name, ok := serviceAccount(user)
	if !ok {
		return "", fmt.Errorf("token of %s, not of a ServiceAccount", user)
	}
	return ns + "/" + name, nil
}

// authenticate reviews the request's bearer token and returns the user.
func (a *TokenAuthorizer) authenticate(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	var token string
	for _, v := range md.Get("authorization") {
		if t, ok := strings.CutPrefix(v, "Bearer "); ok {
			token = t
		}
	}
	if token == "" {
		return "", status.Error(codes.Unauthenticated, "a bearer token (the proxy's projected ServiceAccount token) is required")
	}
	return a.review(ctx, token)
}

// review asks the API server whose token is, for Audience.
func (a *TokenAuthorizer) review(ctx context.Context, token string) (string, error) {
	tr, err := a.Client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{a.Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", status.Errorf(codes.Unavailable, "token review: %v", err)
	}
	if !tr.Status.Authenticated || !slices.Contains(tr.Status.Audiences, a.Audience) {
		msg := tr.Status.Error
		if msg == "" {
			msg = "token not valid for audience " + a.Audience
		}
		return "", status.Error(codes.Unauthenticated, msg)
	}
	return tr.Status.User.Username, nil
}

// DebugInterceptor guards the debug service: the caller's token must be
// valid (any audience the API server accepts is not enough: it must be
// bound to Audience too) and its user allowed to list Gateways cluster-wide,
// because snapshots hold every gateway's configuration and certificates.
func (a *TokenAuthorizer) DebugInterceptor(servicePrefix string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !strings.HasPrefix(info.FullMethod, servicePrefix) {
			return handler(ctx, req)
		}
		user, err := a.authenticate(ctx)
		if err != nil {
			return nil, err
		}
		sar, err := a.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{
			Spec: authzv1.SubjectAccessReviewSpec{
				User: user,
				ResourceAttributes: &authzv1.ResourceAttributes{
					Verb: "list", Group: "gateway.networking.k8s.io", Resource: "gateways",
				},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "access review: %v", err)
		}
		if !sar.Status.Allowed {
			return nil, status.Errorf(codes.PermissionDenied, "%s may not list gateways, so may not read snapshots", user)
		}
		return handler(ctx, req)
	}
}

func serviceAccount(user string) (ns, name string, ok bool) {
	rest, ok := strings.CutPrefix(user, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	ns, name, ok = strings.Cut(rest, ":")
	return ns, name, ok && ns != "" && name != ""
}

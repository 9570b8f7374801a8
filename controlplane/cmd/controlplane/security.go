package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/infergate/infergate/controlplane/provision"
	"github.com/infergate/infergate/controlplane/xds"
	"github.com/infergate/infergate/controlplane/xdsauth"
	"github.com/infergate/infergate/proto/tracing"
)

// securityConfig holds the flags that protect the gRPC port (xDS + debug).
type securityConfig struct {
	tlsSecret     string
	tlsHosts      string
	certFile      string
	keyFile       string
	auth          bool
	tokenAudience string
}

func (s *securityConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&s.tlsSecret, "xds-tls-secret", "infergate-xds-tls", "Kubernetes mode: Secret (in the leader-election namespace) holding the xDS CA and serving certificate; created when missing; empty disables TLS")
	fs.StringVar(&s.tlsHosts, "xds-tls-hosts", "", "comma-separated extra DNS names/IPs for the xDS serving certificate (the host of --proxy-xds-address, localhost and 127.0.0.1 are always included)")
	fs.StringVar(&s.certFile, "tls-cert-file", "", "serve xDS + debug with this PEM certificate (instead of the Secret-managed one)")
	fs.StringVar(&s.keyFile, "tls-key-file", "", "private key for --tls-cert-file")
	fs.BoolVar(&s.auth, "xds-auth", true, "Kubernetes mode: proxies must present an audience-bound ServiceAccount token of their Gateway's ServiceAccount (TokenReview); debug clients must be allowed to list Gateways (SubjectAccessReview). Needs TLS")
	fs.StringVar(&s.tokenAudience, "xds-token-audience", xdsauth.DefaultAudience, "audience proxies' tokens must be bound to")
}

// provisionConfig holds the flags of proxy provisioning (Kubernetes mode).
type provisionConfig struct {
	enabled    bool
	image      string
	xdsAddress string
	// tracing is the control plane's own --tracing-* configuration:
	// provisioned proxies trace to the same collector the same way.
	tracing tracing.Options
}

func (p *provisionConfig) register(fs *flag.FlagSet) {
	fs.BoolVar(&p.enabled, "provision-proxies", false, "Kubernetes mode: the leader creates a proxy Deployment, Service, HPA and PDB for every Gateway of our class")
	fs.StringVar(&p.image, "proxy-image", "ghcr.io/infergate/proxy:latest", "proxy image for provisioned Deployments (GatewayClass/Gateway parameters may override)")
	fs.StringVar(&p.xdsAddress, "proxy-xds-address", "", "control-plane address provisioned proxies dial, e.g. infergate-controlplane.infergate-system.svc:18000")
}

// certHosts are the names the xDS serving certificate is issued for.
func certHosts(s securityConfig, proxyXDSAddress string) []string {
	hosts := []string{"localhost", "127.0.0.1"}
	if h, _, err := net.SplitHostPort(proxyXDSAddress); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	return append(hosts, splitList(s.tlsHosts)...)
}

// secureServer returns the gRPC server options and xDS options for the
// configured security, and the CA proxies must trust (nil without TLS).
func secureServer(ctx context.Context, s securityConfig, p provisionConfig, km *kubeMode) (grpcOpts []grpc.ServerOption, xdsOpts []xds.Option, ca []byte, err error) {
	var tlsCfg *tls.Config
	switch {
	case s.certFile != "" || s.keyFile != "":
		pair, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--tls-cert-file/--tls-key-file: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	case km != nil && s.tlsSecret != "":
		bundle, err := xdsauth.EnsureSecret(ctx, km.core, km.cfg.leaseNamespace, s.tlsSecret, certHosts(s, p.xdsAddress), km.log.With("component", "xdsauth"))
		if err != nil {
			return nil, nil, nil, err
		}
		if tlsCfg, err = bundle.ServerConfig(); err != nil {
			return nil, nil, nil, err
		}
		ca = bundle.CACert
	}
	if tlsCfg != nil {
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	if km != nil && s.auth {
		if tlsCfg == nil {
			return nil, nil, nil, fmt.Errorf("--xds-auth needs TLS (tokens are never accepted in the clear): set --xds-tls-secret or --tls-cert-file, or --xds-auth=false")
		}
		authz := &xdsauth.TokenAuthorizer{Client: km.core, Audience: s.tokenAudience, ServiceAccountFor: km.serviceAccountFor}
		xdsOpts = append(xdsOpts, xds.WithAuthorizer(authz.Authorize))
		grpcOpts = append(grpcOpts, grpc.ChainUnaryInterceptor(authz.DebugInterceptor("/infergate.debug.v1.Debug/")))
	}
	return grpcOpts, xdsOpts, ca, nil
}

// serviceAccountFor names the ServiceAccount whose proxies may read gateway
// ("ns/name"): the one the provisioner creates for it, or the one a
// Gateway names in its infergate.dev/proxy-service-account annotation (for
// proxies deployed by hand).
func (k *kubeMode) serviceAccountFor(gateway string) (string, bool) {
	in := k.inputs.Load()
	if in == nil {
		return "", false
	}
	ns, name, _ := strings.Cut(gateway, "/")
	for _, gw := range in.Gateways {
		if gw.Namespace != ns || gw.Name != name {
			continue
		}
		if sa := gw.Annotations[annotationProxyServiceAccount]; sa != "" {
			if !strings.Contains(sa, "/") {
				sa = ns + "/" + sa
			}
			return sa, true
		}
		return provision.ServiceAccountFor(ns, name, string(gw.Spec.GatewayClassName)), true
	}
	return "", false
}

// annotationProxyServiceAccount on a Gateway names ("name" or "ns/name") the
// ServiceAccount of proxies deployed by hand for it.
const annotationProxyServiceAccount = "infergate.dev/proxy-service-account"

// provisioner returns the leader's extra work, provisioning proxies, or
// nil when provisioning is off.
func (k *kubeMode) provisioner(p provisionConfig, controllerName, tokenAudience string, ca []byte, auth bool) func(ctx context.Context) {
	if !p.enabled {
		return nil
	}
	opts := provision.Options{
		ControllerName: controllerName,
		Image:          p.image,
		XDSAddress:     p.xdsAddress,
		XDSCACert:      ca,
		ListenerPorts:  k.ports,
		Tracing:        p.tracing,
		Logger:         k.log.With("component", "provision"),
	}
	if auth && len(ca) > 0 {
		opts.TokenAudience = tokenAudience
	}
	return func(ctx context.Context) {
		if err := provision.New(k.core, k.dyn, opts).Run(ctx); err != nil && ctx.Err() == nil {
			k.log.Error("provisioner stopped", "err", err)
		}
	}
}

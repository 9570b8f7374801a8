package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/infergate/infergate/controlplane/fleet"
	"github.com/infergate/infergate/controlplane/xdsauth"
	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
	"github.com/infergate/infergate/proto/xdsclient"
)

// fleetConfig holds the flags of the fleet exchange (keys and sends
// between a gateway's proxies) and of relaying it between replicas.
type fleetConfig struct {
	pushEvery     time.Duration
	sendsEvery    time.Duration
	peers         string
	peerService   string
	peerTokenFile string
	peerCAFile    string
	peerName      string
}

func (f *fleetConfig) register(fs *flag.FlagSet) {
	fs.DurationVar(&f.pushEvery, "fleet-keys-push-interval", fleetv1.KeysEvery, "shortest time between two pushes of a gateway's fleet-wide prefix keys to one proxy; changes in between go out together")
	fs.DurationVar(&f.sendsEvery, "fleet-sends-push-interval", fleetv1.SendsEvery, "shortest time between two pushes of the other proxies' sends (where each prompt went, with its prefill tokens) and scrapes to one proxy; at most --fleet-keys-push-interval. Longer saves messages and lets proxies see each other's queued prefill later")
	fs.StringVar(&f.peers, "fleet-peers", "", "comma-separated host:port of the other control-plane replicas: each relays the fleet reports of the proxies connected to it to the others, so all replicas serve every proxy's keys and sends")
	fs.StringVar(&f.peerService, "fleet-peer-service", "", "Kubernetes mode: find the other replicas from the EndpointSlices of this Service (namespace/name, or name in the leader-election namespace): its ready endpoints on the port named "+fleet.PeerPortName+" (or its only port), this pod (POD_NAME) left out")
	fs.StringVar(&f.peerTokenFile, "fleet-peer-token-file", "", "file holding this replica's ServiceAccount token bound to --xds-token-audience, presented to peers (re-read on every connection); with --xds-auth, peers must present a token of the same ServiceAccount")
	fs.StringVar(&f.peerCAFile, "fleet-peer-ca-file", "", "PEM CA peers' serving certificates must chain to (default: the CA of --xds-tls-secret; required with --tls-cert-file)")
	fs.StringVar(&f.peerName, "fleet-peer-server-name", "", "name checked in peers' serving certificates (default: the host of --proxy-xds-address, else localhost)")
}

// fleetSetup is what the fleet exchange needs from the rest of the
// control plane.
type fleetSetup struct {
	km       *kubeMode
	security securityConfig
	// ca is the managed xDS CA (nil without one), xdsAddress the
	// address proxies dial (its host names peers' certificates).
	ca         []byte
	xdsAddress string
	log        *slog.Logger
}

// peers starts the relay to the other replicas when any are configured
// (nil when none are); ctx ends it.
func (f *fleetConfig) startPeers(ctx context.Context, agg *fleet.Aggregator, s fleetSetup) (*fleet.Peers, error) {
	static := splitList(f.peers)
	if len(static) == 0 && f.peerService == "" {
		return nil, nil
	}
	if f.peerService != "" && s.km == nil {
		return nil, errors.New("--fleet-peer-service needs Kubernetes mode; list the replicas in --fleet-peers")
	}
	dial, err := f.peerDialOptions(s)
	if err != nil {
		return nil, err
	}
	opts := fleet.PeerOptions{DialOptions: dial, Logger: s.log}
	if s.km != nil && s.security.auth {
		// Peers authenticate as this replica does: a token of the
		// control plane's own ServiceAccount, learned by reviewing ours.
		authz := &xdsauth.TokenAuthorizer{Client: s.km.core, Audience: s.security.tokenAudience}
		tok, err := os.ReadFile(f.peerTokenFile)
		if err != nil {
			return nil, fmt.Errorf("--fleet-peer-token-file: %w", err)
		}
		self, err := authz.ServiceAccountOf(ctx, strings.TrimSpace(string(tok)))
		if err != nil {
			return nil, fmt.Errorf("--fleet-peer-token-file: reviewing this replica's own token: %w", err)
		}
		opts.Authorize = authz.PeerAuthorizer(self)
		s.log.Info("fleet: peers must present tokens of this replica's ServiceAccount", "serviceAccount", self)
	}
	peers := fleet.NewPeers(ctx, agg, opts)
	if f.peerService == "" {
		peers.Set(static)
		return peers, nil
	}
	ns, name, ok := strings.Cut(f.peerService, "/")
	if !ok {
		ns, name = s.km.cfg.leaseNamespace, f.peerService
	}
	self := os.Getenv("POD_NAME")
	go fleet.WatchPeers(ctx, s.km.core, ns, name, self, s.log, func(found []string) {
		peers.Set(slices.Concat(static, found))
	})
	return peers, nil
}

// peerDialOptions are TLS (when the control plane serves TLS) trusting the
// managed CA or --fleet-peer-ca-file, and the token with --xds-auth.
func (f *fleetConfig) peerDialOptions(s fleetSetup) ([]grpc.DialOption, error) {
	tlsOn := s.security.certFile != "" || (s.km != nil && s.security.tlsSecret != "")
	auth := s.km != nil && s.security.auth
	if !tlsOn {
		return nil, nil
	}
	ca := s.ca
	if f.peerCAFile != "" {
		var err error
		if ca, err = os.ReadFile(f.peerCAFile); err != nil {
			return nil, fmt.Errorf("--fleet-peer-ca-file: %w", err)
		}
	}
	if len(ca) == 0 {
		return nil, errors.New("relaying to peers over TLS needs their CA: set --fleet-peer-ca-file")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("the peers' CA holds no PEM certificate")
	}
	// Every replica serves the same certificate (the Secret's, or the
	// files'): it names the address proxies dial, else localhost. Peers
	// are dialled by pod IP, so the name is checked, not the address.
	name := f.peerName
	if h, _, err := net.SplitHostPort(s.xdsAddress); name == "" && err == nil && h != "" {
		name = h
	}
	if name == "" {
		name = "localhost"
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS12,
	}))}
	if auth {
		if f.peerTokenFile == "" {
			return nil, errors.New("with --xds-auth, relaying to peers needs --fleet-peer-token-file (a token of the control plane's ServiceAccount bound to --xds-token-audience)")
		}
		opts = append(opts, grpc.WithPerRPCCredentials(xdsclient.TokenFile{Path: f.peerTokenFile}))
	}
	return opts, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

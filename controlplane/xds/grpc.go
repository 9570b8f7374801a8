package xds

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// GRPCServerOptions are the keepalive settings the control plane's gRPC
// server should use for long-lived ADS streams: the server pings idle
// streams so a proxy that vanished without closing its connection is
// dropped (and stops counting as connected), and proxies are allowed to ping
// every 10s so they can notice a dead control plane quickly (gRPC's default
// policy would answer such pings with GOAWAY "too_many_pings").
func GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
}

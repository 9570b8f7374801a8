package xds_test

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/infergate/infergate/controlplane/snapshot"
	"github.com/infergate/infergate/controlplane/xds"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// manifestStream subscribes to gw's Manifest on a raw delta stream, as a
// proxy with the given client features would, and returns the Manifests it
// is sent, each ACKed.
func manifestStream(t *testing.T, addr, gw string, features []string) <-chan *snapshotv1.Manifest {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, err := structpb.NewStruct(map[string]any{xds.MetadataGateway: gw})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{
		Node:                   &corev3.Node{Id: "raw", Cluster: gw, Metadata: md, ClientFeatures: features},
		TypeUrl:                snapshotv1.TypeManifest,
		ResourceNamesSubscribe: []string{"*"},
	}); err != nil {
		t.Fatal(err)
	}
	out := make(chan *snapshotv1.Manifest, 16)
	go func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				return
			}
			for _, r := range resp.GetResources() {
				m := &snapshotv1.Manifest{}
				if err := r.GetResource().UnmarshalTo(m); err != nil {
					t.Errorf("manifest: %v", err)
					return
				}
				out <- m
			}
			if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
				return
			}
		}
	}()
	return out
}

func nextManifest(t *testing.T, ch <-chan *snapshotv1.Manifest, version string) *snapshotv1.Manifest {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-ch:
			if m.GetVersion() == version {
				return m
			}
		case <-timeout:
			t.Fatalf("no manifest at version %s", version)
		}
	}
}

// TestManifestForms: a proxy that lists the compact-manifest feature is sent
// per-type digests, one that does not (an older release) the full list of
// resources — both for every new snapshot, at the same version.
func TestManifestForms(t *testing.T) {
	srv := xds.NewServer(quietLogger())
	addr, _ := serve(t, srv, "127.0.0.1:0")
	compact := manifestStream(t, addr, gwA, []string{snapshotv1.FeatureTypeDigests})
	full := manifestStream(t, addr, gwA, nil)

	w := world{listeners: 1, routes: map[string]string{"r1": "/a", "r2": "/b"}, endpoints: []string{"10.0.0.1"}}
	for i, path := range []string{"/b", "/b2"} {
		w.routes["r2"] = path
		set := w.set(t, gwA)
		srv.Update(map[string]*snapshot.Set{gwA: set})
		c, f := nextManifest(t, compact, set.Version), nextManifest(t, full, set.Version)
		if len(c.GetResources()) != 0 || len(c.GetTypes()) != 4 {
			t.Errorf("snapshot %d: compact form: %d refs, %d type digests; want 0 and 4", i, len(c.GetResources()), len(c.GetTypes()))
		}
		if len(f.GetResources()) != set.Count() || len(f.GetTypes()) != 0 {
			t.Errorf("snapshot %d: full form: %d refs, %d type digests; want %d and 0", i, len(f.GetResources()), len(f.GetTypes()), set.Count())
		}
		if c.GetProxyCount() != f.GetProxyCount() {
			t.Errorf("snapshot %d: proxy counts %d (compact) and %d (full)", i, c.GetProxyCount(), f.GetProxyCount())
		}
	}
}

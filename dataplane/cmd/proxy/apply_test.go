package main

import (
	"context"
	"log/slog"
	"maps"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/dataplane/config/configtest"
	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/pipeline"
	"github.com/infergate/infergate/dataplane/server"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
	"github.com/infergate/infergate/proto/xdsclient"
)

const gw = "ns/gw"

// withCount returns res with its Manifest carrying n proxies, the way the
// control plane re-sends it: same version, same resources.
func withCount(res xdsclient.Resources, n uint32) xdsclient.Resources {
	mf := proto.CloneOf(res.Manifest())
	mf.ProxyCount = n
	out := maps.Clone(res)
	delete(out, snapshotv1.TypeManifest) // a new inner map: res's stays as it is
	out.Add(mf)
	return out
}

// TestConfigHandlerAppliesProxyCount: every Manifest's proxy count sets the
// scrape interval — with a new config, when only the count changed (same
// version, no new config) and while the next snapshot is still arriving.
func TestConfigHandlerAppliesProxyCount(t *testing.T) {
	mgr := server.New(slog.New(slog.DiscardHandler), server.Options{
		BindAddress: "127.0.0.1",
		Pipeline:    pipeline.Options{Endpoints: endpoints.Options{Interval: 10 * time.Millisecond}},
	})
	t.Cleanup(func() { _ = mgr.Close(context.Background()) })
	h := configHandler(mgr, slog.New(slog.DiscardHandler))
	reg := mgr.Endpoints()
	expect := func(step string, proxies int) {
		t.Helper()
		if got := reg.Proxies(); got != proxies {
			t.Errorf("%s: proxies = %d, want %d", step, got, proxies)
		}
		if got, want := reg.Interval(), time.Duration(proxies)*10*time.Millisecond; got != want {
			t.Errorf("%s: scrape interval = %v, want %v", step, got, want)
		}
	}

	// A gateway without listeners binds nothing and still compiles.
	first := xdsclient.Resources(configtest.Resources(gw, &snapshotv1.Backend{Name: gw + "/service/ns/echo:80", Kind: snapshotv1.Backend_SERVICE, Source: "ns/echo", Endpoints: gw + "/service/ns/echo:80"}, &snapshotv1.Endpoints{Name: gw + "/service/ns/echo:80"}))
	if err := h(withCount(first, 4)); err != nil {
		t.Fatal(err)
	}
	cfg := mgr.Config()
	if cfg == nil || cfg.Version != first.Manifest().GetVersion() {
		t.Fatalf("first snapshot not applied: %+v", cfg)
	}
	expect("first snapshot", 4)

	if err := h(withCount(first, 16)); err != nil {
		t.Fatal(err)
	}
	if mgr.Config() != cfg {
		t.Error("a count-only change recompiled the config")
	}
	expect("count-only change", 16)

	// The next snapshot's Manifest arrived, its Route not yet.
	next := maps.Clone(first)
	mf := proto.CloneOf(first.Manifest())
	mf.Version = "next"
	mf.ProxyCount = 2
	refs := []*snapshotv1.ResourceRef{{TypeUrl: snapshotv1.TypeRoute, Name: gw + "/ns/r/0", Hash: "0"}}
	for typeURL, byName := range first {
		for name, r := range byName {
			if typeURL != snapshotv1.TypeManifest {
				refs = append(refs, &snapshotv1.ResourceRef{TypeUrl: typeURL, Name: name, Hash: r.Hash})
			}
		}
	}
	mf.Types = snapshotv1.TypeDigests(refs)
	delete(next, snapshotv1.TypeManifest)
	next.Add(mf)
	if err := h(next); err != nil {
		t.Fatalf("incomplete snapshot: %v", err)
	}
	if mgr.Config() != cfg {
		t.Error("an incomplete snapshot replaced the config")
	}
	expect("incomplete snapshot", 2)

	// A control plane that sends no count means one proxy.
	if err := h(withCount(first, 0)); err != nil {
		t.Fatal(err)
	}
	expect("no count", 1)
}

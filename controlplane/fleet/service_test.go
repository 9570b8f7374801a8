package fleet

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	fleetv1 "github.com/infergate/infergate/proto/fleet/v1"
)

// serve runs svc on loopback and returns a client.
func serve(t *testing.T, svc *Service) fleetv1.PrefixKeysClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	svc.Register(g)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return fleetv1.NewPrefixKeysClient(conn)
}

func open(t *testing.T, c fleetv1.PrefixKeysClient, node, gw string) fleetv1.PrefixKeys_ExchangeClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := c.Exchange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&fleetv1.KeyReport{NodeId: node, Gateway: gw}); err != nil {
		t.Fatal(err)
	}
	return st
}

// Two proxies of a gateway each get the other's keys; a proxy of another
// gateway gets none of them.
func TestServiceFansOutPerGateway(t *testing.T) {
	c := serve(t, NewService(NewAggregator(Options{PushEvery: 10 * time.Millisecond}), nil, nil))
	a, b := open(t, c, "a", "ns/gw"), open(t, c, "b", "ns/gw")
	other := open(t, c, "c", "ns/other")
	if err := a.Send(report("p", time.Minute, use(7, 0, false))); err != nil {
		t.Fatal(err)
	}
	if err := other.Send(report("p", time.Minute, use(9, 0, false))); err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]fleetv1.PrefixKeys_ExchangeClient{"a": a, "b": b} {
		got, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(got.GetPools()) != 1 || !slices.Equal(got.GetPools()[0].GetOnce(), []uint64{7}) {
			t.Fatalf("proxy %s got %v, want pool p once [7]", name, got)
		}
	}
	got, err := other.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetPools()) != 1 || !slices.Equal(got.GetPools()[0].GetOnce(), []uint64{9}) {
		t.Fatalf("the other gateway's proxy got %v, want only its own key 9", got)
	}
}

// Changes within PushEvery go out in one send: 20 new keys reported
// back to back reach a stream in at most a few messages, the last one
// holding them all.
func TestServiceDebounces(t *testing.T) {
	const every = 300 * time.Millisecond
	c := serve(t, NewService(NewAggregator(Options{PushEvery: every}), nil, nil))
	watcher := open(t, c, "w", "ns/gw")
	a := open(t, c, "a", "ns/gw")
	t0 := time.Now()
	for i := range 20 {
		if err := a.Send(report("p", time.Minute, use(uint64(i+1), 0, false))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	msgs := 0
	for {
		got, err := watcher.Recv()
		if err != nil {
			t.Fatal(err)
		}
		msgs++
		if len(got.GetPools()) == 1 && len(got.GetPools()[0].GetOnce()) == 20 {
			break
		}
	}
	// One send per PushEvery at most, whatever the machine's speed.
	if limit := int(time.Since(t0)/every) + 1; msgs > limit {
		t.Fatalf("%d sends in %v, at most %d with a push interval of %v", msgs, time.Since(t0), limit, every)
	}
	if msgs >= 20 {
		t.Fatalf("%d sends for 20 reports: not debounced", msgs)
	}
}

// Sends go out at their own, shorter interval: while a proxy reports a new
// key and a send every 10 ms, a proxy that takes sends gets them in many
// pushes, but the key sets still at most once per PushEvery.
func TestServiceSendsOutpaceKeys(t *testing.T) {
	const every = 300 * time.Millisecond
	c := serve(t, NewService(NewAggregator(Options{PushEvery: every, SendsEvery: 5 * time.Millisecond}), nil, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	watcher, err := c.Exchange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := watcher.Send(&fleetv1.KeyReport{NodeId: "w", Gateway: "ns/gw", TakesSends: true}); err != nil {
		t.Fatal(err)
	}
	a := open(t, c, "a", "ns/gw")
	time.Sleep(20 * time.Millisecond) // the watcher subscribed
	t0 := time.Now()
	go func() {
		for i := range 20 {
			r := report("p", time.Minute, use(uint64(i+1), 0, false))
			r.Sends = sendsReport("p", send{ep: uint64(i), keys: []uint64{uint64(100 + i)}}).GetSends()
			if a.Send(r) != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	keyMsgs, sendMsgs, sends, keys := 0, 0, 0, 0
	for sends < 20 || keys < 20 {
		got, err := watcher.Recv()
		if err != nil {
			t.Fatalf("after %d sends and %d keys: %v", sends, keys, err)
		}
		if len(got.GetPools()) > 0 {
			keyMsgs++
			keys = len(got.GetPools()[0].GetOnce())
		}
		if len(got.GetSends()) > 0 {
			sendMsgs++
			sends += got.GetSends()[0].Len()
		}
	}
	if limit := int(time.Since(t0)/every) + 1; keyMsgs > limit {
		t.Fatalf("%d key-set pushes in %v, at most %d with a key push interval of %v", keyMsgs, time.Since(t0), limit, every)
	}
	if sendMsgs <= keyMsgs {
		t.Fatalf("20 sends over 200 ms came in %d pushes, key sets in %d: sends not pushed more often", sendMsgs, keyMsgs)
	}
}

// A stream is admitted only as the authoriser says, and must name its
// proxy and gateway first.
func TestServiceAdmission(t *testing.T) {
	deny := func(_ context.Context, gw string) error {
		if gw == "ns/secret" {
			return status.Error(codes.PermissionDenied, "not yours")
		}
		return nil
	}
	c := serve(t, NewService(NewAggregator(Options{}), nil, deny))
	for _, tc := range []struct {
		node, gw string
		want     codes.Code
	}{
		{"a", "ns/secret", codes.PermissionDenied},
		{"", "ns/gw", codes.InvalidArgument},
		{"a", "gw", codes.InvalidArgument},
	} {
		st := open(t, c, tc.node, tc.gw)
		if _, err := st.Recv(); status.Code(err) != tc.want {
			t.Errorf("node %q gateway %q: %v, want %v", tc.node, tc.gw, err, tc.want)
		}
	}
	// A later report may not switch gateways.
	st := open(t, c, "a", "ns/gw")
	if err := st.Send(&fleetv1.KeyReport{Gateway: "ns/secret"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Errorf("switching gateways: %v, want InvalidArgument", err)
	}
}

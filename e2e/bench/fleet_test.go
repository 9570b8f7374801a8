package bench

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
)

// Two proxies' pickers learn each other's affinity keys and sends through
// the aggregator and the clients over loopback gRPC, the path the 4-proxy
// strategy takes: a prompt sent once through proxy A is among B's fleet
// keys, and B's cost model believes the endpoint A sent it to holds all of
// it (beyond the leading blocks the fleet keys' plan covers).
func TestFleetExchangeTravels(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	newPicker := func(*config.Backend) picker.Picker {
		s, err := picker.FromProfile(nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pools := []*proxyPools{{}, {}}
	scheds := make([]*picker.Scheduler, 2)
	for i, p := range pools {
		scheds[i] = p.capture(newPicker)(&config.Backend{Name: poolName}).(*picker.Scheduler)
	}
	stop, err := startFleetKeys(pools, 1, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	reg := endpoints.NewRegistry(logger, endpoints.Options{Proxies: 2})
	defer reg.Close()
	var specs []endpoints.Spec
	for i := range 4 {
		specs = append(specs, endpoints.Spec{Address: fmt.Sprintf("10.0.0.%d:8000", i+1)})
	}
	var es []*endpoints.Endpoint
	for _, e := range reg.Sync(specs) {
		es = append(es, e)
	}
	for _, s := range scheds {
		s.SetEndpoints(es) // as the proxy's pipeline does with its config
	}
	body := `{"model":"m","messages":[{"role":"system","content":"` + strings.Repeat("shared system prompt ", 400) + `"}]}`
	req := &picker.Request{Model: "m", Body: []byte(body)}
	chosen, err := scheds[0].Pick(req, es)
	if err != nil {
		t.Fatal(err)
	}
	sent := scheds[0].Fleet().KeysUsedSince(0, nil)
	if len(sent) != 1 {
		t.Fatalf("proxy A used %d affinity keys, want 1", len(sent))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		f := scheds[1].Fleet().FleetKeysInUse()
		d, err := scheds[1].Explain(req, es)
		if err != nil {
			t.Fatal(err)
		}
		held := 0.0
		for _, c := range d.Candidates {
			if c.Endpoint == chosen.Address {
				held = c.CachedTokens
			}
		}
		if f != nil && slices.Contains(f.Once, sent[0].Key) && held >= d.PromptTokens {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy B's fleet keys %+v (want A's key %x); B believes %s holds %.0f of the prompt's %.0f tokens",
				f, sent[0].Key, chosen.Address, held, d.PromptTokens)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

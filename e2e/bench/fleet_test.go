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

// Two proxies' prefix scorers learn each other's affinity keys through the
// aggregator and the clients over loopback gRPC, the path the 4-proxy
// strategy takes: a prompt sent once through proxy A is among B's fleet
// keys (and not the reverse of anything B sent).
func TestFleetKeysTravel(t *testing.T) {
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
	stop, err := startFleetKeys(pools, logger)
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
	body := `{"model":"m","messages":[{"role":"system","content":"` + strings.Repeat("shared system prompt ", 200) + `"}]}`
	if _, err := scheds[0].Pick(&picker.Request{Model: "m", Body: []byte(body)}, es); err != nil {
		t.Fatal(err)
	}
	sent := scheds[0].Fleet().KeysUsedSince(0, nil)
	if len(sent) != 1 {
		t.Fatalf("proxy A used %d affinity keys, want 1", len(sent))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		f := scheds[1].Fleet().FleetKeysInUse()
		if f != nil && slices.Contains(f.Once, sent[0].Key) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy B's fleet keys %+v lack A's key %x", f, sent[0].Key)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package fleetv1

import (
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

// TestLoadCheck: a relayed scrape with any value outside its domain is
// refused with a message naming it, and a report carrying one is refused
// whole; a plausible scrape passes.
func TestLoadCheck(t *testing.T) {
	good := func() *EndpointLoad {
		return &EndpointLoad{Endpoint: 1, Waiting: 2, Running: 30, KvCacheUsage: 0.7, KvCapacityTokens: 1 << 20, MaxLora: 4,
			RunningAdapters: []string{"a"}, AgeMs: 20}
	}
	if err := good().Check(); err != nil {
		t.Fatalf("a plausible scrape refused: %v", err)
	}
	for _, tc := range []struct {
		name, want string
		mod        func(*EndpointLoad)
	}{
		{"negative waiting", "waiting", func(l *EndpointLoad) { l.Waiting = -1 }},
		{"NaN running", "running", func(l *EndpointLoad) { l.Running = math.NaN() }},
		{"infinite running", "running", func(l *EndpointLoad) { l.Running = math.Inf(1) }},
		{"too many waiting", "waiting", func(l *EndpointLoad) { l.Waiting = MaxLoadRequests + 1 }},
		{"KV above 1", "kv_cache_usage", func(l *EndpointLoad) { l.KvCacheUsage = 1.5 }},
		{"KV capacity NaN", "kv_capacity_tokens", func(l *EndpointLoad) { l.KvCapacityTokens = math.NaN() }},
		{"max_lora", "max_lora", func(l *EndpointLoad) { l.MaxLora = MaxLoadAdapters + 1 }},
		{"empty adapter", "adapter name", func(l *EndpointLoad) { l.WaitingAdapters = []string{""} }},
		{"long adapter", "adapter name", func(l *EndpointLoad) { l.RunningAdapters = []string{strings.Repeat("x", MaxAdapterNameBytes+1)} }},
		{"too many adapters", "adapters", func(l *EndpointLoad) { l.RunningAdapters = make([]string, MaxLoadAdapters+1) }},
		{"too old", "old", func(l *EndpointLoad) { l.AgeMs = uint32(MaxLoadAge.Milliseconds() + 1) }},
	} {
		l := good()
		tc.mod(l)
		err := l.Check()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Check() = %v, want an error naming %q", tc.name, err, tc.want)
		}
		if CheckReport(&KeyReport{Loads: []*EndpointLoad{good(), l}}, MaxKeysPerPool) == nil {
			t.Errorf("%s: a report carrying it was accepted", tc.name)
		}
		if CheckPush(&FleetKeys{Loads: []*EndpointLoad{l}}) == nil {
			t.Errorf("%s: a push carrying it passed", tc.name)
		}
	}
	many := make([]*EndpointLoad, MaxLoadsPerReport+1)
	for i := range many {
		many[i] = good()
	}
	if CheckReport(&KeyReport{Loads: many}, MaxKeysPerPool) == nil {
		t.Error("a report of more scrapes than the limit was accepted")
	}
}

// FuzzEndpointLoads decodes arbitrary bytes as a report's scrapes: what
// CheckReport accepts has every value in its domain.
func FuzzEndpointLoads(f *testing.F) {
	for _, r := range []*KeyReport{
		{Loads: []*EndpointLoad{{Endpoint: 1, Waiting: 2, Running: 3, KvCacheUsage: 0.5, AgeMs: 10, RunningAdapters: []string{"a"}}}},
		{Loads: []*EndpointLoad{{Waiting: -1}}},
		{},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r KeyReport
		if proto.Unmarshal(data, &r) != nil || CheckReport(&r, MaxKeysPerPool) != nil {
			return
		}
		for _, l := range r.GetLoads() {
			for _, v := range []float64{l.GetWaiting(), l.GetRunning(), l.GetKvCacheUsage(), l.GetKvCapacityTokens()} {
				if !(v >= 0) || math.IsInf(v, 0) {
					t.Fatalf("accepted a scrape with %v: %v", v, l)
				}
			}
			if l.GetKvCacheUsage() > 1 || l.GetWaiting() > MaxLoadRequests || l.GetRunning() > MaxLoadRequests {
				t.Fatalf("accepted %v", l)
			}
		}
	})
}

package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/e2e/modelsim"
)

// TestPreciseSteersPick: a prompt cached on one replica behind the
// picker's back (sent to it directly) is picked there once the replica's
// KV events reached the picker through the control plane's index.
func TestPreciseSteersPick(t *testing.T) {
	env, eps := testFleet(t, 3, 0.05)
	p := &precise{}
	stop, err := p.start(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	sched := p.newPicker(env).(*picker.Scheduler)
	for i := range 3 {
		body := `{"model":"` + modelsim.DefaultModel + `","messages":[{"role":"system","content":"` +
			strings.Repeat("shared context number "+string(rune('a'+i))+" ", 40) + `"},{"role":"user","content":"q"}],"max_tokens":1}`
		r := env.Fleet.Replica(i)
		send(t, context.Background(), r.URL(), body)
		// Wait until the index holds the prompt on r, then pick once.
		deadline := time.Now().Add(10 * time.Second)
		for {
			held, n, err := p.client.Match(poolName, "", []byte(body))
			if err == nil && n > 0 && held[r.Addr()] == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the index never showed %s holding the prompt: %v %d %v", r.Addr(), held, n, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		req := &picker.Request{Model: modelsim.DefaultModel, TargetModel: modelsim.DefaultModel, Body: []byte(body)}
		if got, err := sched.Pick(req, eps); err != nil || got.Address != r.Addr() {
			t.Fatalf("prompt cached on %s picked %v (%v)", r.Addr(), got, err)
		}
	}
}

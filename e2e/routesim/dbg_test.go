package routesim

import (
	"fmt"
	"github.com/infergate/infergate/dataplane/picker"
	"os"
	"sort"
	"testing"
)

func TestDbg(t *testing.T) {
	var sc Scenario
	for _, x := range Scenarios(0) {
		if x.Workload.Name == os.Getenv("W") {
			sc = x
		}
	}
	dec := map[int]*picker.Decision{}
	base := Ours()
	if os.Getenv("S") == "oracle" {
		base = Oracle()
	}
	st := Strategy{Name: "x", Truth: base.Truth, New: func(e *Env, p int) picker.Picker {
		s := base.New(e, p).(*picker.Scheduler)
		s.SetDecisionHook(func(d *picker.Decision) { dec[e.Job()] = d })
		return s
	}}
	out, err := Run(sc.Config, sc.Workload, st)
	if err != nil {
		t.Fatal(err)
	}
	idx := make([]int, len(out))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return out[idx[a]].TTFT > out[idx[b]].TTFT })
	fmt.Println("decisions", len(dec), "jobs", len(out))
	per := map[int]int{}
	for _, o := range out {
		per[o.Replica]++
	}
	fmt.Println(per)
	for _, i := range idx[:6] {
		o := out[i]
		d := dec[i]
		if d == nil {
			fmt.Println("no decision", i, o)
			continue
		}
		fmt.Printf("job %d sent %.1f ttft %.2f prompt %d cached %d rep %d chosen %s\n", i, o.Sent.Seconds(), o.TTFT.Seconds(), o.Prompt, o.Cached, o.Replica, d.Chosen)
		for _, c := range d.Candidates {
			fmt.Printf("   %s W%.0f R%.0f kv%.2f cached%.0f wait%.2f pre%.2f dec%.2f harm%.2f = %.2f\n", c.Endpoint, c.Waiting, c.Running, c.KVUsage, c.CachedTokens, c.Wait, c.Prefill, c.Decode, c.Harm, c.Cost)
		}
	}
}

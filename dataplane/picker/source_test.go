package picker_test

import (
	"strings"
	"testing"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
)

// holder is a PrefixSource that says endpoint at holds the whole prompt
// and the others none of it, or cannot judge (ok false).
type holder struct {
	at string
	ok bool
}

func (h holder) CachedTokens(req *picker.Request, cands []picker.Candidate, out []int) bool {
	for i, c := range cands {
		out[i] = 0
		if c.Endpoint.Address == h.at {
			out[i] = len(req.Body) / 4
		}
	}
	return h.ok
}

func TestPrefixSourceSteersPicks(t *testing.T) {
	es := eps(4)
	for _, e := range es {
		fresh(e, endpoints.Metrics{})
	}
	body := []byte(`{"messages":[{"role":"user","content":"` + strings.Repeat("shared context ", 200) + `"}]}`)
	s, err := picker.FromProfile(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Without a source the rendezvous home wins; the source names another.
	first, err := s.Pick(&picker.Request{Body: body}, es)
	if err != nil {
		t.Fatal(err)
	}
	other := es[0].Address
	if other == first.Address {
		other = es[1].Address
	}
	s2, _ := picker.FromProfile(nil)
	s2.SetPrefixSource(holder{at: other, ok: true})
	for range 5 {
		got, err := s2.Pick(&picker.Request{Body: body}, es)
		if err != nil {
			t.Fatal(err)
		}
		if got.Address != other {
			t.Fatalf("picked %s, want the source's holder %s", got.Address, other)
		}
	}
	// A source that cannot judge leaves the own estimate in charge: the
	// prompt follows where this proxy sent it before.
	s3, _ := picker.FromProfile(nil)
	s3.SetPrefixSource(holder{at: other, ok: false})
	prev, _ := s3.Pick(&picker.Request{Body: body}, es)
	if got, _ := s3.Pick(&picker.Request{Body: body}, es); got.Address != prev.Address {
		t.Fatalf("source without an answer steered the pick to %s (want %s, where the prompt went)", got.Address, prev.Address)
	}
}

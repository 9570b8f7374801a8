package fleetkeys

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/infergate/infergate/dataplane/picker"
)

// maxMatchBody bounds a match request's body (a prompt as a client sends
// it).
const maxMatchBody = 8 << 20

// RegisterAdmin adds the exchange's admin endpoints to mux (c may be nil:
// the exchange is off):
//
//	GET  /fleet-keys               per pool: the fleet keys its plan uses,
//	                               the sends this proxy reported and
//	                               merged from the other proxies, and the
//	                               scrapes it reported and adopted
//	POST /fleet-keys/match?pool=P  body: an OpenAI request; the picker's
//	                               explanation of it now (no side effect):
//	                               per endpoint, the prompt tokens it is
//	                               believed to hold — from this proxy's
//	                               sends and the fleet's — and the costs
func RegisterAdmin(mux *http.ServeMux, scheds *picker.Schedulers, c *Client) {
	mux.HandleFunc("GET /fleet-keys", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, State(scheds, c))
	})
	mux.HandleFunc("POST /fleet-keys/match", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxMatchBody))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		d, err := Match(scheds, r.URL.Query().Get("pool"), body)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, d)
	})
}

// PoolState is one pool's side of the exchange as the admin API shows
// it: fleet keys as decimal strings (as the control plane's snapshot dump
// shows them), and sends and scrapes counted since the proxy started.
type PoolState struct {
	Hot   []string  `json:"hot"`
	Once  []string  `json:"once"`
	Sends PoolSends `json:"sends"`
	Loads PoolLoads `json:"loads"`
}

// State returns each pool's fleet keys in use and send counts, for every
// pool whose picker takes part in the exchange.
func State(p Pools, c *Client) map[string]PoolState {
	out := map[string]PoolState{}
	str := func(ks []uint64) []string {
		s := make([]string, len(ks))
		for i, k := range ks {
			s[i] = strconv.FormatUint(k, 10)
		}
		return s
	}
	var counts map[string]poolCounts
	if c != nil {
		counts = c.counts.snapshot()
	}
	for name, s := range p.Fleets() {
		st := PoolState{Hot: []string{}, Once: []string{}, Sends: counts[name].sends, Loads: counts[name].loads}
		if f := s.FleetKeysInUse(); f != nil {
			st.Hot, st.Once = str(f.Hot), str(f.Once)
		}
		out[name] = st
	}
	return out
}

// Match explains how pool's picker would pick for the OpenAI request in
// body now, without recording anything.
func Match(scheds *picker.Schedulers, pool string, body []byte) (*picker.Decision, error) {
	s := scheds.Get(pool)
	if s == nil {
		return nil, fmt.Errorf("no pool %q (name the pool's Backend resource in ?pool=)", pool)
	}
	var req struct {
		Model string `json:"model"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	d, err := s.Explain(&picker.Request{Model: req.Model, Body: body}, s.Endpoints())
	if errors.Is(err, picker.ErrNoExplanation) {
		return nil, fmt.Errorf("pool %s: %w", pool, err)
	}
	return d, err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

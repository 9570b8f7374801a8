package server

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/openai"
)

// modelsTTL is how long a pool's /v1/models answer is reused.
const modelsTTL = 30 * time.Second

// modelsFetchTimeout bounds asking a pool what it serves.
const modelsFetchTimeout = 2 * time.Second

// modelCache remembers what each pool's model servers report at
// /v1/models, keyed by backend name.
type modelCache struct {
	mu      sync.Mutex
	entries map[string]modelEntry
}

type modelEntry struct {
	names []string
	at    time.Time
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type modelList struct {
	Object string        `json:"object"`
	Data   []modelObject `json:"data"`
}

// serveModels answers GET /v1/models with every model a client can reach
// through the listener the request's host selects: the model names of
// the model rules of its pools, plus what those pools' servers report
// (asked at their first endpoint, cached for modelsTTL).
func (m *Manager) serveModels(w http.ResponseWriter, r *http.Request, st *state, ps *portState) {
	ln := ps.router.Listener(r.Host)
	if ln == nil {
		openai.WriteError(w, http.StatusNotFound, openai.TypeInvalidRequest, "route_not_found", "no listener for host "+r.Host)
		return
	}
	seen := map[string]bool{}
	var pools []*backendState
	for _, rt := range ln.Routes {
		for _, ref := range rt.Backends {
			b := ref.Backend
			if b == nil || !b.IsPool() || seen["\x00"+b.Name] {
				continue
			}
			seen["\x00"+b.Name] = true
			for name := range b.Models {
				seen[name] = true
			}
			if bs := st.backends[b.Name]; bs != nil {
				pools = append(pools, bs)
			}
		}
	}
	for _, names := range m.poolModels(r.Context(), pools) {
		for _, n := range names {
			seen[n] = true
		}
	}
	out := modelList{Object: "list", Data: []modelObject{}}
	for n := range seen {
		if n != "" && n[0] != 0 {
			out.Data = append(out.Data, modelObject{ID: n, Object: "model", OwnedBy: "infergate"})
		}
	}
	slices.SortFunc(out.Data, func(a, b modelObject) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	b, _ := json.Marshal(out)
	w.Header()["Content-Type"] = []string{"application/json"}
	w.Header()["Content-Length"] = []string{strconv.Itoa(len(b))}
	_, _ = w.Write(b)
}

// poolModels returns what each pool's servers report, from the cache or,
// when stale, by asking them (concurrently). A pool that cannot answer
// contributes its last known list, or nothing.
func (m *Manager) poolModels(ctx context.Context, pools []*backendState) [][]string {
	out := make([][]string, len(pools))
	now := time.Now()
	var wg sync.WaitGroup
	m.models.mu.Lock()
	if m.models.entries == nil {
		m.models.entries = map[string]modelEntry{}
	}
	for i, bs := range pools {
		e, ok := m.models.entries[bs.cfg.Name]
		out[i] = e.names
		if (ok && now.Sub(e.at) < modelsTTL) || len(bs.cfg.Endpoints) == 0 {
			continue
		}
		wg.Go(func() {
			names, err := m.fetchModels(ctx, bs.cfg)
			if err != nil {
				m.logger.Debug("listing pool models failed", "pool", bs.cfg.Source, "err", err)
				return
			}
			out[i] = names
			m.models.mu.Lock()
			m.models.entries[bs.cfg.Name] = modelEntry{names: names, at: time.Now()}
			m.models.mu.Unlock()
		})
	}
	m.models.mu.Unlock()
	wg.Wait()
	return out
}

func (m *Manager) fetchModels(ctx context.Context, b *config.Backend) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, modelsFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.Endpoints[0].Address+"/v1/models", nil)
	if err != nil {
		return nil, err
	}
	resp, err := m.up.Transport(b.H2C).RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &httpStatusError{resp.StatusCode}
	}
	var list modelList
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(&list); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(list.Data))
	for _, d := range list.Data {
		names = append(names, d.ID)
	}
	return names, nil
}

type httpStatusError struct{ code int }

func (e *httpStatusError) Error() string { return "status " + strconv.Itoa(e.code) }

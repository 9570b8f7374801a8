package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/router"
	"github.com/infergate/infergate/dataplane/upstream"
)

// Defaults of Options.ModelListTTL and Options.ModelListTimeout.
const (
	defaultModelListTTL     = 30 * time.Second
	defaultModelListTimeout = 2 * time.Second
)

// modelListRetry is how soon a backend whose listing failed is asked
// again (at most every TTL): often enough to notice it is back, rarely
// enough that a down backend costs one warning per interval, not one per
// client listing.
const modelListRetry = 5 * time.Second

// maxModelListBytes bounds a backend's /v1/models answer.
const maxModelListBytes = 1 << 20

// modelObject is one entry of a /v1/models list with every field its
// server reported, kept as it came: clients read more than the OpenAI
// basics (vLLM adds max_model_len, root, parent and permission), and the
// listing must not drop what they rely on.
type modelObject struct {
	ID     string
	fields map[string]json.RawMessage
}

// MarshalJSON writes the fields as reported ("object" is always "model").
func (m modelObject) MarshalJSON() ([]byte, error) { return json.Marshal(m.fields) }

// ruleModel is the entry of a model only a model rule names.
func ruleModel(id string) modelObject {
	return modelObject{ID: id, fields: map[string]json.RawMessage{
		"id": quoteJSON(id), "object": json.RawMessage(`"model"`), "created": json.RawMessage("0"), "owned_by": json.RawMessage(`"infergate"`)}}
}

// fromRule reports whether m is ruleModel's placeholder.
func (m modelObject) fromRule() bool {
	return string(m.fields["owned_by"]) == `"infergate"` && string(m.fields["created"]) == "0"
}

// merge adds to m the fields of o (the same model from another server)
// that m lacks: the first server's values stand, nothing is dropped.
func (m modelObject) merge(o modelObject) {
	for k, v := range o.fields {
		if _, ok := m.fields[k]; !ok {
			m.fields[k] = v
		}
	}
}

func quoteJSON(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

type modelList struct {
	Object string        `json:"object"`
	Data   []modelObject `json:"data"`
}

// reportedList is a server's /v1/models answer, its entries as they came.
type reportedList struct {
	Data []map[string]json.RawMessage `json:"data"`
}

// modelCache remembers what each backend (InferencePool or Service)
// reports at /v1/models, keyed by backend name. A listing never waits for
// a backend it has an answer for: a stale answer is served while one
// background refresh (singleflight per backend) replaces it. Only a backend
// never asked before is waited for, at most the fetch timeout.
type modelCache struct {
	logger       *slog.Logger
	up           *upstream.Upstream
	ttl, timeout time.Duration
	group        singleflight.Group

	// ctx ends fetches when the Pipeline closes; wg waits for them.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	entries map[string]*modelEntry
}

type modelEntry struct {
	models []modelObject // nil when the last fetch failed
	at     time.Time     // when the last fetch ended
	failed bool
}

func newModelCache(logger *slog.Logger, up *upstream.Upstream, ttl, timeout time.Duration) *modelCache {
	if ttl <= 0 {
		ttl = defaultModelListTTL
	}
	if timeout <= 0 {
		timeout = defaultModelListTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &modelCache{logger: logger, up: up, ttl: ttl, timeout: timeout, ctx: ctx, cancel: cancel,
		entries: map[string]*modelEntry{}}
}

// close cancels fetches in flight and waits for them.
func (c *modelCache) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}

// retain forgets the backends cfg no longer has.
func (c *modelCache) retain(cfg *config.Config) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name := range c.entries {
		if cfg.Backends[name] == nil {
			delete(c.entries, name)
		}
	}
}

// models returns what b's servers report: from the cache (refreshing it in
// the background when old), or, the first time, by asking and waiting at
// most the fetch timeout or until ctx ends. A backend that cannot answer
// contributes nothing.
func (c *modelCache) models(ctx context.Context, b *config.Backend) []modelObject {
	if len(b.Endpoints) == 0 {
		return nil
	}
	c.mu.Lock()
	e := c.entries[b.Name]
	c.mu.Unlock()
	if e != nil {
		if c.stale(e) {
			c.refresh(b)
		}
		return e.models
	}
	select {
	case r := <-c.refresh(b):
		models, _ := r.Val.([]modelObject)
		return models
	case <-ctx.Done():
		return nil
	}
}

// stale reports whether e is due for a refresh.
func (c *modelCache) stale(e *modelEntry) bool {
	age := time.Since(e.at)
	return age >= c.ttl || (e.failed && age >= min(modelListRetry, c.ttl))
}

// refresh asks b for its models unless a fetch for b is already running
// (then it joins that one), and stores the answer. Once the cache is
// closed it asks nothing.
func (c *modelCache) refresh(b *config.Backend) <-chan singleflight.Result {
	return c.group.DoChan(b.Name, func() (any, error) {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, nil
		}
		// A caller that looked up the entry before the previous fetch
		// stored it can start this flight after that fetch's flight ended;
		// the fresh answer is its answer, not a second fetch.
		if e := c.entries[b.Name]; e != nil && !c.stale(e) {
			c.mu.Unlock()
			return e.models, nil
		}
		// Added under mu while not closed, so never concurrently with
		// close's Wait.
		c.wg.Add(1)
		c.mu.Unlock()
		defer c.wg.Done()
		models, err := c.fetch(b)
		e := &modelEntry{models: models, at: time.Now(), failed: err != nil}
		if err != nil {
			c.logger.Warn("listing backend models failed; left out of /v1/models", "backend", b.Source, "err", err)
		}
		c.mu.Lock()
		if !c.closed {
			c.entries[b.Name] = e
		}
		c.mu.Unlock()
		return models, nil
	})
}

// fetch asks b's endpoints in turn for GET /v1/models until one answers,
// within the fetch timeout. A 404 is an answer: the backend serves no
// OpenAI models (a plain Service).
func (c *modelCache) fetch(b *config.Backend) ([]modelObject, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.timeout)
	defer cancel()
	var err error
	for _, ep := range b.Endpoints {
		var models []modelObject
		if models, err = c.fetchFrom(ctx, b.H2C, ep.Address); err == nil || ctx.Err() != nil {
			return models, err
		}
	}
	return nil, err
}

func (c *modelCache) fetchFrom(ctx context.Context, h2c bool, addr string) ([]modelObject, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/models", nil)
	if err != nil {
		return nil, err
	}
	req.Header["Accept"] = []string{"application/json"}
	resp, err := c.up.Transport(h2c).RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, maxModelListBytes)
	defer func() { _, _ = io.Copy(io.Discard, body) }() // keep the connection reusable
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return []modelObject{}, nil
	default:
		return nil, &httpStatusError{resp.StatusCode}
	}
	var list reportedList
	if err := json.NewDecoder(body).Decode(&list); err != nil {
		return nil, err
	}
	out := make([]modelObject, 0, len(list.Data))
	for _, fields := range list.Data {
		var id string
		if err := json.Unmarshal(fields["id"], &id); err != nil || id == "" {
			continue // not a model entry
		}
		fields["object"] = json.RawMessage(`"model"`)
		// The OpenAI model object's other fields, for clients that
		// require them, when the server left them out.
		if _, ok := fields["created"]; !ok {
			fields["created"] = json.RawMessage("0")
		}
		if _, ok := fields["owned_by"]; !ok {
			fields["owned_by"] = json.RawMessage(`""`)
		}
		out = append(out, modelObject{ID: id, fields: fields})
	}
	return out, nil
}

type httpStatusError struct{ code int }

func (e *httpStatusError) Error() string { return "status " + strconv.Itoa(e.code) }

// serveModels answers GET /v1/models with every model a client can reach
// through the listener the request's host selects: the model names of its
// pools' model rules plus what every backend of its routes for that host
// (route hostnames apply) — pools and
// Services — reports (see modelCache), de-duplicated, in the OpenAI list
// format. A backend that is down or slow is left out; the listing itself
// never fails for it.
func (m *Pipeline) serveModels(w http.ResponseWriter, r *http.Request, st *state, ps *portState) {
	ln := ps.router.Listener(r.Host)
	if ln == nil {
		notFound(w, r, "no listener for host "+r.Host)
		return
	}
	host := router.Host(r.Host)
	seen := map[string]bool{}
	var backends []*config.Backend
	byID := map[string]modelObject{}
	for _, rt := range ln.Routes {
		if !router.ServesHost(rt, host) {
			continue
		}
		for _, ref := range rt.Backends {
			b := ref.Backend
			if b == nil || seen[b.Name] || st.backends[b.Name] == nil {
				continue
			}
			seen[b.Name] = true
			backends = append(backends, b)
			for name := range b.Models {
				if name != "" {
					byID[name] = ruleModel(name)
				}
			}
		}
	}
	reported := make([][]modelObject, len(backends))
	var wg sync.WaitGroup
	for i, b := range backends {
		wg.Go(func() { reported[i] = m.models.models(r.Context(), b) })
	}
	wg.Wait()
	for _, models := range reported {
		for _, mo := range models {
			// A server's own entry wins over the name a model rule gave;
			// the same model from several backends keeps every field any
			// of them reported (the first backend's value where two
			// differ). Entries are copied: the cache shares its own.
			prev, ok := byID[mo.ID]
			if !ok || prev.fromRule() {
				byID[mo.ID] = modelObject{ID: mo.ID, fields: maps.Clone(mo.fields)}
				continue
			}
			prev.merge(mo)
		}
	}
	out := modelList{Object: "list", Data: make([]modelObject, 0, len(byID))}
	for _, mo := range byID {
		out.Data = append(out.Data, mo)
	}
	slices.SortFunc(out.Data, func(a, b modelObject) int { return cmp.Compare(a.ID, b.ID) })
	body, _ := json.Marshal(out)
	w.Header()["Content-Type"] = []string{"application/json"}
	w.Header()["Content-Length"] = []string{strconv.Itoa(len(body))}
	_, _ = w.Write(body)
}

package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/internal/testwait"
	"github.com/infergate/infergate/dataplane/pipeline"
	"github.com/infergate/infergate/dataplane/server"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

type listedModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// listModels gets /v1/models on port and returns the models and their
// ids in order.
func listModels(t *testing.T, port uint32) ([]listedModel, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url(port, "/v1/models"), nil)
	return listModelsReq(t, req)
}

func listModelsReq(t *testing.T, req *http.Request) ([]listedModel, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Object string        `json:"object"`
		Data   []listedModel `json:"data"`
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || list.Object != "list" {
		t.Fatalf("not an OpenAI list (object %q): %v", list.Object, err)
	}
	var ids []string
	for _, d := range list.Data {
		if d.Object != "model" {
			t.Errorf("model %q has object %q", d.ID, d.Object)
		}
		ids = append(ids, d.ID)
	}
	return list.Data, strings.Join(ids, ",")
}

// listingServer answers GET /v1/models with handler and counts the
// listings it was asked for.
func listingServer(t *testing.T, hits *atomic.Int32, handler func(w http.ResponseWriter, r *http.Request)) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/models" {
			hits.Add(1)
		}
		handler(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func TestListModelsAcrossBackends(t *testing.T) {
	var goodHits, slowHits, failHits, plainHits atomic.Int32
	good := listingServer(t, &goodHits, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"object":"list","data":[{"id":"svc-model","object":"model","created":1700000000,"owned_by":"acme"},{"id":"base-model","object":"model"}]}`)
	})
	slow := listingServer(t, &slowHits, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // answers only after the proxy gave up
	})
	failing := listingServer(t, &failHits, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	plain := listingServer(t, &plainHits, http.NotFound) // a Service without an OpenAI API
	other := listingServer(t, new(atomic.Int32), func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"object":"list","data":[{"id":"other-listener-model"}]}`)
	})

	pool := backendSpec{name: "pool", pool: true, addrs: []string{addr(modelServer(t))}}
	goodSvc := backendSpec{name: "good", addrs: []string{fmt.Sprintf("127.0.0.1:%d", freePort(t)), addr(good)}} // first endpoint down
	slowSvc := backendSpec{name: "slow", addrs: []string{addr(slow)}}
	failSvc := backendSpec{name: "failing", addrs: []string{addr(failing)}}
	plainSvc := backendSpec{name: "plain", addrs: []string{addr(plain)}}
	otherSvc := backendSpec{name: "other", addrs: []string{addr(other)}}
	port, otherPort := freePort(t), freePort(t)
	otherRoute := route("other", "/", ref(otherSvc, 1))
	// Only for requests to its hostname.
	hostOnly := backendSpec{name: "host-only", addrs: []string{addr(listingServer(t, new(atomic.Int32), func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"object":"list","data":[{"id":"host-only-model"}]}`)
	}))}}
	hostRoute := route("host", "/host", ref(hostOnly, 1))
	hostRoute.Hostnames = []string{"*.models.test"}
	// A TTL no loaded machine outlives, so "asked once within the TTL" is
	// exact; TestListModelsRefreshAfterTTL covers expiry.
	m := newManagerWith(t, server.Options{Pipeline: pipeline.Options{ModelListTTL: time.Hour, ModelListTimeout: 100 * time.Millisecond}})
	rs := snapshot([]uint32{port, otherPort}, []*snapshotv1.Route{
		route("pool", "/v1", ref(pool, 1)),
		route("split", "/split", ref(goodSvc, 1), ref(slowSvc, 1)),
		route("rest", "/", ref(failSvc, 1), ref(plainSvc, 1), ref(goodSvc, 1)),
		otherRoute,
		hostRoute,
	}, []backendSpec{pool, goodSvc, slowSvc, failSvc, plainSvc, otherSvc, hostOnly},
		&snapshotv1.ModelRule{Name: gw + "/InferenceModel/ns/fr", Pool: pool.resourceName(), ModelName: "food-review",
			Targets: []*snapshotv1.TargetModel{{Name: "food-review-lora", Weight: 1}}})
	otherRoute.Listeners = []string{fmt.Sprintf("%s/l%d", gw, otherPort)}
	for _, r := range rs {
		if rt, ok := r.(*snapshotv1.Route); ok && rt != otherRoute {
			rt.Listeners = []string{fmt.Sprintf("%s/l%d", gw, port)}
		}
	}
	apply(t, m, rs)

	const want = "base-model,food-review,food-review-lora,svc-model"
	// Concurrent first listings share one fetch per backend, and the slow
	// and failing backends are left out instead of failing the listing.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, got := listModels(t, port); got != want {
				t.Errorf("models %q, want %q", got, want)
			}
		})
	}
	wg.Wait()
	data, _ := listModels(t, port)
	for _, d := range data {
		switch {
		case d.ID == "svc-model" && (d.OwnedBy != "acme" || d.Created != 1700000000):
			t.Errorf("the server's own entry must be kept: %+v", d)
		case d.ID == "food-review" && d.OwnedBy != "infergate":
			t.Errorf("model rule entry %+v", d)
		}
	}
	for name, hits := range map[string]*atomic.Int32{"good": &goodHits, "slow": &slowHits, "failing": &failHits, "plain": &plainHits} {
		if n := hits.Load(); n != 1 {
			t.Errorf("%s backend asked %d times within the TTL, want once", name, n)
		}
	}
	if _, got := listModels(t, otherPort); got != "other-listener-model" {
		t.Errorf("other listener lists %q", got)
	}
	req, _ := http.NewRequest("GET", url(port, "/v1/models"), nil)
	req.Host = "a.models.test"
	if _, got := listModelsReq(t, req); got != "base-model,food-review,food-review-lora,host-only-model,svc-model" {
		t.Errorf("for a.models.test: %q", got)
	}
}

// TestListModelsRefreshAfterTTL: after the TTL the old answer is served
// while a refresh runs; the new one shows up afterwards.
func TestListModelsRefreshAfterTTL(t *testing.T) {
	var list atomic.Value
	list.Store(`[{"id":"svc-model"}]`)
	good := listingServer(t, new(atomic.Int32), func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"object":"list","data":%s}`, list.Load())
	})
	svc := backendSpec{name: "good", addrs: []string{addr(good)}}
	port := freePort(t)
	m := newManagerWith(t, server.Options{Pipeline: pipeline.Options{ModelListTTL: 100 * time.Millisecond, ModelListTimeout: time.Second}})
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{route("rest", "/", ref(svc, 1))}, []backendSpec{svc}))
	if _, got := listModels(t, port); got != "svc-model" {
		t.Fatalf("models %q, want svc-model", got)
	}
	list.Store(`[{"id":"svc-model-v2"}]`)
	testwait.Until(t, "refreshed listing", func() bool {
		_, got := listModels(t, port)
		return got == "svc-model-v2"
	})
}

// TestListModelsKeepsServerFields: every field a model server reports
// reaches the client (vLLM's max_model_len, root, parent, permission),
// and the same model from two backends keeps the fields of both, the
// first backend's value where they differ.
func TestListModelsKeepsServerFields(t *testing.T) {
	a := listingServer(t, new(atomic.Int32), func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"object":"list","data":[{"id":"m","object":"model","created":1,"owned_by":"vllm","root":"/models/m","parent":null,`+
			`"max_model_len":8192,"permission":[{"id":"modelperm-1","allow_sampling":true}]}]}`)
	})
	b := listingServer(t, new(atomic.Int32), func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"object":"list","data":[{"id":"m","created":2,"max_model_len":4096,"x_extra":"kept"},{"id":7},{"name":"no id"}]}`)
	})
	sa, sb := backendSpec{name: "a", addrs: []string{addr(a)}}, backendSpec{name: "b", addrs: []string{addr(b)}}
	port := freePort(t)
	m := newManagerWith(t, server.Options{Pipeline: pipeline.Options{ModelListTTL: time.Hour, ModelListTimeout: time.Second}})
	apply(t, m, snapshot([]uint32{port}, []*snapshotv1.Route{route("rest", "/", ref(sa, 1), ref(sb, 1))}, []backendSpec{sa, sb}))
	resp, err := http.Get(url(port, "/v1/models"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Data []map[string]any `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if len(list.Data) != 1 {
		t.Fatalf("entries %v, want the one model with a string id", list.Data)
	}
	got := list.Data[0]
	want := map[string]any{"id": "m", "object": "model", "created": 1.0, "owned_by": "vllm", "root": "/models/m", "parent": nil,
		"max_model_len": 8192.0, "x_extra": "kept"}
	for k, v := range want {
		if gv, ok := got[k]; !ok || gv != v {
			t.Errorf("%s = %v (present %v), want %v", k, gv, ok, v)
		}
	}
	if perm, ok := got["permission"].([]any); !ok || len(perm) != 1 {
		t.Errorf("permission %v", got["permission"])
	}
}

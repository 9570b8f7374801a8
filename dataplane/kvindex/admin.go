package kvindex

import (
	"encoding/json"
	"io"
	"net/http"
)

// maxMatchBody bounds a match request's body (a prompt as a client sends it).
const maxMatchBody = 8 << 20

// RegisterAdmin adds the index's admin endpoints to mux:
//
//	GET  /kv-index                          pools, servers and their blocks
//	POST /kv-index/match?pool=P[&model=M]   body: an OpenAI request; how many
//	                                        of its prompt's blocks each server holds
func RegisterAdmin(mux *http.ServeMux, c *Client) {
	mux.HandleFunc("GET /kv-index", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, c.State())
	})
	mux.HandleFunc("POST /kv-index/match", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxMatchBody))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		pool := r.URL.Query().Get("pool")
		blocks, n, err := c.Match(pool, r.URL.Query().Get("model"), body)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"pool": pool, "promptBlocks": n, "servers": blocks})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

package pipeline

import (
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/router"
)

// redirect answers r with the RequestRedirect filter red; m is the match
// that selected the rule (for prefix replacement).
func redirect(w http.ResponseWriter, r *http.Request, red *config.Redirect, m *config.Match) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host, port := splitHost(r.Host)
	if red.Scheme != "" {
		scheme = red.Scheme
		// A scheme change drops the request's port: the new scheme's
		// well-known port applies unless one is configured.
		port = ""
	}
	if red.Hostname != "" {
		host = red.Hostname
	}
	if red.Port != 0 {
		port = strconv.FormatUint(uint64(red.Port), 10)
	}
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	path := r.URL.Path
	if red.Path != nil {
		path = red.Path.Apply(path, m)
	}
	var b strings.Builder
	b.WriteString(scheme)
	b.WriteString("://")
	if port != "" {
		b.WriteString(net.JoinHostPort(host, port))
	} else if strings.IndexByte(host, ':') >= 0 {
		b.WriteString("[" + host + "]")
	} else {
		b.WriteString(host)
	}
	b.WriteString(path)
	if r.URL.RawQuery != "" {
		b.WriteByte('?')
		b.WriteString(r.URL.RawQuery)
	}
	w.Header()["Location"] = []string{b.String()}
	w.Header()["Content-Length"] = []string{"0"}
	w.WriteHeader(red.Status)
}

// splitHost splits a Host header into host and port ("" when absent).
func splitHost(h string) (string, string) {
	if host, port, err := net.SplitHostPort(h); err == nil {
		return router.Host(host), port
	}
	return router.Host(h), ""
}

// rewrite applies a URLRewrite filter to the request sent upstream.
func rewrite(r *http.Request, rw *config.Rewrite, m *config.Match) {
	if rw.Hostname != "" {
		r.Host = rw.Hostname
	}
	if rw.Path != nil {
		r.URL.Path = rw.Path.Apply(r.URL.Path, m)
		r.URL.RawPath = ""
	}
}

// applyRequestFilters runs the filters that change the upstream request.
func applyRequestFilters(r *http.Request, f *config.Filters, m *config.Match) {
	if f.Rewrite != nil {
		rewrite(r, f.Rewrite, m)
	}
	if f.RequestHeaders != nil {
		f.RequestHeaders.Apply(r.Header)
	}
}

// mirrorWanted reports whether this request is one of a mirror's share.
func mirrorWanted(mi *config.Mirror) bool {
	return mi.Percent >= 100 || (mi.Percent > 0 && rand.Float64()*100 < mi.Percent)
}

package upstream

import (
	"crypto/tls"
	"net/http"
)

// ProxyTLS returns a handler forwarding to addr over TLS with cfg (a
// BackendTLSPolicy's server name and verification), like Proxy does in
// plain text. key identifies cfg's settings: endpoints sharing them share
// one transport and its connections, across config versions too. TLS
// backends go through net/http's transport, HTTP/1.1 as plain backends
// (upgrades keep working); the lean client stays plain TCP only.
func (u *Upstream) ProxyTLS(addr string, cfg *tls.Config, key string, served []string) http.Handler {
	return u.reverseProxy(addr, u.TLSTransport(key, cfg), "https", served)
}

// TLSTransport returns the shared transport for TLS settings key (for
// requests the caller sends itself, such as mirrors).
func (u *Upstream) TLSTransport(key string, cfg *tls.Config) *http.Transport {
	u.mu.Lock()
	defer u.mu.Unlock()
	t := u.tls[key]
	if t == nil {
		t = u.base()
		t.TLSClientConfig = cfg.Clone()
		u.tls[key] = t
	}
	return t
}

// RetainTLS drops the TLS transports whose key is not in keep (closing
// their idle connections; requests still using one finish normally).
func (u *Upstream) RetainTLS(keep map[string]bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, t := range u.tls {
		if !keep[k] {
			t.CloseIdleConnections()
			delete(u.tls, k)
		}
	}
}

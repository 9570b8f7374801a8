package server_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"

	"github.com/infergate/infergate/dataplane/internal/testwait"
)

// TestBackendTLS sends requests through a running proxy to a TLS backend
// (certificate for backend.example.com) under different BackendTLS
// settings: the proxy sends the policy's hostname as SNI and verifies the
// certificate against the CA and the hostname, or the subjectAltNames when
// given; a failed verification is a 502, an unusable policy a 503.
func TestBackendTLS(t *testing.T) {
	certPEM, keyPEM, _ := selfSigned(t, "backend.example.com")
	otherCA, _, _ := selfSigned(t, "backend.example.com")
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	var mirrored atomic.Int32
	a := startTLSBackend(t, &tls.Config{Certificates: []tls.Certificate{pair}}, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/mirror" && r.TLS.ServerName == "backend.example.com" {
			mirrored.Add(1)
		}
		_, _ = io.WriteString(w, "sni="+r.TLS.ServerName+" host="+r.Host)
	})

	var backends []backendSpec
	var routes []*snapshotv1.Route
	add := func(name string, bt *snapshotv1.BackendTLS) {
		b := backendSpec{name: name, addrs: []string{a}, tls: bt}
		backends = append(backends, b)
		routes = append(routes, route(name, "/"+name, ref(b, 1)))
	}
	add("ok", &snapshotv1.BackendTLS{Hostname: "backend.example.com", CaPem: certPEM})
	add("hostmismatch", &snapshotv1.BackendTLS{Hostname: "other.example.com", CaPem: certPEM})
	add("wrongca", &snapshotv1.BackendTLS{Hostname: "backend.example.com", CaPem: otherCA})
	add("san", &snapshotv1.BackendTLS{Hostname: "sni.example.com", CaPem: certPEM,
		SubjectAltNames: []*snapshotv1.SubjectAltName{{Uri: "spiffe://x/y"}, {Hostname: "backend.example.com"}}})
	add("sanmismatch", &snapshotv1.BackendTLS{Hostname: "backend.example.com", CaPem: certPEM,
		SubjectAltNames: []*snapshotv1.SubjectAltName{{Hostname: "nope.example.com"}}})
	add("sanwrongca", &snapshotv1.BackendTLS{Hostname: "backend.example.com", CaPem: otherCA,
		SubjectAltNames: []*snapshotv1.SubjectAltName{{Hostname: "backend.example.com"}}})
	add("invalid", &snapshotv1.BackendTLS{Hostname: "backend.example.com", InvalidReason: "no valid CA certificate"})
	// Mirrors to a TLS backend speak TLS too.
	plain := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(plain.Close)
	plainB := backendSpec{name: "plain", addrs: []string{addr(plain)}}
	backends = append(backends, plainB)
	mirror := route("mirror", "/mirror", ref(plainB, 1))
	mirror.Filters = []*snapshotv1.Filter{{Kind: &snapshotv1.Filter_RequestMirror{RequestMirror: &snapshotv1.RequestMirror{Backend: ref(backends[0], 1), Percent: 100}}}}
	routes = append(routes, mirror)
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, routes, backends))

	expectPaths(t, port, "client.example", []pathCase{
		{"/ok", 200, "sni=backend.example.com host=client.example"},
		{"/hostmismatch", 502, ""},
		{"/wrongca", 502, ""},
		{"/san", 200, "sni=sni.example.com host=client.example"},
		{"/sanmismatch", 502, ""},
		{"/sanwrongca", 502, ""},
		{"/invalid", 503, "backend_tls_invalid"},
		{"/mirror", 200, ""},
	})
	testwait.Until(t, "the mirror to reach the TLS backend", func() bool { return mirrored.Load() == 1 })
}

package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// TestBackendClientCertificate sends requests through a running proxy to a
// TLS backend that requires a client certificate from its own CA: with the
// Gateway's certificate in the Backend's TLS the proxy presents it (the
// backend sees it) and the request succeeds; without it the backend
// refuses the handshake and the client gets 502; with a certificate the
// backend's CA did not issue, the same.
func TestBackendClientCertificate(t *testing.T) {
	serverCert, serverKey, _ := selfSigned(t, "backend.example.com")
	pair, err := tls.X509KeyPair(serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	clientCert, clientKey := clientCertPEM(t, "gateway-client")
	strangerCert, strangerKey := clientCertPEM(t, "stranger")
	clientCA := x509.NewCertPool()
	clientCA.AppendCertsFromPEM(clientCert)

	a := startTLSBackend(t, &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCA},
		func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "client="+r.TLS.PeerCertificates[0].Subject.CommonName)
		})

	var backends []backendSpec
	var routes []*snapshotv1.Route
	add := func(name string, cc *snapshotv1.Certificate) {
		b := backendSpec{name: name, addrs: []string{a},
			tls: &snapshotv1.BackendTLS{Hostname: "backend.example.com", CaPem: serverCert, ClientCertificate: cc}}
		backends = append(backends, b)
		routes = append(routes, route(name, "/"+name, ref(b, 1)))
	}
	add("with", &snapshotv1.Certificate{Name: "ns/client", CertPem: clientCert, KeyPem: clientKey})
	add("without", nil)
	add("stranger", &snapshotv1.Certificate{Name: "ns/stranger", CertPem: strangerCert, KeyPem: strangerKey})
	port := freePort(t)
	m := newManager(t)
	apply(t, m, snapshot([]uint32{port}, routes, backends))

	expectPaths(t, port, "", []pathCase{
		{"/with", 200, "client=gateway-client"},
		{"/without", 502, ""},
		{"/stranger", 502, ""},
	})
}

// startTLSBackend serves handler over TLS with cfg on loopback until the
// test ends and returns its address.
func startTLSBackend(t *testing.T, cfg *tls.Config, handler http.HandlerFunc) string {
	t.Helper()
	be := httptest.NewUnstartedServer(handler)
	be.TLS = cfg
	be.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	be.StartTLS()
	t.Cleanup(be.Close)
	return strings.TrimPrefix(be.URL, "https://")
}

// pathCase is a request path through the proxy and the status and body
// part expected.
type pathCase struct {
	path   string
	status int
	body   string
}

// expectPaths GETs each case's path on the proxy's port (with Host host,
// unless empty) and checks the answer.
func expectPaths(t *testing.T, port uint32, host string, cases []pathCase) {
	t.Helper()
	for _, tc := range cases {
		req, _ := http.NewRequest("GET", url(port, tc.path), nil)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.body) {
			t.Errorf("%s: %d %q, want %d with %q", tc.path, resp.StatusCode, b, tc.status, tc.body)
		}
	}
}

// clientCertPEM is a self-signed client certificate (its own CA) and key.
func clientCertPEM(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	der, key := newCert(t, cn, true)
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

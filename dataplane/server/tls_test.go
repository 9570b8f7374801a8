package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"strconv"
	"testing"
	"time"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

func selfSigned(t *testing.T, host string) (certPEM, keyPEM []byte, pool *x509.CertPool) {
	t.Helper()
	der, key := newCert(t, host, false)
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), pool
}

// newCert is a self-signed certificate valid for an hour: a server's for
// DNS name cn, or (client) a client's that is its own CA.
func newCert(t *testing.T, cn string, client bool) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if client {
		tmpl.DNSNames, tmpl.ExtKeyUsage = nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.BasicConstraintsValid, tmpl.IsCA = true, true
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

// TestHTTPSListener serves a listener with two certificates chosen by SNI.
func TestHTTPSListener(t *testing.T) {
	be := echo(t)
	svc := backendSpec{name: "svc", addrs: []string{addr(be)}}
	aCert, aKey, aPool := selfSigned(t, "a.example.com")
	bCert, bKey, bPool := selfSigned(t, "b.example.com")
	port := freePort(t)
	rs := snapshot(nil, []*snapshotv1.Route{route("r", "/", ref(svc, 1))}, []backendSpec{svc})
	ln := &snapshotv1.Listener{Name: gw + "/https", Gateway: gw, Port: port, Protocol: snapshotv1.Listener_HTTPS,
		Certificates: []*snapshotv1.Certificate{{Name: "ns/a", CertPem: aCert, KeyPem: aKey}, {Name: "ns/b", CertPem: bCert, KeyPem: bKey}}}
	rs[0].(*snapshotv1.Route).Listeners = []string{ln.Name}
	m := newManager(t)
	apply(t, m, append(rs, ln))

	for host, pool := range map[string]*x509.CertPool{"a.example.com": aPool, "b.example.com": bPool} {
		client := &http.Client{Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: host},
			ForceAttemptHTTP2: true,
		}}
		resp, err := client.Get("https://127.0.0.1:" + strconv.Itoa(int(port)) + "/tls")
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		if resp.ProtoMajor != 2 {
			t.Errorf("%s: client spoke %s, want HTTP/2", host, resp.Proto)
		}
		if e := decodeEcho(t, resp); e.Path != "/tls" {
			t.Fatalf("%+v", e)
		}
		client.CloseIdleConnections()
	}
}

// httpsGet fetches /tls over HTTPS on port with SNI and Host host, trusting
// only pool and presenting certs, and returns the error of the exchange
// (nil on a 200).
func httpsGet(port uint32, host string, pool *x509.CertPool, certs ...tls.Certificate) error {
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: host, Certificates: certs}}}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "https://127.0.0.1:"+strconv.Itoa(int(port))+"/tls", nil)
	req.Host = host
	return ok200(client.Do(req))
}

// wildcardAndExact is a snapshot of the HTTPS listeners "*.example.com"
// and "b.example.com" sharing port, each with its certificate, and a route
// on both to svc.
func wildcardAndExact(svc backendSpec, port uint32, wildCert, wildKey, bCert, bKey []byte) []snapshotv1.Named {
	https := func(name, host string, cert, key []byte) *snapshotv1.Listener {
		return &snapshotv1.Listener{Name: gw + "/" + name, Gateway: gw, Port: port, Protocol: snapshotv1.Listener_HTTPS, Hostname: host,
			Certificates: []*snapshotv1.Certificate{{Name: "ns/" + name, CertPem: cert, KeyPem: key}}}
	}
	rs := snapshot(nil, []*snapshotv1.Route{route("r", "/", ref(svc, 1))}, []backendSpec{svc})
	a, b := https("a", "*.example.com", wildCert, wildKey), https("b", "b.example.com", bCert, bKey)
	rs[0].(*snapshotv1.Route).Listeners = []string{a.Name, b.Name}
	return append(rs, a, b)
}

// TestHTTPSListenersShareAPort: each listener's own certificates answer
// the names it serves, even when another listener's wildcard certificate
// would also cover them; and new certificates apply without a rebind.
func TestHTTPSListenersShareAPort(t *testing.T) {
	svc := backendSpec{name: "svc", addrs: []string{addr(echo(t))}}
	wildCert, wildKey, wildPool := selfSigned(t, "*.example.com")
	bCert, bKey, bPool := selfSigned(t, "b.example.com")
	port := freePort(t)
	config := func(bCert, bKey []byte) []snapshotv1.Named {
		return wildcardAndExact(svc, port, wildCert, wildKey, bCert, bKey)
	}
	m := newManager(t)
	apply(t, m, config(bCert, bKey))
	if err := httpsGet(port, "b.example.com", bPool); err != nil {
		t.Errorf("b.example.com with its listener's certificate: %v", err)
	}
	if err := httpsGet(port, "a.example.com", wildPool); err != nil {
		t.Errorf("a.example.com with the wildcard listener's certificate: %v", err)
	}

	// A renewed certificate is served on the next handshake.
	addrBefore := m.Addr(port).String()
	b2Cert, b2Key, b2Pool := selfSigned(t, "b.example.com")
	apply(t, m, config(b2Cert, b2Key))
	if err := httpsGet(port, "b.example.com", b2Pool); err != nil {
		t.Errorf("renewed certificate: %v", err)
	}
	if err := httpsGet(port, "b.example.com", bPool); err == nil {
		t.Errorf("the replaced certificate is still served")
	}
	if m.Addr(port).String() != addrBefore {
		t.Errorf("listener rebound for a certificate change")
	}
}

// TestHTTPSMisdirectedRequest: a request whose Host selects another
// listener than the TLS server name it came with gets 421; a Host the same
// listener serves is fine.
func TestHTTPSMisdirectedRequest(t *testing.T) {
	svc := backendSpec{name: "svc", addrs: []string{addr(echo(t))}}
	wildCert, wildKey, wildPool := selfSigned(t, "*.example.com")
	bCert, bKey, bPool := selfSigned(t, "b.example.com")
	port := freePort(t)
	apply(t, newManager(t), wildcardAndExact(svc, port, wildCert, wildKey, bCert, bKey))

	for _, tc := range []struct {
		sni, host string
		pool      *x509.CertPool
		want      int
	}{
		{"a.example.com", "a.example.com", wildPool, 200},
		{"a.example.com", "c.example.com:" + strconv.Itoa(int(port)), wildPool, 200}, // same wildcard listener
		{"a.example.com", "b.example.com", wildPool, 421},
		{"b.example.com", "a.example.com", bPool, 421},
		{"b.example.com", "B.example.com", bPool, 200},
	} {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tc.pool, ServerName: tc.sni}, ForceAttemptHTTP2: true}}
		req, _ := http.NewRequest("GET", "https://127.0.0.1:"+strconv.Itoa(int(port))+"/tls", nil)
		req.Host = tc.host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("SNI %s, Host %s: %v", tc.sni, tc.host, err)
		}
		resp.Body.Close()
		client.CloseIdleConnections()
		if resp.StatusCode != tc.want {
			t.Errorf("SNI %s, Host %s: status %d, want %d", tc.sni, tc.host, resp.StatusCode, tc.want)
		}
	}
}

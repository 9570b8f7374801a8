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
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), pool
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

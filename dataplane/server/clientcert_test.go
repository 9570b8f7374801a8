package server_test

import (
	"crypto/tls"
	"encoding/pem"
	"testing"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// clientCert is a self-signed client certificate (its own CA).
func clientCert(t *testing.T, cn string) (tls.Certificate, []byte) {
	t.Helper()
	der, key := newCert(t, cn, true)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestClientCertificateValidation: an HTTPS listener with client
// validation serves only clients whose certificate verifies against its
// CA; with AllowInsecureFallback every client, and a changed mode applies
// on the next handshake without rebinding.
func TestClientCertificateValidation(t *testing.T) {
	be := echo(t)
	svc := backendSpec{name: "svc", addrs: []string{addr(be)}}
	srvCert, srvKey, srvPool := selfSigned(t, "a.example.com")
	trusted, trustedCA := clientCert(t, "trusted")
	stranger, _ := clientCert(t, "stranger")
	port := freePort(t)
	config := func(cv *snapshotv1.ClientValidation) []snapshotv1.Named {
		rs := snapshot(nil, []*snapshotv1.Route{route("r", "/", ref(svc, 1))}, []backendSpec{svc})
		ln := &snapshotv1.Listener{Name: gw + "/https", Gateway: gw, Port: port, Protocol: snapshotv1.Listener_HTTPS,
			Certificates:     []*snapshotv1.Certificate{{Name: "ns/a", CertPem: srvCert, KeyPem: srvKey}},
			ClientValidation: cv}
		rs[0].(*snapshotv1.Route).Listeners = []string{ln.Name}
		return append(rs, ln)
	}
	get := func(certs ...tls.Certificate) error { return httpsGet(port, "a.example.com", srvPool, certs...) }
	m := newManager(t)
	apply(t, m, config(&snapshotv1.ClientValidation{CaPem: trustedCA}))
	if err := get(trusted); err != nil {
		t.Errorf("trusted client: %v", err)
	}
	if err := get(); err == nil {
		t.Error("a client without a certificate was served")
	}
	if err := get(stranger); err == nil {
		t.Error("a client with an untrusted certificate was served")
	}

	apply(t, m, config(&snapshotv1.ClientValidation{CaPem: trustedCA, AllowInsecureFallback: true}))
	for name, certs := range map[string][]tls.Certificate{"trusted": {trusted}, "none": nil, "stranger": {stranger}} {
		if err := get(certs...); err != nil {
			t.Errorf("AllowInsecureFallback, %s client: %v", name, err)
		}
	}
}

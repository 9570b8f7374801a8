package config

import (
	"strings"
	"testing"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

func TestCompileBackendTLS(t *testing.T) {
	for name, tc := range map[string]struct {
		in   *snapshotv1.BackendTLS
		want string // error substring, "" for none
	}{
		"no hostname":    {&snapshotv1.BackendTLS{CaPem: []byte("x")}, "hostname"},
		"no certificate": {&snapshotv1.BackendTLS{Hostname: "a.example.com", CaPem: []byte("not pem")}, "caPem"},
		"empty san":      {&snapshotv1.BackendTLS{Hostname: "a.example.com", SystemRoots: true, SubjectAltNames: []*snapshotv1.SubjectAltName{{}}}, "subjectAltNames[0]"},
		"system roots":   {&snapshotv1.BackendTLS{Hostname: "a.example.com", SystemRoots: true}, ""},
		"bad client certificate": {&snapshotv1.BackendTLS{Hostname: "a.example.com", SystemRoots: true,
			ClientCertificate: &snapshotv1.Certificate{Name: "ns/client", CertPem: []byte("not pem")}}, `clientCertificate "ns/client"`},
		// An invalid policy compiles: its requests are answered with 503.
		"invalid": {&snapshotv1.BackendTLS{InvalidReason: "no valid CA certificate"}, ""},
	} {
		got, err := compileBackendTLS(tc.in)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one about %s", name, err, tc.want)
		case tc.want == "" && got.Invalid == "" && (got.Config == nil || got.Config.ServerName != "a.example.com"):
			t.Errorf("%s: tls.Config %+v", name, got.Config)
		}
	}
	a, _ := compileBackendTLS(&snapshotv1.BackendTLS{Hostname: "a.example.com", SystemRoots: true})
	b, _ := compileBackendTLS(&snapshotv1.BackendTLS{Hostname: "b.example.com", SystemRoots: true})
	if a.Key == b.Key {
		t.Error("different settings share a transport key")
	}
}

// TestClientValidationPerPort: the listeners of one port must agree on
// client validation (the Gateway API sets it per port); bad CA PEM is an
// error.
func TestClientValidationPerPort(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nMIIBejCCASGgAwIBAgIUKBn0Y4NtAuRPM33NAkRsxiFM7U8wCgYIKoZIzj0EAwIw\nEjEQMA4GA1UEAwwHdGVzdC1jYTAgFw0yNjExMjQwNDAzMDhaGA8yMTI2MTAzMTA0\nMDMwOFowEjEQMA4GA1UEAwwHdGVzdC1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEH\nA0IABGTEYcAKoVuMfrHmzf/Jl6XISK/0CL8owz5GOC10ZW8dAdqPcM0fdjRiHGEg\nh/x81twXmN+VtWcZOHekZ6odnwCjUzBRMB0GA1UdDgQWBBS8/o3sJborO17HQCP7\ne7P8X0v/JTAfBgNVHSMEGDAWgBS8/o3sJborO17HQCP7e7P8X0v/JTAPBgNVHRMB\nAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIGNWDLaeeWrxaToT+1utK/921117\nOnTnwp7a4yDR0omOAiBGxwC3oH/KJg+HhnXviykWU3JA5d+k00EAo0WEfwlugw==\n-----END CERTIFICATE-----\n")
	listener := func(name string, cv *snapshotv1.ClientValidation) *snapshotv1.Listener {
		return &snapshotv1.Listener{Name: name, Port: 443, ClientValidation: cv}
	}
	p := &Port{Port: 443}
	first := listener("a", &snapshotv1.ClientValidation{CaPem: ca})
	if err := setClientValidation(p, first); err != nil || p.ClientCAs == nil || p.ClientValidation != "AllowValidOnly" {
		t.Fatalf("first listener: %v, %+v", err, p)
	}
	p.Listeners = append(p.Listeners, &Listener{Name: "a", Raw: first})
	if err := setClientValidation(p, listener("b", &snapshotv1.ClientValidation{CaPem: ca})); err != nil {
		t.Errorf("same validation: %v", err)
	}
	for name, cv := range map[string]*snapshotv1.ClientValidation{
		"none":     nil,
		"fallback": {CaPem: ca, AllowInsecureFallback: true},
	} {
		if err := setClientValidation(p, listener(name, cv)); err == nil {
			t.Errorf("%s: a listener with other client validation on the same port compiled", name)
		}
	}
	if err := setClientValidation(&Port{Port: 1}, listener("c", &snapshotv1.ClientValidation{CaPem: []byte("x")})); err == nil {
		t.Error("CA without a certificate compiled")
	}
}

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

package xdsauth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestBundleServesTLSToItsCA(t *testing.T) {
	now := time.Now()
	b, err := NewBundle([]string{"infergate.infergate-system.svc", "127.0.0.1"}, 48*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check([]string{"infergate.infergate-system.svc", "127.0.0.1"}, now, time.Hour); err != nil {
		t.Fatalf("fresh bundle: %v", err)
	}
	if err := b.Check([]string{"other.example"}, now, time.Hour); err == nil {
		t.Fatal("bundle accepted a host it was not issued for")
	}
	if err := b.Check(nil, now, 72*time.Hour); err == nil || !strings.Contains(err.Error(), "expires") {
		t.Fatalf("bundle close to expiry: %v", err)
	}
	other, err := NewBundle([]string{"127.0.0.1"}, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	mixed := &Bundle{CACert: other.CACert, CertPEM: b.CertPEM, KeyPEM: b.KeyPEM}
	if err := mixed.Check(nil, now, 0); err == nil {
		t.Fatal("certificate accepted under a CA that did not sign it")
	}

	srvCfg, err := b.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hello"))
			c.Close()
		}
	}()
	dial := func(ca []byte) error {
		cfg, err := ClientConfig(ca, "127.0.0.1")
		if err != nil {
			return err
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		got, err := io.ReadAll(c)
		if err == nil && string(got) != "hello" {
			t.Errorf("read %q", got)
		}
		return err
	}
	if err := dial(b.CACert); err != nil {
		t.Fatalf("client trusting the CA: %v", err)
	}
	if err := dial(other.CACert); err == nil {
		t.Fatal("client trusting another CA connected")
	}
}

func TestServiceAccountUser(t *testing.T) {
	for user, want := range map[string]string{
		"system:serviceaccount:team-a:gw-infergate": "team-a/gw-infergate",
		"system:serviceaccount:team-a":              "",
		"system:serviceaccount::x":                  "",
		"alice":                                     "",
	} {
		ns, name, ok := serviceAccount(user)
		got := ""
		if ok {
			got = ns + "/" + name
		}
		if got != want {
			t.Errorf("serviceAccount(%q) = %q, want %q", user, got, want)
		}
	}
}

// ClientConfig trusts only the CA in caPEM, as a proxy or infergatectl
// does (their real config is xdsclient.SecureDialOptions).
func ClientConfig(caPEM []byte, serverName string) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no PEM certificate in the CA file")
	}
	return &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}, nil
}

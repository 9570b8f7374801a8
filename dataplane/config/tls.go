package config

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"

	"google.golang.org/protobuf/proto"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// BackendTLS is TLS originated to a backend's endpoints (a
// BackendTLSPolicy): the server name sent, the roots and names the
// endpoint's certificate is verified against.
type BackendTLS struct {
	ServerName  string   `json:"serverName"`
	SystemRoots bool     `json:"systemRoots,omitempty"`
	SANs        []string `json:"subjectAltNames,omitempty"`
	// ClientCertificate names the certificate presented when the endpoint
	// asks for one (the Gateway's spec.tls.backend), "" for none.
	ClientCertificate string `json:"clientCertificate,omitempty"`
	// Invalid says why requests to the backend fail (503) instead.
	Invalid string `json:"invalid,omitempty"`
	// Key identifies the settings (a hash of the resource), so a proxy
	// keeps a backend's TLS connections across config versions that do
	// not change them.
	Key    string      `json:"-"`
	Config *tls.Config `json:"-"`
}

func compileBackendTLS(t *snapshotv1.BackendTLS) (*BackendTLS, error) {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(t)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	out := &BackendTLS{ServerName: t.GetHostname(), SystemRoots: t.GetSystemRoots(), Invalid: t.GetInvalidReason(),
		Key: hex.EncodeToString(sum[:12])}
	if out.Invalid != "" {
		return out, nil
	}
	if out.ServerName == "" {
		return nil, errors.New("hostname is required")
	}
	var roots *x509.CertPool
	if out.SystemRoots {
		if roots, err = x509.SystemCertPool(); err != nil {
			return nil, fmt.Errorf("system roots: %w", err)
		}
	} else {
		if roots, err = caPool(t.GetCaPem()); err != nil {
			return nil, err
		}
	}
	var dnsNames, uris []string
	for i, san := range t.GetSubjectAltNames() {
		switch {
		case san.GetHostname() != "":
			dnsNames = append(dnsNames, san.GetHostname())
			out.SANs = append(out.SANs, "DNS:"+san.GetHostname())
		case san.GetUri() != "":
			if _, err := url.Parse(san.GetUri()); err != nil {
				return nil, fmt.Errorf("subjectAltNames[%d]: %w", i, err)
			}
			uris = append(uris, san.GetUri())
			out.SANs = append(out.SANs, "URI:"+san.GetUri())
		default:
			return nil, fmt.Errorf("subjectAltNames[%d]: neither hostname nor uri", i)
		}
	}
	cfg := &tls.Config{ServerName: out.ServerName, RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cc := t.GetClientCertificate(); cc != nil {
		pair, err := tls.X509KeyPair(cc.GetCertPem(), cc.GetKeyPem())
		if err != nil {
			return nil, fmt.Errorf("clientCertificate %q: %w", cc.GetName(), err)
		}
		cfg.Certificates = []tls.Certificate{pair}
		out.ClientCertificate = cc.GetName()
	}
	if len(out.SANs) > 0 {
		// With subjectAltNames the certificate must carry one of them and
		// need not carry hostname (which stays the SNI): verify the chain
		// here, without the name check crypto/tls would do.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifySANs(cs, roots, dnsNames, uris)
		}
	}
	out.Config = cfg
	return out, nil
}

// verifySANs verifies the peer's chain against roots and that its leaf
// names one of dnsNames or uris.
func verifySANs(cs tls.ConnectionState, roots *x509.CertPool, dnsNames, uris []string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate from the backend")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
		return err
	}
	for _, n := range dnsNames {
		if leaf.VerifyHostname(n) == nil {
			return nil
		}
	}
	for _, u := range leaf.URIs {
		if slices.Contains(uris, u.String()) {
			return nil
		}
	}
	return fmt.Errorf("backend certificate matches none of the subjectAltNames %v", append(dnsNames, uris...))
}

// setClientValidation takes l's client-certificate validation for its
// port. The Gateway API sets it per port, so every HTTPS listener of a port
// must carry the same.
func setClientValidation(p *Port, l *snapshotv1.Listener) error {
	cv := l.GetClientValidation()
	mode := ""
	if cv != nil {
		mode = "AllowValidOnly"
		if cv.GetAllowInsecureFallback() {
			mode = "AllowInsecureFallback"
		}
	}
	if len(p.Listeners) > 0 {
		prev := p.Listeners[0].Raw.GetClientValidation()
		if mode != p.ClientValidation || !proto.Equal(prev, cv) {
			return fmt.Errorf("differs from listener %q on port %d", p.Listeners[0].Name, p.Port)
		}
		return nil
	}
	if cv == nil {
		return nil
	}
	pool, err := caPool(cv.GetCaPem())
	if err != nil {
		return err
	}
	p.ClientCAs, p.ClientValidation = pool, mode
	return nil
}

// caPool is the pool of the CA certificates in pem, which must hold one.
func caPool(pem []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("caPem: no certificate")
	}
	return pool, nil
}

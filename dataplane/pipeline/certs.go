package pipeline

import (
	"crypto/tls"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/router"
)

// portCerts are the certificates of a port's HTTPS listeners. Several
// listeners may share a port with different hostnames, each with its own
// certificateRefs: a handshake is answered from the listener its SNI
// selects (the same choice the router makes for the Host header), and only
// without such a listener (no SNI, or an unknown name) from any of them.
type portCerts struct {
	byListener map[*config.Listener][]tls.Certificate
	all        []tls.Certificate
}

func newPortCerts(p *config.Port) portCerts {
	var pc portCerts
	for _, l := range p.Listeners {
		if l.Raw == nil {
			continue
		}
		for _, c := range l.Raw.GetCertificates() {
			// Compile validated the pairs; an error here cannot happen.
			cert, err := tls.X509KeyPair(c.GetCertPem(), c.GetKeyPem())
			if err != nil {
				continue
			}
			if pc.byListener == nil {
				pc.byListener = map[*config.Listener][]tls.Certificate{}
			}
			pc.byListener[l] = append(pc.byListener[l], cert)
			pc.all = append(pc.all, cert)
		}
	}
	return pc
}

// pick returns the certificate for hello, nil when the port has none.
func (pc *portCerts) pick(rt *router.Router, hello *tls.ClientHelloInfo) *tls.Certificate {
	certs := pc.byListener[rt.Listener(hello.ServerName)]
	if len(certs) == 0 {
		certs = pc.all
	}
	if len(certs) == 0 {
		return nil
	}
	for i := range certs {
		if hello.SupportsCertificate(&certs[i]) == nil {
			return &certs[i]
		}
	}
	return &certs[0]
}

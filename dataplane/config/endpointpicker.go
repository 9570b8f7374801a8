package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/proto/endpointpicker"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// EndpointPicker is a pool's external endpoint picker (ext_proc).
type EndpointPicker struct {
	// Service is "<ns>/<name>:<port>", the picker's name in metrics and logs.
	Service string `json:"service"`
	// Addresses are the ready picker endpoints, "ip:port".
	Addresses []string `json:"addresses"`
	// FailOpen picks locally when the picker fails; otherwise requests
	// get 503.
	FailOpen bool `json:"failOpen,omitempty"`
	// Plaintext speaks HTTP/2 without TLS; otherwise TLS, verified as TLS
	// says (nil: not verified).
	Plaintext bool        `json:"plaintext,omitempty"`
	TLS       *BackendTLS `json:"tls,omitempty"`
	// Timeout bounds each wait for an answer; 0 takes the proxy's default.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Invalid says why the picker cannot be used (the failure mode then
	// applies to every request).
	Invalid string `json:"invalid,omitempty"`
	// Key identifies the connection settings (service, transport, TLS):
	// pools and config versions with the same key share one connection.
	Key string `json:"-"`
}

func compileEndpointPicker(p *snapshotv1.EndpointPicker, eps map[string]*snapshotv1.Endpoints) (*EndpointPicker, error) {
	if p.GetService() == "" {
		return nil, errors.New("service: empty")
	}
	out := &EndpointPicker{Service: p.GetService(), FailOpen: p.GetFailureMode() == snapshotv1.EndpointPicker_FAIL_OPEN,
		Plaintext: p.GetPlaintext(), Invalid: p.GetInvalidReason()}
	switch p.GetFailureMode() {
	case snapshotv1.EndpointPicker_FAIL_CLOSE, snapshotv1.EndpointPicker_FAIL_OPEN:
	default:
		return nil, fmt.Errorf("failureMode: unknown %v", p.GetFailureMode())
	}
	if d := p.GetTimeout(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, fmt.Errorf("timeout: %w", err)
		}
		out.Timeout = d.AsDuration()
		if err := endpointpicker.CheckTimeout(out.Timeout); err != nil {
			return nil, fmt.Errorf("timeout: %w", err)
		}
	}
	if out.Invalid != "" {
		return out, nil
	}
	if p.GetPlaintext() && p.GetTls() != nil {
		return nil, errors.New("tls: set on a plain-text picker")
	}
	if t := p.GetTls(); t != nil {
		var err error
		if out.TLS, err = compileBackendTLS(t); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		if out.TLS.Invalid != "" {
			out.Invalid = "TLS: " + out.TLS.Invalid
			return out, nil
		}
	}
	set, ok := eps[p.GetEndpoints()]
	if !ok {
		return nil, fmt.Errorf("endpoints: unknown Endpoints resource %q", p.GetEndpoints())
	}
	seen := map[string]bool{}
	for i, e := range set.GetEndpoints() {
		addr, err := endpointAddr(set, i)
		if err != nil {
			return nil, err
		}
		a := hostPort(addr, e.GetPort())
		if !seen[a] {
			seen[a] = true
			out.Addresses = append(out.Addresses, a)
		}
	}
	// The connection is keyed by what it is dialled with, not by its
	// addresses (those are updated on the live connection).
	key := sha256.New()
	fmt.Fprintf(key, "%s\x00%t\x00", out.Service, out.Plaintext)
	if t := p.GetTls(); t != nil {
		raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(t)
		if err != nil {
			return nil, err
		}
		key.Write(raw)
	}
	out.Key = hex.EncodeToString(key.Sum(nil)[:12])
	return out, nil
}

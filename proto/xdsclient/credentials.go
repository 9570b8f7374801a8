package xdsclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// TokenFile sends the token in a file as a bearer token on every stream.
// The file is re-read each time because Kubernetes rotates projected
// ServiceAccount tokens in place.
type TokenFile struct {
	Path string
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t TokenFile) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	b, err := os.ReadFile(t.Path)
	if err != nil {
		return nil, fmt.Errorf("xDS token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, fmt.Errorf("xDS token file %s is empty", t.Path)
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: a
// token is never sent in the clear.
func (TokenFile) RequireTransportSecurity() bool { return true }

// SecureDialOptions returns dial options for TLS to the control plane,
// trusting only the CA in caFile, and, when tokenFile is set, presenting
// that token. serverName overrides the name checked in the certificate.
func SecureDialOptions(caFile, serverName, tokenFile string) ([]grpc.DialOption, error) {
	if caFile == "" {
		if tokenFile != "" {
			return nil, errors.New("a token is only sent over TLS: set the CA file too")
		}
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("xDS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("xDS CA file %s holds no PEM certificate", caFile)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12,
	}))}
	if tokenFile != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(TokenFile{Path: tokenFile}))
	}
	return opts, nil
}

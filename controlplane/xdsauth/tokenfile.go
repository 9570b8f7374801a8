package xdsauth

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// TokenFile presents the token in a file as a bearer token on every
// stream a control-plane replica opens to a peer. The file is re-read
// each time because Kubernetes rotates projected ServiceAccount tokens in
// place.
type TokenFile struct {
	Path string
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t TokenFile) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	tok, err := t.Read()
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// Read returns the token.
func (t TokenFile) Read() (string, error) {
	b, err := os.ReadFile(t.Path)
	if err != nil {
		return "", fmt.Errorf("peer token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("peer token file %s is empty", t.Path)
	}
	return tok, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: a
// token is never sent in the clear.
func (TokenFile) RequireTransportSecurity() bool { return true }

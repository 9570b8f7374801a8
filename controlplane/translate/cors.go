package translate

import (
	"fmt"
	"regexp"
	"slices"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// corsOrigin is the CRD's pattern for an allowed origin: "*", or an http(s)
// origin whose host may be "*" or start with "*." and which may name a port.
// The API server enforces it; a file source does not.
var corsOrigin = regexp.MustCompile(`^(\*|https?://((\*\.)?([a-zA-Z0-9-]+\.)*[a-zA-Z0-9-]+|\*)(:[0-9]{1,5})?)$`)

// checkCORS rejects CORS values the proxy cannot apply: malformed origins
// and a wildcard listed alongside other values (the API forbids both).
func checkCORS(c *gwv1.HTTPCORSFilter) error {
	for _, o := range c.AllowOrigins {
		if !corsOrigin.MatchString(string(o)) {
			return fmt.Errorf("allowOrigins: %q is not \"*\" or <scheme>://<host>[:<port>] with scheme http or https", o)
		}
	}
	if err := wildcardAlone("allowOrigins", c.AllowOrigins); err != nil {
		return err
	}
	if err := wildcardAlone("allowMethods", c.AllowMethods); err != nil {
		return err
	}
	if err := wildcardAlone("allowHeaders", c.AllowHeaders); err != nil {
		return err
	}
	if c.MaxAge < 0 {
		return fmt.Errorf("maxAge: %d must be at least 1", c.MaxAge)
	}
	return nil
}

func wildcardAlone[S ~string](field string, vs []S) error {
	if len(vs) > 1 && slices.Contains(vs, "*") {
		return fmt.Errorf("%s: \"*\" cannot be listed alongside other values", field)
	}
	return nil
}

func corsFilter(c *gwv1.HTTPCORSFilter) *snapshotv1.CORS {
	out := &snapshotv1.CORS{
		MaxAgeSeconds: uint32(max(c.MaxAge, 0)),
		AllowOrigins:  plainStrings(c.AllowOrigins),
		AllowMethods:  plainStrings(c.AllowMethods),
		AllowHeaders:  plainStrings(c.AllowHeaders),
		ExposeHeaders: plainStrings(c.ExposeHeaders),
	}
	if c.AllowCredentials != nil {
		out.AllowCredentials = *c.AllowCredentials
	}
	return out
}

// plainStrings converts the API's typed strings (nil stays nil).
func plainStrings[S ~string](vs []S) []string {
	var out []string
	for _, v := range vs {
		out = append(out, string(v))
	}
	return out
}

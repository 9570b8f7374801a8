package config

import (
	"net/http"
	"reflect"
	"strings"
	"testing"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

func TestCORSAllows(t *testing.T) {
	c, err := compileCORS(&snapshotv1.CORS{AllowOrigins: []string{
		"https://www.foo.com", "https://*.bar.com", "http://*:8080", "https://Exact.Example.com:8443",
	}})
	if err != nil {
		t.Fatal(err)
	}
	for origin, want := range map[string]bool{
		"https://www.foo.com":              true,
		"https://www.foo.com:443":          true, // the scheme's port is implied
		"HTTPS://WWW.FOO.COM":              true,
		"http://www.foo.com":               false, // scheme differs
		"https://www.foo.com:8443":         false,
		"https://foo.com":                  false,
		"https://www.bar.com":              true,
		"https://xpto.www.bar.com":         true, // any number of labels
		"https://bar.com":                  false,
		"https://evilbar.com":              false,
		"https://bar.com.evil.com":         false,
		"http://anything.example:8080":     true,
		"http://anything.example":          false,
		"https://exact.example.com:8443":   true,
		"https://exact.example.com":        false,
		"null":                             false,
		"":                                 false,
		"https://www.foo.com:0":            false,
		"https://www.foo.com:99999":        false,
		"https://user@www.foo.com":         false,
		"https://www.foo.com/path":         false,
		"https://www.foo.com:443/":         false,
		"https://[::1]":                    false,
		"https://www.bar.com.":             false,
		"https://sub.www.bar.com:443":      true,
		"https://sub.www.bar.com:444":      false,
		"ftp://www.foo.com":                false,
		"https://www.foo.com:https":        false,
		"https://www.foo.com:443:443":      false,
		"https://www.foo.com\r\nx: y":      false,
		"https://www.foo.com#fragment":     false,
		"https://www.foo.com?query=string": false,
	} {
		if got := c.Allows(origin); got != want {
			t.Errorf("Allows(%q) = %v, want %v", origin, got, want)
		}
	}

	any, err := compileCORS(&snapshotv1.CORS{AllowOrigins: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	if !any.Allows("https://foobar.com:12345") || !any.Allows("null") || any.Allows("") {
		t.Error("allowOrigins [*] must allow every origin sent")
	}
	none, _ := compileCORS(&snapshotv1.CORS{})
	if none.Allows("https://a.com") {
		t.Error("no allowOrigins must allow no origin")
	}
}

func TestCORSHeaders(t *testing.T) {
	c, err := compileCORS(&snapshotv1.CORS{
		AllowOrigins: []string{"https://a.com"}, AllowMethods: []string{"GET", "OPTIONS"},
		AllowHeaders: []string{"X-Header-1", "x-header-2"}, ExposeHeaders: []string{"x-header-3"},
		AllowCredentials: true, MaxAgeSeconds: 3600,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Vary": {"Accept-Encoding"}}
	c.Preflight(h, "https://a.com", "PUT", "x-whatever")
	want := http.Header{
		"Access-Control-Allow-Origin":      {"https://a.com"},
		"Access-Control-Allow-Credentials": {"true"},
		"Access-Control-Allow-Methods":     {"GET, OPTIONS"},
		"Access-Control-Allow-Headers":     {"x-header-1, x-header-2"},
		"Access-Control-Expose-Headers":    {"x-header-3"},
		"Access-Control-Max-Age":           {"3600"},
		"Vary":                             {"Accept-Encoding", "Origin"},
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("preflight headers\n got %v\nwant %v", h, want)
	}
	c.Actual(h, "https://a.com") // at commit again: no second Vary
	if !reflect.DeepEqual(h, want) {
		t.Errorf("Actual twice changed headers: %v", h)
	}

	// Wildcards echo what the preflight asks; the default max age is 5;
	// with credentials "*" is no wildcard for exposeHeaders, so it is left out.
	w, err := compileCORS(&snapshotv1.CORS{AllowOrigins: []string{"*"}, AllowMethods: []string{"*"},
		AllowHeaders: []string{"*"}, ExposeHeaders: []string{"*"}, AllowCredentials: true})
	if err != nil {
		t.Fatal(err)
	}
	h = http.Header{}
	w.Preflight(h, "https://other.foo.com", "PUT", "x-header-1, x-header-2")
	want = http.Header{
		"Access-Control-Allow-Origin":      {"https://other.foo.com"},
		"Access-Control-Allow-Credentials": {"true"},
		"Access-Control-Allow-Methods":     {"PUT"},
		"Access-Control-Allow-Headers":     {"x-header-1, x-header-2"},
		"Access-Control-Max-Age":           {"5"},
		"Vary":                             {"Origin"},
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("wildcard preflight headers\n got %v\nwant %v", h, want)
	}
	h = http.Header{}
	w.Preflight(h, "https://other.foo.com", "PUT", "")
	if _, ok := h["Access-Control-Allow-Headers"]; ok {
		t.Errorf("allowHeaders [*] without Access-Control-Request-Headers must leave the header out: %v", h)
	}
}

func TestCompileCORSInvalid(t *testing.T) {
	for name, c := range map[string]*snapshotv1.CORS{
		"scheme":            {AllowOrigins: []string{"ftp://a.com"}},
		"no scheme":         {AllowOrigins: []string{"a.com"}},
		"port":              {AllowOrigins: []string{"https://a.com:70000"}},
		"inner wildcard":    {AllowOrigins: []string{"https://a.*.com"}},
		"path":              {AllowOrigins: []string{"https://a.com/x"}},
		"wildcard and more": {AllowOrigins: []string{"*", "https://a.com"}},
		"method wildcard":   {AllowMethods: []string{"*", "GET"}},
		"empty header":      {AllowHeaders: []string{""}},
		"empty expose":      {ExposeHeaders: []string{""}},
	} {
		if _, err := compileCORS(c); err == nil {
			t.Errorf("%s: compiled %v", name, c)
		} else if !strings.Contains(err.Error(), "allow") && !strings.Contains(err.Error(), "expose") {
			t.Errorf("%s: error %q does not name the field", name, err)
		}
	}
}

package main

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// runPlain serves a bare httputil.ReverseProxy to the backend: the floor
// of what any proxy built on Go's net/http costs, to tell infergate's own
// work apart from the HTTP stack's.
func runPlain(addr, backend string) error {
	u := &url.URL{Scheme: "http", Host: backend}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 1024, IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return (&http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
}

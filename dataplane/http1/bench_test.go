package http1

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkServe compares the lean server with net/http's on the proxy's
// common request — a 1 KB JSON POST answered with a small JSON body — over
// loopback keep-alive connections. The client writes raw requests and
// parses the responses the same way for both, so the difference between
// the two is the servers'. Both have the proxy's header and idle
// timeouts. ns/op of the parallel runs is the inverse of throughput.
func BenchmarkServe(b *testing.B) {
	resp := []byte(`{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello"}}]}`)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header()["Content-Type"] = []string{"application/json"}
		w.Header()["Content-Length"] = []string{strconv.Itoa(len(resp))}
		w.Write(resp)
	})
	body := `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("lorem ipsum ", 80) + `"}]}`
	req := "POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nUser-Agent: bench\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	servers := map[string]func(net.Listener) error{
		"lean": func(ln net.Listener) error {
			s := &Server{Std: &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 5 * time.Minute}}
			b.Cleanup(func() { s.Close() })
			return s.Serve(ln)
		},
		"stdlib": func(ln net.Listener) error {
			s := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 5 * time.Minute}
			b.Cleanup(func() { s.Close() })
			return s.Serve(ln)
		},
	}
	for _, name := range []string{"lean", "stdlib"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go servers[name](ln)
		addr := ln.Addr().String()
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				br := bufio.NewReader(c)
				for pb.Next() {
					if err := roundTrip(c, br, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func roundTrip(c net.Conn, br *bufio.Reader, req string) error {
	if _, err := io.WriteString(c, req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return errors.New(resp.Status)
	}
	return nil
}

package conformance

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/websocket"
)

// Ports gateway-api's echo-basic image listens on by default; its
// HTTP_PORT, H2C_PORT and HTTPS_PORT variables change them (the Inference
// Extension suite runs several echo containers in one pod that way).
const (
	echoHTTPPort  = 3000
	echoH2CPort   = 3001
	echoHTTPSPort = 8443
)

// echoPorts are one echo container's ports.
type echoPorts struct{ http, h2c, https int }

// echoPortsOf reads an echo container's ports from its environment.
func echoPortsOf(env map[string]string) (echoPorts, error) {
	p := echoPorts{echoHTTPPort, echoH2CPort, echoHTTPSPort}
	for name, dst := range map[string]*int{"HTTP_PORT": &p.http, "H2C_PORT": &p.h2c, "HTTPS_PORT": &p.https} {
		if v := env[name]; v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 || n > 65535 {
				return p, fmt.Errorf("echo: %s=%q is not a port", name, v)
			}
			*dst = n
		}
	}
	return p, nil
}

// echoIdentity is what echo-basic reads from its environment and reports
// in every answer.
type echoIdentity struct {
	Namespace string `json:"namespace"`
	Ingress   string `json:"ingress"`
	Service   string `json:"service"`
	Pod       string `json:"pod"`
}

// echoRequest is echo-basic's answer: the request as the backend saw it.
// Field names and JSON tags are the contract the suite's http package
// decodes (conformance/utils/http.capturedRequest).
type echoRequest struct {
	Path     string              `json:"path"`
	Host     string              `json:"host"`
	Method   string              `json:"method"`
	Proto    string              `json:"proto"`
	Headers  map[string][]string `json:"headers"`
	HTTPPort string              `json:"httpPort"`
	echoIdentity
	TLS *echoTLS `json:"tls,omitempty"`
}

type echoTLS struct {
	Version            string   `json:"version"`
	PeerCertificates   []string `json:"peerCertificates,omitempty"`
	ServerName         string   `json:"serverName"`
	NegotiatedProtocol string   `json:"negotiatedProtocol,omitempty"`
	CipherSuite        string   `json:"cipherSuite"`
}

var statusPath = regexp.MustCompile(`^/status/(\d\d\d)$`)

// echoServer behaves like one echo-basic container: HTTP on 3000, h2c on
// 3001 and, given a certificate, HTTPS on 8443, all on the pod's own
// loopback IP. The suite's mirror tests read the pod log for
// "Echoing back request made to <path>", so every echoed request is
// written to log.
type echoServer struct {
	id       echoIdentity
	log      *podLog
	httpPort string

	mu       sync.Mutex
	attempts map[string]int // /retry/ simulation, by uuid
	servers  []*http.Server
}

// startEcho starts the servers on ip at ports. serverTLS, when not nil,
// enables HTTPS.
func startEcho(ip string, ports echoPorts, id echoIdentity, serverTLS *tls.Config, log *podLog) (*echoServer, error) {
	e := &echoServer{id: id, log: log, attempts: map[string]int{}, httpPort: strconv.Itoa(ports.http)}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("OK")) })
	mux.HandleFunc("/status/", e.status)
	mux.HandleFunc("/retry/", e.retry)
	mux.HandleFunc("/", e.echo)
	// /ws echoes WebSocket messages back (HTTPRouteBackendProtocolWebSocket).
	mux.Handle("/ws", websocket.Handler(func(ws *websocket.Conn) { _, _ = io.Copy(ws, ws) }))
	// echo-basic collapses doubled slashes before routing.
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = strings.ReplaceAll(r.URL.Path, "//", "/")
		mux.ServeHTTP(w, r)
	})
	h2c := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 && r.Header.Get("Upgrade") != "h2c" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte("Expected h2c request"))
			return
		}
		e.echo(w, r)
	})
	h2cProtocols := new(http.Protocols)
	h2cProtocols.SetHTTP1(true)
	h2cProtocols.SetUnencryptedHTTP2(true)

	type listener struct {
		port    int
		srv     *http.Server
		withTLS bool
	}
	ls := []listener{
		{ports.http, &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}, false},
		{ports.h2c, &http.Server{Handler: h2c, Protocols: h2cProtocols, ReadHeaderTimeout: time.Second}, false},
	}
	if serverTLS != nil {
		ls = append(ls, listener{ports.https, &http.Server{
			Handler: handler, ReadHeaderTimeout: 10 * time.Second, TLSConfig: serverTLS,
		}, true})
	}
	for _, l := range ls {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(l.port)))
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("echo %s/%s: %w", id.Namespace, id.Pod, err)
		}
		e.servers = append(e.servers, l.srv)
		go func() {
			if l.withTLS {
				_ = l.srv.ServeTLS(ln, "", "")
			} else {
				_ = l.srv.Serve(ln)
			}
		}()
	}
	return e, nil
}

// Close stops every listener and open connection.
func (e *echoServer) Close() {
	for _, s := range e.servers {
		_ = s.Close()
	}
}

func (e *echoServer) status(w http.ResponseWriter, r *http.Request) {
	code := http.StatusBadRequest
	if m := statusPath.FindStringSubmatch(r.RequestURI); m != nil {
		code, _ = strconv.Atoi(m[1])
	}
	w.WriteHeader(code)
}

// retry fails the first succeedAfter attempts of a uuid — by resetting the
// connection, or with ?responseCode — then echoes, like echo-basic's retry
// simulation the HTTPRouteRetry tests drive.
func (e *echoServer) retry(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	uuid := q.Get("uuid")
	if uuid == "" {
		http.Error(w, "uuid is required", http.StatusBadRequest)
		return
	}
	succeedAfter, err := strconv.Atoi(q.Get("succeedAfter"))
	if err != nil {
		http.Error(w, "succeedAfter is required", http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	fail := e.attempts[uuid] < succeedAfter
	if fail {
		e.attempts[uuid]++
	}
	e.mu.Unlock()
	if !fail {
		e.echo(w, r)
		return
	}
	if err := sleepFor(r, "delayRetry"); err != nil {
		echoError(w, err)
		return
	}
	if code, err := strconv.Atoi(q.Get("responseCode")); err == nil {
		w.WriteHeader(code)
		return
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		echoError(w, err)
		return
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0) // RST, not FIN: the client sees a reset
	}
	_ = conn.Close()
}

func (e *echoServer) echo(w http.ResponseWriter, r *http.Request) {
	e.log.printf("Echoing back request made to %s to client (%s)", r.RequestURI, r.RemoteAddr)
	if err := sleepFor(r, "delay"); err != nil {
		echoError(w, err)
		return
	}
	body, err := json.MarshalIndent(echoRequest{
		Path: r.RequestURI, Host: r.Host, Method: r.Method, Proto: r.Proto,
		Headers: r.Header, HTTPPort: e.httpPort,
		echoIdentity: e.id, TLS: tlsState(r.TLS),
	}, "", " ")
	if err != nil {
		echoError(w, err)
		return
	}
	// X-Echo-Set-Header: "Name: value, Other: value" becomes response
	// headers, spelled as given (the response header tests rely on it).
	for _, list := range r.Header["X-Echo-Set-Header"] {
		for kv := range strings.SplitSeq(list, ",") {
			name, value, _ := strings.Cut(strings.TrimSpace(kv), ":")
			if cur := w.Header()[name]; len(cur) > 0 {
				cur[0] += "," + strings.TrimSpace(value)
			} else {
				w.Header()[name] = []string{value}
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(body)
}

// sleepFor waits for the duration in query/form value key, if any.
func sleepFor(r *http.Request, key string) error {
	d := r.FormValue(key)
	if d == "" {
		return nil
	}
	dur, err := time.ParseDuration(d)
	if err != nil {
		return err
	}
	select {
	case <-time.After(dur):
		return nil
	case <-r.Context().Done():
		return r.Context().Err()
	}
}

func echoError(w http.ResponseWriter, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	body, _ := json.Marshal(map[string]string{"message": err.Error()})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write(body)
}

func tlsState(cs *tls.ConnectionState) *echoTLS {
	if cs == nil {
		return nil
	}
	st := &echoTLS{
		Version:            strings.Replace(tls.VersionName(cs.Version), "TLS 1.", "TLSv1.", 1),
		ServerName:         cs.ServerName,
		NegotiatedProtocol: cs.NegotiatedProtocol,
		CipherSuite:        tls.CipherSuiteName(cs.CipherSuite),
	}
	for _, c := range cs.PeerCertificates {
		st.PeerCertificates = append(st.PeerCertificates, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
	}
	return st
}

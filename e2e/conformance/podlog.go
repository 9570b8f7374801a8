package conformance

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
)

// podLog is one container's log as a kubelet keeps it: timestamped lines,
// optionally copied to a file for reading after the run.
type podLog struct {
	mu      sync.Mutex
	lines   []logLine
	partial []byte
	file    io.Writer
}

type logLine struct {
	at   time.Time
	text string
}

func newPodLog(file io.Writer) *podLog { return &podLog{file: file} }

func (l *podLog) printf(format string, args ...any) {
	_, _ = l.Write([]byte(fmt.Sprintf(format, args...) + "\n"))
}

// Write takes a process's output; complete lines become log lines.
func (l *podLog) Write(p []byte) (int, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file != nil {
		_, _ = l.file.Write(p)
	}
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, logLine{at: now, text: string(l.partial[:i])})
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

// since returns the lines logged at or after t (the kubelet's sinceTime
// has a granularity of one second; the caller truncates).
func (l *podLog) since(t time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, ln := range l.lines {
		if !ln.at.Before(t) {
			b.WriteString(ln.text)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// podLogPath is the API server's pods/log subresource, which it would
// proxy to the pod's kubelet.
var podLogPath = regexp.MustCompile(`^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$`)

// logTransport answers pods/log requests of the suite's clients from the
// harness's pods, as the kubelet behind the API server would (envtest has
// no kubelet, so the API server itself cannot); everything else goes to
// the API server.
type logTransport struct {
	next http.RoundTripper
	logs func(ns, pod string) (*podLog, bool)
}

func (t *logTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	m := podLogPath.FindStringSubmatch(r.URL.Path)
	if m == nil || r.Method != http.MethodGet {
		return t.next.RoundTrip(r)
	}
	answer := func(code int, body string) *http.Response {
		return &http.Response{
			StatusCode: code, Status: http.StatusText(code), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:  http.Header{"Content-Type": {"text/plain"}},
			Body:    io.NopCloser(strings.NewReader(body)),
			Request: r, ContentLength: int64(len(body)),
		}
	}
	l, ok := t.logs(m[1], m[2])
	if !ok {
		return answer(http.StatusNotFound, fmt.Sprintf("pod %s/%s has no running container", m[1], m[2])), nil
	}
	var since time.Time
	if s := r.URL.Query().Get("sinceTime"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return answer(http.StatusBadRequest, "sinceTime: "+err.Error()), nil
		}
		since = t
	}
	return answer(http.StatusOK, l.since(since)), nil
}

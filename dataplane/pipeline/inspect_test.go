package pipeline

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// FuzzInspectorSSE feeds an SSE stream cut at arbitrary points: without a
// rewrite the client must get the bytes unchanged; with one, every event
// must name the client's model and the usage of the final event is read.
func FuzzInspectorSSE(f *testing.F) {
	f.Add([]byte("data: {\"model\":\"t\",\"x\":1}\n\ndata: {\"model\":\"t\",\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n"), uint8(7))
	f.Add([]byte(": ping\n\ndata: {\"a\":\"\\n\\n\"}\n\n"), uint8(1))
	f.Add([]byte("data: {\"model\":\"t\",\"x\":1}\r\n\r\ndata: {\"model\":\"t\"}\r\n\r\n"), uint8(3))
	f.Fuzz(func(t *testing.T, stream []byte, cut uint8) {
		for _, restore := range []bool{false, true} {
			in := &inspector{restore: restore, target: "t", client: "client-model"}
			rec := httptest.NewRecorder()
			rec.Header().Set("Content-Type", "text/event-stream")
			in.begin(rec.Header(), 200)
			step := int(cut%32) + 1
			for i := 0; i < len(stream); i += step {
				if _, err := in.write(rec, stream[i:min(i+step, len(stream))]); err != nil {
					t.Fatal(err)
				}
			}
			if err := in.finish(rec); err != nil {
				t.Fatal(err)
			}
			got := rec.Body.Bytes()
			if !restore && !bytes.Equal(got, stream) {
				t.Fatalf("pass-through changed the stream:\n%q\n%q", stream, got)
			}
			if restore && bytes.Contains(stream, []byte(`{"model":"t"`)) && !strings.Contains(string(stream), "client-model") &&
				bytes.Count(got, []byte(`"model":"client-model"`)) < bytes.Count(stream, []byte("data: {\"model\":\"t\",\"x\":1}\n\n")) {
				t.Fatalf("model not restored: %q", got)
			}
		}
	})
}

func TestInspectorUsage(t *testing.T) {
	stream := "data: {\"model\":\"t\"}\n\ndata: {\"model\":\"t\",\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n"
	in := &inspector{}
	rec := httptest.NewRecorder()
	rec.Header().Set("Content-Type", "text/event-stream")
	in.begin(rec.Header(), 200)
	for i := 0; i < len(stream); i += 5 {
		in.write(rec, []byte(stream[i:min(i+5, len(stream))]))
	}
	in.finish(rec)
	if !in.found || in.usage.Input != 4 || in.usage.Output != 2 || rec.Body.String() != stream {
		t.Fatalf("usage %+v %v, body %q", in.usage, in.found, rec.Body)
	}
}

// refLastEventEnd and refSplitEvents are the plain definitions the fast
// scans must agree with.
func refLastEventEnd(b []byte) int {
	end := bytes.LastIndex(b, []byte("\n\n"))
	if end >= 0 {
		end += 2
	} else {
		end = 0
	}
	if crlf := bytes.LastIndex(b, []byte("\r\n\r\n")); crlf >= 0 && crlf+4 > end {
		end = crlf + 4
	}
	return end
}

func refSplitEvents(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := bytes.Index(b, []byte("\n\n"))
		n := 2
		if j := bytes.Index(b, []byte("\r\n\r\n")); j >= 0 && (i < 0 || j < i) {
			i, n = j, 4
		}
		if i < 0 {
			return append(out, b)
		}
		out = append(out, b[:i+n])
		b = b[i+n:]
	}
	return out
}

// FuzzEventBoundaries: the event scans find the same boundaries as the
// plain definitions, for LF, CRLF and mixed line ends.
func FuzzEventBoundaries(f *testing.F) {
	for _, s := range []string{"data: a\n\ndata: b\n\n", "data: a\r\n\r\ndata: b\r\n\r\n", "\n\n\n", "\r\n\r\n\n\n", "a\n\r\n\r\n", "\r\n\n", "x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := lastEventEnd(b), refLastEventEnd(b); got != want {
			t.Fatalf("%q: lastEventEnd %d, want %d", b, got, want)
		}
		var got [][]byte
		for ev := range splitEvents(b) {
			got = append(got, ev)
		}
		if want := refSplitEvents(b); !slices.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("%q: events %q, want %q", b, got, want)
		}
	})
}

// BenchmarkInspectorSSE passes a 200-event stream through the inspector in
// the chunks a proxy reads when events arrive faster than it forwards them
// (the whole stream at once), and one event per write.
func BenchmarkInspectorSSE(b *testing.B) {
	ev := `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"tok "}}]}` + "\n\n"
	stream := []byte(strings.Repeat(ev, 200) + `data: {"choices":[],"usage":{"prompt_tokens":256,"completion_tokens":200}}` + "\n\ndata: [DONE]\n\n")
	for _, chunk := range []int{len(stream), len(ev)} {
		b.Run(fmt.Sprintf("chunk-%d", chunk), func(b *testing.B) {
			b.SetBytes(int64(len(stream)))
			in := &inspector{}
			w := discardWriter{httptest.NewRecorder().Header()}
			for b.Loop() {
				in.reset()
				in.begin(http.Header{"Content-Type": {"text/event-stream"}}, 200)
				for i := 0; i < len(stream); i += chunk {
					in.write(w, stream[i:min(i+chunk, len(stream))])
				}
				in.finish(w)
				if !in.found {
					b.Fatal("usage not found")
				}
			}
		})
	}
}

type discardWriter struct{ h http.Header }

func (d discardWriter) Header() http.Header         { return d.h }
func (d discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d discardWriter) WriteHeader(int)             {}

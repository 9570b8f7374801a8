package server

import (
	"bytes"
	"net/http/httptest"
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

package openai_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/infergate/infergate/dataplane/openai"
)

func TestFindModel(t *testing.T) {
	for _, tc := range []struct {
		body string
		want string
		ok   bool
		err  bool
	}{
		{`{"model":"llama","messages":[{"role":"user","content":"hi \"model\": x"}]}`, "llama", true, false},
		{` {"messages":[{"model":"inner"}], "model" : "outer" } `, "outer", true, false},
		{`{"model":"a","model":"b"}`, "b", true, false},
		{`{"model":"a","model":null}`, "", false, false},
		{`{"mod\u0065l":"esc\"aped\u00e9"}`, "esc\"apedé", true, false},
		{`{"Model":"x"}`, "", false, false},
		{`{}`, "", false, false},
		{`{"stream":true,"n":1.5e3,"x":[1,{"y":"]"}]}`, "", false, false},
		{`[{"model":"x"}]`, "", false, true},
		{`{"model":"x"`, "", false, true},
		{`{"model":"x"} trailing`, "", false, true},
		{`{"model" "x"}`, "", false, true},
		{``, "", false, true},
	} {
		f, ok, err := openai.FindModel([]byte(tc.body))
		if (err != nil) != tc.err || ok != tc.ok || f.Name != tc.want {
			t.Errorf("%s: got (%q, %v, %v), want (%q, %v, err=%v)", tc.body, f.Name, ok, err, tc.want, tc.ok, tc.err)
		}
	}
}

func TestRewriteModel(t *testing.T) {
	body := []byte(`{"stream":true, "model" : "food-review", "messages":[]}`)
	f, ok, err := openai.FindModel(body)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	out := openai.RewriteModel(body, f, `food-review-"2"`)
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if v["model"] != `food-review-"2"` || v["stream"] != true {
		t.Fatalf("rewritten: %s", out)
	}
}

// FuzzModelFromBody checks the scanner against encoding/json on valid JSON
// and that it never panics (or reads out of range) on anything else.
func FuzzModelFromBody(f *testing.F) {
	for _, s := range []string{
		`{"model":"llama","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"a\\"b","x":{"model":"c"}}`,
		`{"model":1}`, `{"a":[[[]]],"model":"\u00e9"}`, `{"model":"x","model":"y"}`, `{`, `"`, `{"a":"\\`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fm, ok, err := openai.FindModel(body)
		if ok {
			if fm.Start < 0 || fm.End > len(body) || fm.Start >= fm.End || body[fm.Start] != '"' || body[fm.End-1] != '"' {
				t.Fatalf("bad span %d..%d of %q", fm.Start, fm.End, body)
			}
		}
		if !json.Valid(body) {
			return
		}
		var v any
		_ = json.Unmarshal(body, &v)
		obj, isObj := v.(map[string]any)
		if !isObj {
			if err == nil && ok {
				t.Fatalf("%q is not an object but model %q found", body, fm.Name)
			}
			return
		}
		if err != nil {
			t.Fatalf("%q: valid object rejected: %v", body, err)
		}
		want, wantOK := obj["model"].(string)
		if ok != wantOK || fm.Name != want {
			t.Fatalf("%q: got (%q, %v), encoding/json says (%q, %v)", body, fm.Name, ok, want, wantOK)
		}
		if ok {
			out := openai.RewriteModel(body, fm, "rewritten")
			var v2 map[string]any
			if err := json.Unmarshal(out, &v2); err != nil || v2["model"] != "rewritten" {
				t.Fatalf("rewrite of %q gave %q (%v)", body, out, err)
			}
		}
	})
}

func TestReadBody(t *testing.T) {
	payload := strings.Repeat("x", 100000)
	b, err := openai.ReadBody(iotest.OneByteReader(strings.NewReader(payload)), -1, 200000)
	if err != nil || string(b.Bytes()) != payload {
		t.Fatalf("read: %v", err)
	}
	got, _ := io.ReadAll(b)
	if string(got) != payload {
		t.Fatal("read back differs")
	}
	b.Close()
	if _, err := b.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after close must fail")
	}
	b.Close() // idempotent
	if _, err := openai.ReadBody(strings.NewReader(payload), -1, 1000); err != openai.ErrTooLarge {
		t.Fatalf("unknown length over limit: %v", err)
	}
	if _, err := openai.ReadBody(strings.NewReader(payload), 100000, 1000); err != openai.ErrTooLarge {
		t.Fatalf("declared length over limit: %v", err)
	}
	b, err = openai.ReadBody(strings.NewReader("{}"), 2, 2)
	if err != nil || string(b.Bytes()) != "{}" {
		t.Fatalf("exactly at limit: %v", err)
	}
	var buf bytes.Buffer
	if _, err := b.WriteTo(&buf); err != nil || buf.String() != "{}" {
		t.Fatalf("WriteTo: %v %q", err, buf.String())
	}
}

func TestWriteError(t *testing.T) {
	rec := httptest.NewRecorder()
	openai.WriteError(rec, 404, openai.TypeInvalidRequest, "route_not_found", `no "route"`)
	var v struct {
		Error openai.Error `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if rec.Code != 404 || rec.Header().Get("Content-Type") != "application/json" || v.Error.Code != "route_not_found" || v.Error.Message != `no "route"` || v.Error.Type != "invalid_request_error" {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

func BenchmarkFindModel(b *testing.B) {
	msg := strings.Repeat("lorem ipsum dolor sit amet, \\\"quoted\\\" ", 5000)
	body := []byte(`{"messages":[{"role":"system","content":"` + msg + `"},{"role":"user","content":"hi"}],"model":"llama","stream":true}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := openai.FindModel(body); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// TestBodyRewriteModel: the body rewritten in place holds what RewriteModel
// returns, for a longer and then a shorter name, and reads from the start.
func TestBodyRewriteModel(t *testing.T) {
	orig := []byte(`{"stream":true, "model" : "food-review", "messages":[{"role":"user","content":"hi"}]}`)
	b, err := openai.ReadBody(bytes.NewReader(orig), int64(len(orig)), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Read(make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	f, ok, err := openai.FindModel(orig)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	want := orig
	for _, name := range []string{`food-review-"lora"-long`, "m"} {
		want = openai.RewriteModel(want, f, name)
		f = b.RewriteModel(f, name)
		if !bytes.Equal(b.Bytes(), want) {
			t.Fatalf("%q: body %s, want %s", name, b.Bytes(), want)
		}
		if got, ok, err := openai.FindModel(want); err != nil || !ok || got != f {
			t.Fatalf("%q: field %+v, FindModel says %+v (%v, %v)", name, f, got, ok, err)
		}
		if all, err := io.ReadAll(b); err != nil || !bytes.Equal(all, want) {
			t.Fatalf("%q: read %s, %v", name, all, err)
		}
	}
}

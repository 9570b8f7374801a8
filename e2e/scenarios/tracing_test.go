package scenarios

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/infergate/infergate/e2e/harness"
	"github.com/infergate/infergate/proto/tracing"
)

// TestTracing: the control plane and a proxy export OTLP to an in-process
// receiver. A streamed chat completion sent with the client's traceparent
// yields one trace: the proxy's request span continuing the client's, with
// body read, route match, pick and upstream attempt children carrying the
// pool, candidates, endpoint, status, time to first token and token counts;
// the control plane's translation trace holds the gateway's snapshot push
// and its delivery to this proxy, ended by the proxy's ACK.
func TestTracing(t *testing.T) {
	rx := harness.StartOTLPReceiver(t)
	// Export every 100 ms instead of every 5 s.
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	flags := []string{"--tracing-endpoint", "http://" + rx.Addr}
	const node = "traced-proxy"
	s := startSpineWith(t, spineOptions{timeScale: "0.1", cpArgs: flags,
		proxyArgs: append([]string{"--node-id", node}, flags...)})

	const traceID = "0af7651916cd43dd8448eb211c80319c"
	body := `{"model":"` + model + `","stream":true,"stream_options":{"include_usage":true},"max_tokens":6,` +
		`"messages":[{"role":"user","content":"` + distinctPrompt("Trace me.") + `"}]}`
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", s.gatewayPort), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Traceparent", "00-"+traceID+"-b7ad6b7169203331-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	events := 0
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
		if strings.HasPrefix(sc.Text(), "data: ") {
			events++
		}
	}
	resp.Body.Close()
	served := resp.Header.Get(servedHeader)
	if resp.StatusCode != 200 || events < 2 || served == "" {
		t.Fatalf("status %d, %d events, served by %q", resp.StatusCode, events, served)
	}

	inTrace := func(sp harness.Span) bool { return sp.TraceID == traceID }
	var spans []harness.Span
	harness.Eventually(t, syncTimeout, func() error {
		spans = rx.Spans(inTrace)
		for _, name := range []string{"POST /v1/chat/completions", tracing.SpanReadBody, tracing.SpanRoute, tracing.SpanPick, tracing.SpanAttempt} {
			if !hasSpan(spans, name) {
				return fmt.Errorf("no %q span yet among %d", name, len(spans))
			}
		}
		return nil
	})
	t.Logf("request trace:\n%s", harness.Tree(spans))
	root := spanNamed(spans, "POST /v1/chat/completions")
	if root.ParentID != "b7ad6b7169203331" || root.Service != "infergate-proxy" {
		t.Errorf("request span: parent %s service %s, want the client's span and infergate-proxy", root.ParentID, root.Service)
	}
	want := map[string]string{
		"http.request.method":        "POST",
		"http.response.status_code":  "200",
		"gen_ai.operation.name":      "chat",
		"gen_ai.request.model":       model,
		"gen_ai.request.stream":      "true",
		"gen_ai.usage.output_tokens": "6",
		tracing.AttrBackend:          "default/pool",
		tracing.AttrRoute:            "default/gw/default/chat/0",
	}
	for k, v := range want {
		if root.Attrs[k] != v {
			t.Errorf("request span %s = %q, want %q", k, root.Attrs[k], v)
		}
	}
	if n, err := strconv.Atoi(root.Attrs["gen_ai.usage.input_tokens"]); err != nil || n <= 0 {
		t.Errorf("request span input tokens %q", root.Attrs["gen_ai.usage.input_tokens"])
	}
	if ttft, err := strconv.ParseFloat(root.Attrs["gen_ai.response.time_to_first_chunk"], 64); err != nil || ttft <= 0 {
		t.Errorf("request span time to first chunk %q", root.Attrs["gen_ai.response.time_to_first_chunk"])
	}
	for _, sp := range spans {
		if sp.SpanID != root.SpanID && sp.ParentID != root.SpanID {
			t.Errorf("span %q is not a child of the request span", sp.Name)
		}
	}
	pick := spanNamed(spans, tracing.SpanPick)
	if pick.Attrs[tracing.AttrCandidates] != "3" || pick.Attrs[tracing.AttrEndpoint] != served {
		t.Errorf("pick span: candidates %q endpoint %q, want 3 and %s", pick.Attrs[tracing.AttrCandidates], pick.Attrs[tracing.AttrEndpoint], served)
	}
	// The default profile (the cost model) explains the traced pick: the
	// request's estimates, the chosen endpoint's cost and cached prefix,
	// and every candidate's inputs and terms as an event.
	if n, err := strconv.ParseFloat(pick.Attrs[tracing.AttrOutputTokens], 64); err != nil || n != 6 {
		t.Errorf("pick span output tokens %q, want max_tokens 6", pick.Attrs[tracing.AttrOutputTokens])
	}
	for _, key := range []string{tracing.AttrPromptTokens, tracing.AttrCost} {
		if v, err := strconv.ParseFloat(pick.Attrs[key], 64); err != nil || v <= 0 {
			t.Errorf("pick span %s = %q", key, pick.Attrs[key])
		}
	}
	if _, ok := pick.Attrs[tracing.AttrCachedTokens]; !ok {
		t.Errorf("pick span lacks %s", tracing.AttrCachedTokens)
	}
	chosen := 0
	for _, ev := range pick.Events {
		if ev.Name != tracing.EventCandidate {
			t.Errorf("pick event %q", ev.Name)
			continue
		}
		for _, term := range []string{"prefill", "decode", "cost"} {
			if v, err := strconv.ParseFloat(ev.Attrs[term], 64); err != nil || v <= 0 {
				t.Errorf("candidate %s: %s = %q", ev.Attrs[tracing.AttrEndpoint], term, ev.Attrs[term])
			}
		}
		if ev.Attrs["chosen"] == "true" {
			chosen++
			if ev.Attrs[tracing.AttrEndpoint] != served || ev.Attrs["cost"] != pick.Attrs[tracing.AttrCost] {
				t.Errorf("chosen candidate %v, served by %s at cost %s", ev.Attrs, served, pick.Attrs[tracing.AttrCost])
			}
		}
	}
	if len(pick.Events) != 3 || chosen != 1 {
		t.Errorf("pick span: %d candidate events, %d chosen; want 3 and 1", len(pick.Events), chosen)
	}
	attempt := spanNamed(spans, tracing.SpanAttempt)
	if attempt.Attrs[tracing.AttrEndpoint] != served || attempt.Attrs["http.response.status_code"] != "200" ||
		attempt.Attrs[tracing.AttrAttempt] != "1" || attempt.Kind.String() != "SPAN_KIND_CLIENT" {
		t.Errorf("attempt span: %+v", attempt)
	}
	if !(attempt.StartNs >= pick.EndNs && attempt.EndNs <= root.EndNs) {
		t.Errorf("attempt span [%d,%d] not after the pick (%d) within the request (%d)", attempt.StartNs, attempt.EndNs, pick.EndNs, root.EndNs)
	}

	// The control plane: a translation whose push of default/gw was
	// delivered to this proxy and ACKed.
	var cp []harness.Span
	harness.Eventually(t, syncTimeout, func() error {
		cp = rx.Spans(func(sp harness.Span) bool { return sp.Service == "infergate-controlplane" })
		for _, d := range cp {
			if d.Name == tracing.SpanDeliver && d.Attrs[tracing.AttrNode] == node && !d.StatusError {
				return nil
			}
		}
		return fmt.Errorf("no ACKed delivery to %s among %d control-plane spans", node, len(cp))
	})
	var trace []harness.Span
	for _, d := range cp {
		if d.Name != tracing.SpanDeliver || d.Attrs[tracing.AttrNode] != node || d.Attrs[tracing.AttrTypeURL] != "type.googleapis.com/infergate.snapshot.v1.Manifest" {
			continue
		}
		trace = rx.Spans(func(sp harness.Span) bool { return sp.TraceID == d.TraceID })
		push := spanByID(trace, d.ParentID)
		if push.Name != tracing.SpanPush || push.Attrs[tracing.AttrGateway] != gatewayName || push.Attrs[tracing.AttrVersion] != d.Attrs[tracing.AttrVersion] {
			t.Errorf("delivery %+v: parent %+v is not the push of its version", d, push)
		}
		translation := spanByID(trace, push.ParentID)
		if translation.Name != tracing.SpanTranslation || !hasSpan(trace, tracing.SpanTranslate) || !hasSpan(trace, tracing.SpanBuild) {
			t.Errorf("push %+v is not in a translation trace with translate and build spans", push)
		}
		break
	}
	if trace == nil {
		t.Fatalf("no Manifest delivery to %s:\n%s", node, harness.Tree(cp))
	}
	t.Logf("control-plane trace:\n%s", harness.Tree(trace))
}

func hasSpan(spans []harness.Span, name string) bool {
	return spanNamed(spans, name).Name != ""
}

func spanNamed(spans []harness.Span, name string) harness.Span {
	for _, s := range spans {
		if s.Name == name {
			return s
		}
	}
	return harness.Span{}
}

func spanByID(spans []harness.Span, id string) harness.Span {
	for _, s := range spans {
		if s.SpanID == id {
			return s
		}
	}
	return harness.Span{}
}

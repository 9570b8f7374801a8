package scenarios

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/infergate/infergate/e2e/harness"
	"github.com/infergate/infergate/proto/kvevents"
	"github.com/infergate/infergate/proto/tokenizer/cl100k"
)

// kvPoolYAML is a pool whose profile turns KV events on, with the
// tokenizer {{.Tokenizer}}; its pods publish on {{.EventsPort}} with replay
// on {{.ReplayPort}}.
const kvPoolYAML = gatewayYAML + `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: chat, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: pool
  namespace: default
  annotations:
    infergate.dev/picker-profile: |
      scorers: [{name: queue, weight: 2}, {name: kv-cache, weight: 2}, {name: prefix-cache, weight: 3}]
      kvEvents: {port: {{.EventsPort}}, replayPort: {{.ReplayPort}}, tokenizer: {{.Tokenizer}}}
spec:
  selector: {matchLabels: {app: sim}}
  targetPorts: [{number: {{.PodPort}}}]
`

const kvPool = "default/gw/inferencepool/default/pool"

// kvFleet is a control plane, simulated servers publishing KV events and
// the proxies started so far.
type kvFleet struct {
	dir                              string
	ips                              []string
	podPort, eventsPort, gatewayPort int
	xdsAddr                          string
	admins                           []string
	clients                          []openai.Client
}

// startKVFleet starts the fleet; with realTokenizer the servers tokenize
// with a real BPE (modelsim --tokenizer cl100k) and the proxies load the
// same vocabulary from a tokenizer.json (the pool's tokenizer.path), so
// events, index and matching all run on real token ids; without it both
// use modelsim's 4-byte tokens.
func startKVFleet(t *testing.T, proxies int, realTokenizer bool) *kvFleet {
	t.Helper()
	tokenizer, simArgs := "{builtin: bytes}", []string{}
	if realTokenizer {
		path := filepath.Join(t.TempDir(), "tokenizer.json")
		tokenizer, simArgs = fmt.Sprintf("{path: %q}", path), []string{"--tokenizer", cl100k.Name, "--write-tokenizer-json", path}
	}
	f := &kvFleet{dir: t.TempDir(), ips: []string{"127.0.0.41", "127.0.0.42", "127.0.0.43"}}
	f.podPort = harness.FreePortOn(t, f.ips...)
	f.eventsPort = harness.FreePortOn(t, f.ips...)
	replayPort := harness.FreePortOn(t, f.ips...)
	for replayPort == f.eventsPort || replayPort == f.podPort || f.eventsPort == f.podPort {
		f.eventsPort, replayPort = harness.FreePortOn(t, f.ips...), harness.FreePortOn(t, f.ips...)
	}
	f.gatewayPort = harness.FreePort(t, "127.0.0.1")
	f.xdsAddr = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	writeFile(t, f.dir, "fleet.yaml", render(t, kvPoolYAML, map[string]any{"Tokenizer": tokenizer,
		"GatewayPort": f.gatewayPort, "PodPort": f.podPort, "EventsPort": f.eventsPort, "ReplayPort": replayPort}))
	listen := make([]string, len(f.ips))
	for i, ip := range f.ips {
		writePod(t, f.dir, i, ip)
		listen[i] = fmt.Sprintf("%s:%d", ip, f.podPort)
	}
	cfg := fmt.Sprintf(`{"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:%d","replay_endpoint":"tcp://*:%d"}`, f.eventsPort, replayPort)
	harness.Start(t, "modelsim", bins.Path("modelsim"), append([]string{"--listen", strings.Join(listen, ","), "--model", model, "--time-scale", "0.1", "--kv-events-config", cfg}, simArgs...)...)
	for _, l := range listen {
		harness.WaitHTTP(context.Background(), t, "http://"+l+"/health", syncTimeout)
	}
	harness.Start(t, "controlplane", bins.Path("controlplane"), "--config-dir", f.dir, "--xds-address", f.xdsAddr,
		"--admin-address", fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1")))
	f.addProxies(t, proxies)
	return f
}

// addProxies starts n more proxies of the gateway, on 127.0.0.1, .2, ….
func (f *kvFleet) addProxies(t *testing.T, n int) {
	t.Helper()
	for range n {
		i := len(f.admins)
		host := fmt.Sprintf("127.0.0.%d", i+1)
		admin := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
		harness.Start(t, fmt.Sprintf("proxy-%d", i), bins.Path("proxy"), "--xds-address", f.xdsAddr, "--gateway", gatewayName,
			"--node-id", fmt.Sprintf("proxy-%d", i), "--listen-address", host, "--admin-address", admin)
		f.admins = append(f.admins, admin)
		f.clients = append(f.clients, openai.NewClient(option.WithBaseURL(fmt.Sprintf("http://%s:%d/v1", host, f.gatewayPort)),
			option.WithAPIKey("unused"), option.WithMaxRetries(0), option.WithRequestTimeout(requestTimeout)))
	}
	for _, a := range f.admins {
		harness.WaitHTTP(context.Background(), t, "http://"+a+"/ready", syncTimeout)
	}
	// Every proxy follows the index: the pool is attached with its servers.
	harness.Eventually(t, syncTimeout, func() error {
		for _, a := range f.admins {
			body, err := httpGet(context.Background(), "http://"+a+"/kv-index")
			if err != nil {
				return err
			}
			var st struct {
				Pools map[string]struct {
					Attached bool
					Servers  []struct{ Endpoint string }
				}
			}
			if err := json.Unmarshal([]byte(body), &st); err != nil {
				return err
			}
			if p := st.Pools[kvPool]; !p.Attached || len(p.Servers) != len(f.ips) {
				return fmt.Errorf("proxy %s: kv index %s", a, body)
			}
		}
		return nil
	})
}

func kvMessages(prompt string) []openai.ChatCompletionMessageParamUnion {
	return []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(prompt), openai.UserMessage("Summarise it.")}
}

// chatVia sends prompt through a proxy and returns the server's address.
func (f *kvFleet) chatVia(t *testing.T, proxy int, prompt string) string {
	t.Helper()
	var resp *http.Response
	_, err := f.clients[proxy].Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: model, Messages: kvMessages(prompt), MaxTokens: openai.Int(2),
	}, option.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	return hostOf(resp.Header.Get(servedHeader))
}

// chatDirect sends prompt straight to one server, as another gateway or a
// client bypassing this one would, so only its KV events tell the proxies.
func (f *kvFleet) chatDirect(t *testing.T, ip, prompt string) {
	t.Helper()
	c := openai.NewClient(option.WithBaseURL(fmt.Sprintf("http://%s:%d/v1", ip, f.podPort)), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	if _, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: model, Messages: kvMessages(prompt), MaxTokens: openai.Int(2),
	}); err != nil {
		t.Fatal(err)
	}
}

// heldBlocks asks a proxy how many blocks of prompt each server holds.
func (f *kvFleet) heldBlocks(t *testing.T, proxy int, prompt string) (map[string]int, int) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "system", "content": prompt}, {"role": "user", "content": "Summarise it."}}})
	resp, err := http.Post("http://"+f.admins[proxy]+"/kv-index/match?pool="+kvPool, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m struct {
		PromptBlocks int            `json:"promptBlocks"`
		Servers      map[string]int `json:"servers"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("match: %v: %s", err, raw)
	}
	out := map[string]int{}
	for ep, n := range m.Servers {
		out[hostOf(ep)] = n
	}
	return out, m.PromptBlocks
}

// waitHeld waits until proxy's index says ip holds all of prompt's blocks
// (want true) or none of them (want false).
func (f *kvFleet) waitHeld(t *testing.T, proxy int, ip, prompt string, want bool) {
	t.Helper()
	harness.Eventually(t, syncTimeout, func() error {
		held, n := f.heldBlocks(t, proxy, prompt)
		if got := held[ip]; (want && got != n) || (!want && got != 0) || n == 0 {
			return fmt.Errorf("proxy %d: %s holds %d of %d blocks (want all: %v); index: %v", proxy, ip, got, n, want, held)
		}
		return nil
	})
}

func longPrompt(topic string) string {
	return distinctPrompt(strings.Repeat("Background on "+topic+" for the assistant to keep in mind. ", 30))
}

// TestPreciseRoutingFromKVEvents: two proxies, three simulated servers
// publishing KV events in real token ids (a BPE the servers run and the
// proxies load from a tokenizer.json), the control plane subscribed to
// them. A prompt
// sent through proxy A is routed by proxy B to the server that cached it;
// prompts cached on servers no proxy chose (sent to them directly) are
// routed there too — only the events can tell; after the server drops its
// cache, B no longer prefers it and follows the prompt to where it is
// cached now.
func TestPreciseRoutingFromKVEvents(t *testing.T) {
	f := startKVFleet(t, 2, true)

	p := longPrompt("the first topic")
	x := f.chatVia(t, 0, p)
	f.waitHeld(t, 1, x, p, true)
	// The blocks are the BPE's: the proxy's chain has as many full blocks
	// as the servers' tokenizer gives the rendered conversation.
	enc, err := cl100k.NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	text := kvevents.AppendLlama3Begin(nil)
	text = kvevents.AppendLlama3Message(text, "system", p)
	text = kvevents.AppendLlama3Message(text, "user", "Summarise it.")
	tokens := enc.Encode(nil, kvevents.AppendLlama3End(text), false)
	if _, n := f.heldBlocks(t, 1, p); n != len(tokens)/16 || n == len(text)/64 {
		t.Fatalf("the proxy's chain has %d blocks; the BPE gives %d tokens (%d blocks), 4-byte tokens would give %d", n, len(tokens), len(tokens)/16, len(text)/64)
	}
	if got := f.chatVia(t, 1, p); got != x {
		t.Fatalf("proxy B sent the prompt A had sent to %s to %s", x, got)
	}

	// Prompts cached on each server in turn, behind the proxies' backs:
	// proxies without the events would place them by their own hashing
	// (right for one in three).
	for i := range 6 {
		ip := f.ips[i%len(f.ips)]
		q := longPrompt(fmt.Sprintf("topic %d", i))
		f.chatDirect(t, ip, q)
		f.waitHeld(t, 1, ip, q, true)
		if got := f.chatVia(t, 1, q); got != ip {
			t.Fatalf("prompt %d cached on %s went to %s", i, ip, got)
		}
	}

	// x drops its prefix cache (vLLM's /reset_prefix_cache: AllBlocksCleared).
	resp, err := http.Post(fmt.Sprintf("http://%s:%d/reset_prefix_cache", x, f.podPort), "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	f.waitHeld(t, 1, x, p, false)
	// The prompt is cached elsewhere now: B follows it there.
	y := f.ips[0]
	if y == x {
		y = f.ips[1]
	}
	f.chatDirect(t, y, p)
	f.waitHeld(t, 1, y, p, true)
	if got := f.chatVia(t, 1, p); got != y {
		t.Fatalf("after %s dropped its cache and %s cached the prompt, B sent it to %s", x, y, got)
	}

	out, code := infergatectl(t, "kv-events", "--server", f.xdsAddr)
	if code != 0 || strings.Count(out, kvPool) != len(f.ips) || strings.Contains(out, "false") {
		t.Fatalf("kv-events (exit %d):\n%s", code, out)
	}
	out, code = infergatectl(t, "kv-match", "--proxy", f.admins[1], "--pool", kvPool, "--body", writeBody(t, p))
	if code != 0 || !strings.Contains(out, y) {
		t.Fatalf("kv-match (exit %d):\n%s", code, out)
	}
	t.Logf("infergatectl kv-match:\n%s", out)
}

func writeBody(t *testing.T, prompt string) string {
	body, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "system", "content": prompt}, {"role": "user", "content": "Summarise it."}}})
	path := t.TempDir() + "/body.json"
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestKVEventLoadIndependentOfProxyCount: each server's event publisher has
// one subscriber — the control plane — with 1 proxy and with 16, all of
// which follow the index. Counted as established TCP connections to each
// server's events port (/proc/net/tcp).
func TestKVEventLoadIndependentOfProxyCount(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("needs /proc/net/tcp")
	}
	f := startKVFleet(t, 1, false)
	count := func() []int {
		var out []int
		for _, ip := range f.ips {
			out = append(out, establishedTo(t, ip, f.eventsPort))
		}
		return out
	}
	one := count()
	f.addProxies(t, 15)
	sixteen := count()
	t.Logf("subscribers per server's event socket: %v with 1 proxy, %v with 16", one, sixteen)
	for i := range f.ips {
		if one[i] != 1 || sixteen[i] != 1 {
			t.Fatalf("server %s: %d subscribers with 1 proxy, %d with 16; want 1 and 1", f.ips[i], one[i], sixteen[i])
		}
	}
}

// establishedTo counts established TCP connections whose local end is
// ip:port, from /proc/net/tcp (addresses in little-endian hex).
func establishedTo(t *testing.T, ip string, port int) int {
	t.Helper()
	fh, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	a := netip.MustParseAddr(ip).As4()
	want := strings.ToUpper(hex.EncodeToString(binary.LittleEndian.AppendUint32(nil, binary.BigEndian.Uint32(a[:])))) + ":" + fmt.Sprintf("%04X", port)
	n := 0
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 3 && fields[1] == want && fields[3] == "01" {
			n++
		}
	}
	return n
}

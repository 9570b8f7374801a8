package scenarios

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/infergate/infergate/e2e/harness"
)

const (
	model          = "meta-llama/Llama-3.1-8B-Instruct"
	servedHeader   = "x-gateway-destination-endpoint-served"
	syncTimeout    = 15 * time.Second
	gatewayName    = "default/gw"
	requestTimeout = 20 * time.Second
)

type spine struct {
	dir         string
	xdsAddr     string
	cpAdminAddr string
	adminAddr   string
	gatewayPort int
	podIPs      []string
	podPort     int
	cp          *harness.Process
	proxy       *harness.Process
	client      openai.Client
	// cpArgs are extra control-plane flags (kept for restarts).
	cpArgs []string
}

// spineOptions vary the spine: the simulator's time scale and extra flags
// for the control plane and the proxy.
type spineOptions struct {
	timeScale         string
	cpArgs, proxyArgs []string
}

// startSpine writes the YAML, starts three simulated pods, the control plane
// on the YAML directory and one proxy, and waits until the proxy is ready.
func startSpine(t *testing.T) *spine {
	return startSpineScaled(t, "0.1")
}

// startSpineScaled is startSpine with the simulator's time scale (1 = real
// time, 0.1 = ten times faster).
func startSpineScaled(t *testing.T, timeScale string) *spine {
	t.Helper()
	return startSpineWith(t, spineOptions{timeScale: timeScale})
}

func startSpineWith(t *testing.T, o spineOptions) *spine {
	t.Helper()
	s := &spine{
		dir:    t.TempDir(),
		podIPs: []string{"127.0.0.21", "127.0.0.22", "127.0.0.23"},
		cpArgs: o.cpArgs,
	}
	timeScale := o.timeScale
	s.podPort = harness.FreePortOn(t, s.podIPs...)
	s.gatewayPort = harness.FreePort(t, "127.0.0.1")
	s.xdsAddr = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	s.adminAddr = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	s.cpAdminAddr = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))

	writeFile(t, s.dir, "fleet.yaml", render(t, fleetYAML, map[string]int{"GatewayPort": s.gatewayPort, "PodPort": s.podPort}))
	listen := make([]string, len(s.podIPs))
	for i, ip := range s.podIPs {
		writePod(t, s.dir, i, ip)
		listen[i] = fmt.Sprintf("%s:%d", ip, s.podPort)
	}
	sim := harness.Start(t, "modelsim", bins.Path("modelsim"), "--listen", strings.Join(listen, ","), "--model", model, "--time-scale", timeScale)
	for _, l := range listen {
		harness.WaitHTTP(context.Background(), t, "http://"+l+"/health", syncTimeout)
	}
	_ = sim
	s.startControlPlane(t)
	s.proxy = harness.Start(t, "proxy", bins.Path("proxy"), append([]string{
		"--xds-address", s.xdsAddr, "--gateway", gatewayName,
		"--listen-address", "127.0.0.1", "--admin-address", s.adminAddr}, o.proxyArgs...)...)
	harness.WaitHTTP(context.Background(), t, "http://"+s.adminAddr+"/ready", syncTimeout)
	s.client = openai.NewClient(
		option.WithBaseURL(fmt.Sprintf("http://127.0.0.1:%d/v1", s.gatewayPort)),
		option.WithAPIKey("unused"),
		option.WithMaxRetries(0),
		option.WithRequestTimeout(requestTimeout),
	)
	return s
}

func (s *spine) startControlPlane(t *testing.T) {
	s.cp = harness.Start(t, "controlplane", bins.Path("controlplane"), append([]string{
		"--config-dir", s.dir, "--xds-address", s.xdsAddr, "--admin-address", s.cpAdminAddr}, s.cpArgs...)...)
}

// chat sends one non-streaming chat completion and returns the endpoint that
// served it.
func (s *spine) chat(ctx context.Context) (string, error) {
	var resp *http.Response
	c, err := s.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:     model,
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage(distinctPrompt("Say hello in three words."))},
		MaxTokens: openai.Int(8),
	}, option.WithResponseInto(&resp))
	if err != nil {
		return "", err
	}
	if len(c.Choices) == 0 || c.Choices[0].Message.Content == "" {
		return "", fmt.Errorf("empty completion %+v", c)
	}
	served := resp.Header.Get(servedHeader)
	if served == "" {
		return "", fmt.Errorf("response lacks %s", servedHeader)
	}
	return served, nil
}

func TestSpine(t *testing.T) {
	s := startSpine(t)
	ctx := context.Background()

	t.Run("non-streaming chat names the pod that served it", func(t *testing.T) {
		seen := map[string]bool{}
		for i := 0; i < 12; i++ {
			served, err := s.chat(ctx)
			if err != nil {
				t.Fatal(err)
			}
			seen[hostOf(served)] = true
		}
		for h := range seen {
			if !contains(s.podIPs, h) {
				t.Fatalf("served by %s, not one of the pods %v", h, s.podIPs)
			}
		}
	})

	t.Run("one long prompt keeps going to the replica that cached it", func(t *testing.T) {
		// 4,000 characters ≈ 62 full KV blocks: the prefix-cache scorer
		// sends every repeat to the same pod while the queues are level.
		prompt := strings.Repeat("You are a careful assistant for the infergate docs. ", 80)
		first := ""
		for i := 0; i < 8; i++ {
			var resp *http.Response
			_, err := s.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
				Model:     model,
				Messages:  []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(prompt), openai.UserMessage("Question?")},
				MaxTokens: openai.Int(4),
			}, option.WithResponseInto(&resp))
			if err != nil {
				t.Fatal(err)
			}
			served := resp.Header.Get(servedHeader)
			if first == "" {
				first = served
			} else if served != first {
				t.Fatalf("request %d served by %s, the prefix lives on %s", i, served, first)
			}
		}
	})

	t.Run("streaming chat arrives in chunks with usage", func(t *testing.T) {
		stream := s.client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model:         model,
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Count to ten.")},
			MaxTokens:     openai.Int(20),
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		var acc openai.ChatCompletionAccumulator
		chunks := 0
		for stream.Next() {
			acc.AddChunk(stream.Current())
			chunks++
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if chunks < 5 {
			t.Fatalf("got %d chunks, want one per token", chunks)
		}
		if acc.Usage.CompletionTokens != 20 || acc.Choices[0].Message.Content == "" {
			t.Fatalf("usage %+v content %q", acc.Usage, acc.Choices[0].Message.Content)
		}
	})

	t.Run("control plane reports the connected proxy in its metrics", func(t *testing.T) {
		harness.WaitHTTP(ctx, t, "http://"+s.cpAdminAddr+"/readyz", syncTimeout)
		// A loopback admin port also serves profiles.
		harness.WaitHTTP(ctx, t, "http://"+s.cpAdminAddr+"/debug/pprof/cmdline", syncTimeout)
		harness.Eventually(t, syncTimeout, func() error {
			body, err := httpGet(ctx, "http://"+s.cpAdminAddr+"/metrics")
			if err != nil {
				return err
			}
			for _, want := range []string{"infergate_controlplane_connected_proxies 1", "infergate_controlplane_change_to_ack_seconds_count", `infergate_controlplane_gateway_resources{gateway="default/gw"}`} {
				if !strings.Contains(body, want) {
					return fmt.Errorf("control-plane /metrics lacks %q", want)
				}
			}
			return nil
		})
	})

	t.Run("adding a route in YAML is applied", func(t *testing.T) {
		_, err := s.client.Completions.New(ctx, openai.CompletionNewParams{
			Model: openai.CompletionNewParamsModel(model), Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("hi")},
		})
		if !isStatus(err, http.StatusNotFound) {
			t.Fatalf("before the route exists: got %v, want 404", err)
		}
		writeFile(t, s.dir, "completions.yaml", []byte(completionsRouteYAML))
		harness.Eventually(t, syncTimeout, func() error {
			_, err := s.client.Completions.New(ctx, openai.CompletionNewParams{
				Model: openai.CompletionNewParamsModel(model), Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("hi")},
				MaxTokens: openai.Int(4),
			})
			return err
		})
	})

	t.Run("removing a pod in YAML takes it out of rotation", func(t *testing.T) {
		removeFile(t, s.dir, podFile(2))
		gone := s.podIPs[2]
		harness.Eventually(t, syncTimeout, func() error {
			for i := 0; i < 15; i++ {
				served, err := s.chat(ctx)
				if err != nil {
					return err
				}
				if hostOf(served) == gone {
					return fmt.Errorf("still served by removed pod %s", gone)
				}
			}
			return nil
		})
	})

	t.Run("control plane killed while requests flow: no failed request, resync on restart", func(t *testing.T) {
		load := harness.StartLoad(ctx, 4, func(int) error { _, err := s.chat(ctx); return err })
		time.Sleep(300 * time.Millisecond)
		s.cp.Kill()
		before := load.OK()
		time.Sleep(1500 * time.Millisecond)
		if load.OK() == before {
			t.Errorf("no request completed while the control plane was down")
		}
		// Restart and change the world: the proxy must pick it up again.
		s.startControlPlane(t)
		writePod(t, s.dir, 2, s.podIPs[2])
		harness.Eventually(t, syncTimeout, func() error {
			for i := 0; i < 30; i++ {
				served, err := s.chat(ctx)
				if err != nil {
					return err
				}
				if hostOf(served) == s.podIPs[2] {
					return nil
				}
			}
			return fmt.Errorf("re-added pod %s not used after control-plane restart", s.podIPs[2])
		})
		ok, failed, firstErr := load.Stop()
		if failed > 0 {
			t.Fatalf("%d of %d requests failed during the control-plane outage; first: %v", failed, failed+ok, firstErr)
		}
		t.Logf("%d requests succeeded across the outage, none failed", ok)
	})
}

func httpGet(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func isStatus(err error, code int) bool {
	var apiErr *openai.Error
	return errors.As(err, &apiErr) && apiErr.StatusCode == code
}

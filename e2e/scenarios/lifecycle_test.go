package scenarios

import (
	"context"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/infergate/infergate/e2e/harness"
)

// TestProxyDrainsOnSIGTERM: SIGTERM while 50 streams are in flight — every
// stream completes, readiness fails, new connections are refused, the proxy
// exits cleanly.
func TestProxyDrainsOnSIGTERM(t *testing.T) {
	// Real time: 64 tokens at ≥ 12 ms each keep every stream open for
	// ~1 s or more, long enough to signal in the middle.
	s := startSpineScaled(t, "1")
	ctx := context.Background()
	const streams, tokens = 50, 64

	var started, wg sync.WaitGroup
	errs := make(chan error, streams)
	started.Add(streams)
	wg.Add(streams)
	for i := 0; i < streams; i++ {
		go func(i int) {
			defer wg.Done()
			stream := s.client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
				Model:         model,
				Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage(fmt.Sprintf("stream %d: tell a long story", i))},
				MaxTokens:     openai.Int(tokens),
				StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
			})
			first := true
			var usage int64
			for stream.Next() {
				if first {
					started.Done()
					first = false
				}
				if u := stream.Current().Usage.CompletionTokens; u > 0 {
					usage = u
				}
			}
			if first {
				started.Done()
			}
			if err := stream.Err(); err != nil {
				errs <- fmt.Errorf("stream %d: %w", i, err)
				return
			}
			if usage != tokens {
				errs <- fmt.Errorf("stream %d ended after %d of %d tokens", i, usage, tokens)
			}
		}(i)
	}
	started.Wait()
	if err := s.proxy.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// Readiness fails and the gateway port stops accepting while streams
	// are still running.
	harness.Eventually(t, 5*time.Second, func() error {
		if _, err := httpGet(ctx, "http://"+s.adminAddr+"/ready"); err == nil {
			return fmt.Errorf("/ready still 200 after SIGTERM")
		}
		return nil
	})
	harness.Eventually(t, 5*time.Second, func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.gatewayPort), time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("gateway port still accepts new connections")
		}
		return nil
	})

	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.proxy.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("proxy exited with %v after draining", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("proxy did not exit after its streams finished")
	}
}

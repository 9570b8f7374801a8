package modelsim

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/infergate/infergate/proto/kvevents"
	"github.com/infergate/infergate/proto/tokenizer/cl100k"
)

func kvFleet(t *testing.T, tokenizer string) *Replica {
	t.Helper()
	cfg, err := ParseKVEventsConfig(`{"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:0","replay_endpoint":"tcp://*:0","topic":"kv@sim@m"}`)
	if err != nil {
		t.Fatal(err)
	}
	f := startFleet(t, FleetConfig{Config: Config{KVEvents: cfg, Tokenizer: tokenizer}})
	return f.Replica(0)
}

// subscribe dials r's event socket and waits until the publisher has the
// subscription (it arrives asynchronously), so later events are seen.
func subscribe(t *testing.T, ctx context.Context, r *Replica) zmq4.Socket {
	t.Helper()
	sub := zmq4.NewSub(ctx)
	t.Cleanup(func() { sub.Close() })
	if err := sub.Dial(r.KVEventsAddr()); err != nil {
		t.Fatal(err)
	}
	if err := sub.SetOption(zmq4.OptionSubscribe, ""); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ts, ok := r.kv.pub.(zmq4.Topics); ok && len(ts.Topics()) > 0 {
			return sub
		}
		if time.Now().After(deadline) {
			t.Fatal("subscription never reached the publisher")
		}
	}
}

// With --tokenizer cl100k the replica's KV events, usage and prefix cache
// are in real token ids: the rendered chat template through the BPE.
func TestKVEventsRealTokenizer(t *testing.T) {
	r := kvFleet(t, cl100k.Name)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub := subscribe(t, ctx, r)
	system := strings.Repeat("You answer questions about the gateway's routing, briefly. ", 6)
	body := `{"model":"` + DefaultModel + `","max_tokens":2,"messages":[{"role":"system","content":"` + system + `"},{"role":"user","content":"What's new?"}]}`
	resp, out := post(t, r.URL()+"/v1/chat/completions", body)
	if resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode, out)
	}
	enc, err := cl100k.NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	text := kvevents.AppendLlama3Begin(nil)
	text = kvevents.AppendLlama3Message(text, "system", system)
	text = kvevents.AppendLlama3Message(text, "user", "What's new?")
	tokens := enc.Encode(nil, kvevents.AppendLlama3End(text), false)
	if !strings.Contains(out, `"prompt_tokens":`+strconv.Itoa(len(tokens))+`,`) {
		t.Errorf("usage %s: want prompt_tokens %d", out, len(tokens))
	}
	_, b := recvBatch(t, sub)
	full := len(tokens) / 16 * 16
	if len(b.Events) != 1 || !slices.Equal(b.Events[0].TokenIDs, tokens[:full]) || b.Events[0].TokenIDs[0] != 128000 {
		t.Fatalf("events %+v: want one BlockStored of the prompt's %d full-block token ids %v", b.Events, full, tokens[:full])
	}
	g, err := ParseGeneration([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.CachedTokens(g); err != nil || n != full {
		t.Errorf("cached tokens %d %v, want %d", n, err, full)
	}
}

// recvBatch reads the next published batch within the deadline.
func recvBatch(t *testing.T, sub zmq4.Socket) (uint64, kvevents.Batch) {
	t.Helper()
	msg, err := sub.Recv()
	if err != nil {
		t.Fatal(err)
	}
	topic, seq, payload, err := kvevents.ParseMessage(msg.Frames)
	if err != nil {
		t.Fatal(err)
	}
	if string(topic) != "kv@sim@m" {
		t.Fatalf("topic %q", topic)
	}
	var b kvevents.Batch
	var d kvevents.Decoder
	if err := d.Decode(payload, &b); err != nil {
		t.Fatal(err)
	}
	return seq, b
}

func TestKVEventsPublishedAndReplayed(t *testing.T) {
	r := kvFleet(t, "")
	if !strings.HasPrefix(r.KVEventsAddr(), "tcp://127.0.0.1:") || r.KVReplayAddr() == "" {
		t.Fatalf("addresses %q %q", r.KVEventsAddr(), r.KVReplayAddr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub := subscribe(t, ctx, r)
	prompt := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 8) // 360 bytes: 5 blocks of 64
	if resp, body := post(t, r.URL()+"/v1/completions", `{"model":"`+DefaultModel+`","prompt":"`+prompt+`","max_tokens":2}`); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode, body)
	}
	seq, b := recvBatch(t, sub)
	if seq != 0 || len(b.Events) != 1 || b.Events[0].Kind != kvevents.BlockStored {
		t.Fatalf("seq %d batch %+v", seq, b)
	}
	e := b.Events[0]
	want := kvevents.ByteTokens(nil, []byte(prompt[:5*64]))
	if e.BlockSize != 16 || len(e.BlockHashes) != 5 || e.HasParent || !slices.Equal(e.TokenIDs, want) {
		t.Fatalf("event %+v", e)
	}

	r.ResetPrefixCache()
	seq, b = recvBatch(t, sub)
	if seq != 1 || len(b.Events) != 1 || b.Events[0].Kind != kvevents.AllBlocksCleared {
		t.Fatalf("after reset: seq %d batch %+v", seq, b)
	}

	// Replay from 0 returns both batches, then the end marker.
	dealer := zmq4.NewDealer(ctx)
	defer dealer.Close()
	if err := dealer.Dial(r.KVReplayAddr()); err != nil {
		t.Fatal(err)
	}
	if err := dealer.SendMulti(zmq4.NewMsgFrom(nil, kvevents.AppendSeq(nil, 0))); err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for {
		msg, err := dealer.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(msg.Frames) != 3 || len(msg.Frames[0]) != 0 {
			t.Fatalf("replay frames %q", msg.Frames)
		}
		s, err := kvevents.ParseSeq(msg.Frames[1])
		if err != nil {
			t.Fatal(err)
		}
		if s == kvevents.EndOfReplay {
			break
		}
		seqs = append(seqs, s)
	}
	if !slices.Equal(seqs, []uint64{0, 1}) {
		t.Fatalf("replayed %v", seqs)
	}
	if st := r.KVEventStats(); st.Batches != 2 || st.LastSeq != 1 || st.Replays != 1 {
		t.Fatalf("stats %+v", st)
	}
	if resp, _ := post(t, r.URL()+"/reset_prefix_cache", ``); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
}

func TestParseKVEventsConfig(t *testing.T) {
	c, err := ParseKVEventsConfig(`{"enable_kv_cache_events":true}`)
	if err != nil || c.Endpoint != "tcp://*:5557" || c.BufferSteps != 10000 || c.Publisher != "zmq" {
		t.Fatalf("%+v %v", c, err)
	}
	for _, bad := range []string{`{"enable":true}`, `{"publisher":"kafka"}`, `{"endpoint":"ipc:///tmp/x"}`, `{"endpoint":"tcp://*:99999"}`, `[`} {
		if _, err := ParseKVEventsConfig(bad); err == nil {
			t.Errorf("%s: want error", bad)
		}
	}
	if a, _ := bindAddr("tcp://*:5557", "127.0.0.12"); a != "tcp://127.0.0.12:5557" {
		t.Fatal(a)
	}
}

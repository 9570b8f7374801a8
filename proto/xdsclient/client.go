// Package xdsclient is the delta ADS client of the snapshot protocol: it
// subscribes to every snapshot type on one stream, keeps the full resource
// state with the hash of each resource's bytes as received, hands it to a
// Handler after each response, ACKs or NACKs with the handler's verdict, and
// reconnects with backoff, resuming with the versions it holds. The proxy
// runs it (dataplane/cmd/proxy); the control plane's tests and infergatectl
// speak the protocol with it too, which is why it lives in the proto module
// both planes import rather than in either plane.
package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sort"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/infergate/infergate/proto/redial"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// Handler receives the full state after every response that changed it.
// Update runs on the client's goroutine; its result is the ACK (nil) or the
// NACK reason (error) for that response.
//
// A snapshot arrives one type per response, in no guaranteed order, so most
// states a handler sees are incomplete mixes of two snapshots. A handler
// should judge only complete states (Resources.Complete) and return nil for
// incomplete ones: then the NACK lands on the response that completed a bad
// snapshot, and the one that completes the next good snapshot ACKs it.
// On error the client still holds the new state (it is what the server
// believes it sent); the handler keeps serving its last good config.
type Handler interface {
	Update(Resources) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(Resources) error

// Update calls f.
func (f HandlerFunc) Update(r Resources) error { return f(r) }

// Config configures a Client.
type Config struct {
	// Addr is the control plane's gRPC address (a grpc.NewClient target).
	Addr string
	// NodeID identifies this proxy; Gateway ("ns/name") selects what it is
	// served; Pod ("ns/name") is shown in the control plane's debug output.
	NodeID, Gateway, Pod string
	// DialOptions for grpc.NewClient. Empty means plaintext, which is only
	// meant for loopback; pass transport credentials otherwise.
	DialOptions []grpc.DialOption
	Handler     Handler
	Logger      *slog.Logger
	// KeepaliveTime, when > 0, makes the client ping the control plane after
	// that much idle time (timeout 10s) so a control plane that vanished
	// without closing the connection is noticed. Use ≥ 10s, what
	// xds.GRPCServerOptions permits; 0 leaves gRPC's default (no pings).
	KeepaliveTime time.Duration
	// BackoffMin and BackoffMax bound the jittered exponential delay between
	// reconnection attempts (defaults redial.DefaultMin and DefaultMax:
	// 250 ms and 500 ms).
	BackoffMin, BackoffMax time.Duration
}

// TypeStatus is the client's sync state for one resource type.
type TypeStatus struct {
	TypeURL string
	// Received is the snapshot version of the last response of this type.
	Received string
	// Acked / Nacked are the versions last ACKed / NACKed; NackReason is the
	// error sent with the NACK. A later ACK clears Nacked and NackReason.
	Acked, Nacked, NackReason string
	// Resources is how many resources of this type are held.
	Resources int
	// LastResponse is when a response of this type last arrived.
	LastResponse time.Time
	// ReceivedBytes counts the encoded size of every response of this type
	// received (what delta xDS sends per change).
	ReceivedBytes uint64
}

// Client is a delta ADS client. Create it with New and start it with Run.
type Client struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	connected bool
	status    map[string]*TypeStatus
	state     Resources

	// Owned by the Run goroutine.
	versions map[string]map[string]string
	// lastErr is the handler's verdict on the current state; responses
	// that change nothing get the same answer without calling it again.
	lastErr error
}

// New builds a client; nothing happens until Run.
func New(cfg Config) *Client {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.BackoffMin, cfg.BackoffMax = redial.Bounds(cfg.BackoffMin, cfg.BackoffMax)
	if cfg.Handler == nil {
		cfg.Handler = HandlerFunc(func(Resources) error { return nil })
	}
	c := &Client{
		cfg:      cfg,
		log:      cfg.Logger.With("xds", cfg.Addr),
		status:   map[string]*TypeStatus{},
		state:    Resources{},
		versions: map[string]map[string]string{},
	}
	for _, t := range snapshotv1.Types() {
		c.status[t] = &TypeStatus{TypeURL: t}
	}
	return c
}

// Run keeps a stream to the control plane open until ctx is done, then
// returns nil. It returns early only when the gRPC client cannot be created
// (a malformed address or dial options).
func (c *Client) Run(ctx context.Context) error {
	var extra []grpc.DialOption
	if c.cfg.KeepaliveTime > 0 {
		extra = append(extra, grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: c.cfg.KeepaliveTime, Timeout: 10 * time.Second,
		}))
	}
	conn, err := redial.Dial(c.cfg.Addr, c.cfg.DialOptions, extra...)
	if err != nil {
		return fmt.Errorf("xds client for %s: %w", c.cfg.Addr, err)
	}
	defer conn.Close()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)

	redial.Loop(ctx, c.cfg.BackoffMin, c.cfg.BackoffMax, c.log, "xds", func(ctx context.Context) (bool, error) {
		answered, err := c.stream(ctx, ads)
		c.setConnected(false)
		return answered, err
	})
	return nil
}

// stream runs one ADS stream; answered reports whether the server sent
// anything on it (which resets the backoff).
func (c *Client) stream(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) (answered bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := ads.DeltaAggregatedResources(sctx)
	if err != nil {
		return false, err
	}
	node, err := c.node()
	if err != nil {
		return false, err
	}
	for i, typeURL := range snapshotv1.Types() {
		req := &discoveryv3.DeltaDiscoveryRequest{
			TypeUrl: typeURL,
			// Explicit wildcard: every resource of the type for our gateway.
			ResourceNamesSubscribe: []string{"*"},
			// Resume: the server only sends what differs from these.
			InitialResourceVersions: maps.Clone(c.versions[typeURL]),
		}
		if i == 0 {
			req.Node = node
		}
		if err := st.Send(req); err != nil {
			return false, streamErr(st, err)
		}
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return answered, err
		}
		if !answered {
			answered = true
			c.setConnected(true)
			c.log.Info("xds stream established", "gateway", c.cfg.Gateway)
		}
		verdict := c.apply(resp)
		ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
		if verdict != nil {
			ack.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: verdict.Error()}
			c.log.Warn("xds NACK", "type", resp.GetTypeUrl(), "version", resp.GetSystemVersionInfo(), "err", verdict)
		}
		c.recordVerdict(resp, verdict)
		if err := st.Send(ack); err != nil {
			return answered, streamErr(st, err)
		}
	}
}

// streamErr turns the io.EOF a failed Send reports into the stream's real
// status, which only Recv returns.
func streamErr(st grpc.BidiStreamingClient[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse], err error) error {
	if errors.Is(err, io.EOF) {
		if _, rerr := st.Recv(); rerr != nil {
			return rerr
		}
	}
	return err
}

func (c *Client) node() (*corev3.Node, error) {
	md, err := structpb.NewStruct(map[string]any{"gateway": c.cfg.Gateway, "pod": c.cfg.Pod})
	if err != nil {
		return nil, err
	}
	// The client checks both Manifest forms (Resources.Check), so it asks
	// for the compact one.
	return &corev3.Node{Id: c.cfg.NodeID, Cluster: c.cfg.Gateway, Metadata: md,
		ClientFeatures: []string{snapshotv1.FeatureTypeDigests}}, nil
}

// apply decodes a response into a new state and asks the handler about it.
// A response that cannot be decoded is NACKed without touching the state.
func (c *Client) apply(resp *discoveryv3.DeltaDiscoveryResponse) error {
	typeURL := resp.GetTypeUrl()
	if _, err := newMessage(typeURL); err != nil {
		return err
	}
	decoded := make(map[string]snapshotv1.Resource, len(resp.GetResources()))
	for _, r := range resp.GetResources() {
		msg, _ := newMessage(typeURL)
		if r.GetResource() == nil {
			return fmt.Errorf("%s %q: no resource body", typeURL, r.GetName())
		}
		if got := r.GetResource().GetTypeUrl(); got != typeURL {
			return fmt.Errorf("%s %q: body has type %q", typeURL, r.GetName(), got)
		}
		if err := proto.Unmarshal(r.GetResource().GetValue(), msg); err != nil {
			return fmt.Errorf("%s %q: %w", typeURL, r.GetName(), err)
		}
		if msg.GetName() != r.GetName() {
			return fmt.Errorf("%s %q: body is named %q", typeURL, r.GetName(), msg.GetName())
		}
		// The hash of the bytes as received, not of the message encoded
		// again: encodings may differ between the control plane's protobuf
		// and ours (field order, map order), the content does not.
		decoded[r.GetName()] = snapshotv1.Resource{Message: msg, Hash: snapshotv1.HashBytes(r.GetResource().GetValue())}
	}
	if len(decoded) == 0 && len(resp.GetRemovedResources()) == 0 {
		return c.lastErr
	}

	// Copy on write: the previous Resources value stays valid for anyone
	// holding it.
	byName := maps.Clone(c.state[typeURL])
	if byName == nil {
		byName = map[string]snapshotv1.Resource{}
	}
	versions := maps.Clone(c.versions[typeURL])
	if versions == nil {
		versions = map[string]string{}
	}
	for _, r := range resp.GetResources() {
		byName[r.GetName()] = decoded[r.GetName()]
		versions[r.GetName()] = r.GetVersion()
	}
	for _, name := range resp.GetRemovedResources() {
		delete(byName, name)
		delete(versions, name)
	}
	next := maps.Clone(c.state)
	if len(byName) == 0 {
		delete(next, typeURL)
	} else {
		next[typeURL] = byName
	}
	c.versions[typeURL] = versions
	c.mu.Lock()
	c.state = next
	c.mu.Unlock()

	c.lastErr = c.cfg.Handler.Update(next)
	return c.lastErr
}

func (c *Client) recordVerdict(resp *discoveryv3.DeltaDiscoveryResponse, verdict error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.status[resp.GetTypeUrl()]
	if !ok {
		t = &TypeStatus{TypeURL: resp.GetTypeUrl()}
		c.status[resp.GetTypeUrl()] = t
	}
	t.Received = resp.GetSystemVersionInfo()
	t.LastResponse = time.Now()
	t.ReceivedBytes += uint64(proto.Size(resp))
	t.Resources = len(c.state[resp.GetTypeUrl()])
	if verdict != nil {
		t.Nacked, t.NackReason = resp.GetSystemVersionInfo(), verdict.Error()
	} else {
		t.Acked = resp.GetSystemVersionInfo()
		// Verdicts are about the whole state (see Handler), so accepting a
		// version clears NACKs other types got for other versions.
		for _, other := range c.status {
			if other.Nacked != t.Acked {
				other.Nacked, other.NackReason = "", ""
			}
		}
	}
}

func (c *Client) setConnected(v bool) {
	c.mu.Lock()
	c.connected = v
	c.mu.Unlock()
}

// Connected reports whether a stream is up and the server has answered on it.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

// Status returns the per-type sync state, ordered as snapshotv1.Types().
func (c *Client) Status() []TypeStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	order := map[string]int{}
	for i, t := range snapshotv1.Types() {
		order[t] = i
	}
	out := make([]TypeStatus, 0, len(c.status))
	for _, t := range c.status {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return order[out[i].TypeURL] < order[out[j].TypeURL] })
	return out
}

// Resources returns the state currently held (for admin pages; do not
// modify it).
func (c *Client) Resources() Resources {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

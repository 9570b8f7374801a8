package routesim

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/dataplane/picker"
	"github.com/infergate/infergate/e2e/modelsim"
	"github.com/infergate/infergate/e2e/modelsim/engine"
)

// Job is one request of a workload.
type Job struct {
	// At is the arrival time from the start, used when After < 0.
	At time.Duration
	// After is the index of the job whose completion releases this one
	// (a conversation's previous turn), -1 for none; Delay is the think
	// time from that completion to this job's arrival.
	After int
	Delay time.Duration
	Model string
	// Body is the OpenAI chat request body the proxy sees.
	Body []byte
	// Priority: > 0 critical, 0 standard, < 0 sheddable.
	Priority  int32
	MaxTokens int
}

// Replica shapes one simulated model server.
type Replica struct {
	Engine engine.Config
	// Slow multiplies every step's duration (1: nominal speed).
	Slow float64
}

// Config is the fleet and the proxies in front of it.
type Config struct {
	Replicas []Replica
	// Adapters are the LoRA adapter names the replicas serve; a job whose
	// model is one of them runs on that adapter.
	Adapters []string
	// Proxies share the traffic round robin (default 1).
	Proxies int
	// ScrapeInterval is the base metrics interval (default 50 ms); each
	// proxy scrapes every ScrapeInterval × Proxies, ±20 % jitter, as the
	// proxy's registry does.
	ScrapeInterval time.Duration
	// Seed drives the scrape jitter.
	Seed uint64
	// NoFleet turns off the emulated fleet exchange between proxies (see
	// relay).
	NoFleet bool
	// RelayEvery is the fleet exchange's sends period (default
	// fleetv1.SendsEvery, production's): how late the other proxies' sends arrive.
	RelayEvery time.Duration
	// NoLoads leaves the proxies' scrapes out of the fleet exchange (each
	// proxy then decides on its own scrapes only).
	NoLoads bool
	// Stagger spaces a closed loop's users: user i sends its first request
	// i × Stagger after the start (0: all at once, as the benchmark's
	// users start).
	Stagger time.Duration
}

// Strategy builds the picker of one proxy.
type Strategy struct {
	Name string
	// New returns proxy p's picker. env gives oracles the ground truth.
	// A picker that keeps time (picker.Scheduler does) must implement
	// Clocked, forwarding to what it wraps: the simulation runs in
	// virtual time, and a picker on the wall clock would see every send
	// as just made (backlogs never drain) without any error.
	New func(env *Env, p int) picker.Picker
	// Truth refreshes every candidate's metrics from the replicas' true
	// state right before each pick (an oracle's perfect information).
	Truth bool
}

// Clocked is a picker that reads time through a clock the simulation
// sets (picker.Scheduler.SetClock): a strategy's picker that keeps time
// must implement it.
type Clocked interface {
	SetClock(func() time.Time)
}

// Seeded is a picker that breaks ties with a source the simulation sets,
// seeded by the run's seed (picker.Scheduler.SetRand): a strategy's picker
// that breaks ties at random should implement it, forwarding to what it
// wraps, or a replay of the same seed does not repeat its picks.
type Seeded interface {
	SetRand(*rand.Rand)
}

var (
	_ Clocked = (*picker.Scheduler)(nil)
	_ Seeded  = (*picker.Scheduler)(nil)
	_ Seeded  = (*picker.LeastInFlight)(nil)
)

// Outcome of one job.
type Outcome struct {
	Status int // 200, 429 (shed), 400 (too long)
	// Sent is the arrival time; TTFT and E2E are from it.
	Sent, TTFT, E2E time.Duration
	Prompt, Cached  int
	Output          int
	Replica         int
	Proxy           int
}

// Env is what a strategy may look at: the running simulation.
type Env struct {
	sim *sim
}

// CachedTokens is replica i's true cached prefix for the job being picked.
func (e *Env) CachedTokens(replica int) int {
	s := e.sim
	return s.reps[replica].core.CachedTokens(s.cur.prompt, s.cur.adapter)
}

// ReplicaOf maps an endpoint address to its replica index (-1: unknown).
func (e *Env) ReplicaOf(addr string) int {
	if i, ok := e.sim.byAddr[addr]; ok {
		return i
	}
	return -1
}

// blockSize is the replicas' KV block size in tokens.
func (e *Env) blockSize() int { return e.sim.reps[0].core.Config().BlockSize }

// kvBlocks is the KV cache size of the replica at addr, in blocks.
func (e *Env) kvBlocks(addr string) int {
	if i, ok := e.sim.byAddr[addr]; ok {
		return e.sim.reps[i].core.Config().KVBlocks
	}
	return 0
}

// Job is the index of the job being picked.
func (e *Env) Job() int { return e.sim.curJob }

// Now is the simulation's clock.
func (e *Env) Now() time.Time { return e.sim.clock() }

type replica struct {
	core *engine.Core
	slow float64
	// busy: a step is in flight until stepEnd; touched are its requests.
	busy    bool
	touched []*engine.Request
	// stats as of the last step end (what /metrics shows), plus requests
	// added since (the engine's inbox).
	stats engine.Stats
	added int
	jobs  map[*engine.Request]int
	addr  string
}

type proxy struct {
	reg  *endpoints.Registry
	eps  []*endpoints.Endpoint
	pick picker.Picker
}

type pending struct {
	prompt  []byte
	adapter string
}

type job struct {
	Job
	out      Outcome
	preq     *picker.Request
	ep       *endpoints.Endpoint
	proxy    int
	children []int
	pending
}

type sim struct {
	cfg    Config
	start  time.Time
	now    time.Duration
	events eventQueue
	seq    uint64
	rng    *rand.Rand
	reps   []*replica
	byAddr map[string]int
	prox   []*proxy
	jobs   []job
	cur    pending
	curJob int
	strat  Strategy
	// the emulated fleet exchange (relay): the sends and keys collected
	// at the last period, and each proxy's cursor into its sends.
	inbox [][]picker.Send
	loads [][]picker.Load
	// reported is, per proxy, the time of the latest own scrape of each
	// endpoint it reported.
	reported []map[uint64]int64
	keysAt   time.Duration
	keys     *picker.FleetKeys
	cursors  []uint64
	// closed > 0 runs a closed loop of that many users: each completion
	// sends the next unsent job (next).
	closed, next int
}

func (s *sim) clock() time.Time { return s.start.Add(s.now) }

// Run replays w through cfg's fleet with strategy st and returns one
// outcome per job, in job order.
func Run(cfg Config, w Workload, st Strategy) ([]Outcome, error) {
	jobs := w.Jobs
	if len(cfg.Replicas) == 0 {
		return nil, errors.New("routesim: no replicas")
	}
	if cfg.Proxies <= 0 {
		cfg.Proxies = 1
	}
	if cfg.ScrapeInterval <= 0 {
		cfg.ScrapeInterval = 50 * time.Millisecond
	}
	s := &sim{cfg: cfg, start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), rng: rand.New(rand.NewPCG(cfg.Seed, 7)),
		byAddr: map[string]int{}, strat: st}
	specs := make([]endpoints.Spec, len(cfg.Replicas))
	for i, rc := range cfg.Replicas {
		addr := fmt.Sprintf("10.0.%d.%d:8000", i/250, i%250+1)
		s.reps = append(s.reps, &replica{core: engine.NewCore(rc.Engine), slow: cmp.Or(rc.Slow, 1), jobs: map[*engine.Request]int{}, addr: addr})
		s.byAddr[addr] = i
		specs[i] = endpoints.Spec{Address: addr, Pod: fmt.Sprintf("sim-%d", i)}
	}
	for i := range s.reps {
		s.reps[i].stats = s.reps[i].core.Stats()
	}
	env := &Env{sim: s}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for p := range cfg.Proxies {
		reg := endpoints.NewRegistry(quiet, endpoints.Options{Proxies: cfg.Proxies, Interval: cfg.ScrapeInterval})
		got := reg.Sync(specs)
		eps := make([]*endpoints.Endpoint, len(specs))
		for i, sp := range specs {
			eps[i] = got[sp.Address]
		}
		pk := st.New(env, p)
		if sc, ok := pk.(Clocked); ok {
			sc.SetClock(s.clock)
		}
		if sr, ok := pk.(Seeded); ok {
			sr.SetRand(rand.New(rand.NewPCG(cfg.Seed, uint64(1000+p))))
		}
		s.prox = append(s.prox, &proxy{reg: reg, eps: eps, pick: pk})
		for i := range s.reps {
			s.push(event{at: s.jitter(), kind: evScrape, proxy: p, rep: i})
		}
	}
	if cfg.Proxies > 1 && !cfg.NoFleet {
		s.push(event{at: s.cfg.relayPeriod(), kind: evRelay})
	}
	defer func() {
		for _, p := range s.prox {
			p.reg.Close()
		}
	}()
	s.jobs = make([]job, len(jobs))
	s.closed = w.Concurrency
	for i, j := range jobs {
		s.jobs[i] = job{Job: j}
		s.jobs[i].out.Replica, s.jobs[i].out.Proxy = -1, -1
		switch {
		case s.closed > 0:
			if i < s.closed {
				s.push(event{at: time.Duration(i) * cfg.Stagger, kind: evArrive, job: i})
			}
			s.next = min(s.closed, len(jobs))
		case j.After >= 0 && j.After < i:
			s.jobs[j.After].children = append(s.jobs[j.After].children, i)
		default:
			s.push(event{at: j.At, kind: evArrive, job: i})
		}
	}
	remaining := len(jobs)
	for s.events.Len() > 0 && remaining > 0 {
		ev := heap.Pop(&s.events).(event)
		s.now = ev.at
		switch ev.kind {
		case evArrive:
			if s.arrive(ev.job) {
				remaining--
			}
		case evStepEnd:
			remaining -= s.stepEnd(ev.rep)
		case evScrape:
			s.scrape(ev.proxy, ev.rep)
			s.push(event{at: s.now + s.jitter(), kind: evScrape, proxy: ev.proxy, rep: ev.rep})
		case evRelay:
			s.relay()
			s.push(event{at: s.now + s.cfg.relayPeriod(), kind: evRelay})
		}
	}
	if remaining > 0 {
		return nil, fmt.Errorf("routesim: %d jobs never finished (a replica blocked for good?)", remaining)
	}
	out := make([]Outcome, len(s.jobs))
	for i := range s.jobs {
		out[i] = s.jobs[i].out
	}
	return out, nil
}

// jitter is one proxy's scrape period, ±20 %.
func (s *sim) jitter() time.Duration {
	d := s.cfg.ScrapeInterval * time.Duration(s.cfg.Proxies)
	return time.Duration(float64(d) * (0.8 + 0.4*s.rng.Float64()))
}

func (s *sim) metricsOf(i int, truth bool) *endpoints.Metrics {
	r := s.reps[i]
	st := r.stats
	waiting := st.Waiting + r.added
	if truth {
		st = r.core.Stats()
		waiting = st.Waiting
	}
	// KVCapacity as modelsim's cache_config_info reports it (blocks ×
	// block size): the cost model prices decode context and estimates
	// LRU eviction from it.
	cfg := r.core.Config()
	m := &endpoints.Metrics{Waiting: float64(waiting), Running: float64(st.Running), KVCacheUsage: st.KVUsage,
		KVCapacity: float64(cfg.KVBlocks * cfg.BlockSize), At: s.clock()}
	if len(s.cfg.Adapters) > 0 {
		m.RunningAdapters, m.WaitingAdapters = st.RunningAdapters, st.WaitingAdapters
		m.MaxLoRA = cfg.MaxLoRAs
	}
	return m
}

func (s *sim) scrape(p, i int) {
	if s.strat.Truth {
		return // refreshed at every pick instead
	}
	s.prox[p].eps[i].SetMetrics(s.metricsOf(i, false))
}

// arrive picks an endpoint for job i and queues it there; it reports
// whether the job ended at once (shed or refused).
func (s *sim) arrive(i int) bool {
	j := &s.jobs[i]
	j.out.Sent = s.now
	p := i % len(s.prox)
	px := s.prox[p]
	j.proxy, j.out.Proxy = p, p
	gr, err := modelsim.ParseChatRequest(j.Body)
	if err != nil {
		j.out.Status = 400
		s.release(i)
		return true
	}
	j.prompt = gr.Prompt
	if slices.Contains(s.cfg.Adapters, j.Model) {
		j.adapter = j.Model
	}
	s.cur, s.curJob = j.pending, i
	if s.strat.Truth {
		for k := range s.reps {
			px.eps[k].SetMetrics(s.metricsOf(k, true))
		}
	}
	j.preq = &picker.Request{Model: j.Model, TargetModel: j.Model, Priority: j.Priority, Body: j.Body}
	ep, err := px.pick.Pick(j.preq, px.eps)
	if err != nil {
		j.out.Status = 429
		s.release(i)
		return true
	}
	ri := s.byAddr[ep.Address]
	r := s.reps[ri]
	er := engine.NewRequest(gr.Prompt, j.MaxTokens, j.adapter)
	er.Arrival = s.clock()
	if err := r.core.Add(er); err != nil {
		j.out.Status = 400
		s.release(i)
		return true
	}
	ep.Acquire(s.clock())
	j.ep = ep
	j.out.Replica = ri
	r.jobs[er] = i
	r.added++
	if !r.busy {
		s.step(ri)
	}
	return false
}

// step starts replica i's next step, if it has work that can run.
func (s *sim) step(i int) {
	r := s.reps[i]
	if r.core.Idle() {
		return
	}
	res := r.core.Step(s.clock(), r.slow)
	if res.Scheduled == 0 {
		return // blocked until something changes
	}
	r.busy = true
	r.touched = res.Touched
	s.push(event{at: res.End.Sub(s.start), kind: evStepEnd, rep: i})
}

// stepEnd publishes replica i's step and returns how many jobs finished.
func (s *sim) stepEnd(i int) int {
	r := s.reps[i]
	r.busy = false
	done := 0
	for _, er := range r.touched {
		ji, ok := r.jobs[er]
		if !ok {
			continue
		}
		j := &s.jobs[ji]
		st := er.State()
		if st.Generated >= 1 && j.out.TTFT == 0 {
			j.out.TTFT = s.now - j.out.Sent
			if fb, ok := s.prox[j.proxy].pick.(picker.FirstByter); ok {
				fb.FirstByte(j.preq, j.ep, s.clock())
			}
		}
		if !st.Done {
			continue
		}
		delete(r.jobs, er)
		j.out.Status = 200
		j.out.E2E = s.now - j.out.Sent
		j.out.Prompt, j.out.Cached, j.out.Output = st.PromptTokens, st.CachedTokens, st.Generated
		j.ep.Release()
		if fb, ok := s.prox[j.proxy].pick.(picker.Feedback); ok {
			fb.Done(j.ep, true)
		}
		if ob, ok := s.prox[j.proxy].pick.(picker.Observer); ok {
			// What the proxy learns from a streamed response with usage.
			ob.Observe(j.preq, j.ep, picker.Outcome{FirstByte: j.out.TTFT, Total: j.out.E2E, Streamed: true,
				UsageKnown: true, Prompt: int64(st.PromptTokens), Output: int64(st.Generated),
				CachedKnown: true, Cached: int64(st.CachedTokens)})
		}
		s.release(ji)
		done++
	}
	r.touched = nil
	r.stats = r.core.Stats()
	r.added = 0
	s.step(i)
	return done
}

// release schedules the jobs waiting for job i.
func (s *sim) release(i int) {
	if s.closed > 0 {
		if s.next < len(s.jobs) {
			s.push(event{at: s.now, kind: evArrive, job: s.next})
			s.next++
		}
		return
	}
	for _, c := range s.jobs[i].children {
		s.push(event{at: s.now + s.jobs[c].Delay, kind: evArrive, job: c})
	}
}

type evKind uint8

const (
	evStepEnd evKind = iota // first: a step's results are visible before arrivals at the same instant
	evScrape
	evArrive
	evRelay
)

type event struct {
	at    time.Duration
	seq   uint64
	kind  evKind
	job   int
	rep   int
	proxy int
}

func (s *sim) push(e event) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.events, e)
}

type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(a, b int) bool {
	if q[a].at != q[b].at {
		return q[a].at < q[b].at
	}
	if q[a].kind != q[b].kind {
		return q[a].kind < q[b].kind
	}
	return q[a].seq < q[b].seq
}
func (q eventQueue) Swap(a, b int) { q[a], q[b] = q[b], q[a] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

package fleetv1

import "time"

// The fleet exchange's default periods, for both planes. SendsEvery is how
// often a proxy reports its sends and scrapes, and how often the control
// plane pushes each proxy the others': a send tells where a prompt's
// prefill is queued and a scrape how busy a server is, which matter for the
// next fraction of a second only. In routesim, 4 proxies' TTFT p90 over
// one proxy's, medians of 15 seeds: zipf-prefix 1.11× and shared-prefix
// 1.22× every 10 ms, 1.06× and 1.07× every 5 ms. It costs the control
// plane 1.3–1.6× the CPU of 10 ms, per message rather than per byte (a
// gateway at 1,000 requests/s, medians of 4 runs: 0.28 instead of 0.21
// cores with 16 proxies, 0.51 instead of 0.33 with 64; bytes 3–9 % more)
// and halves how late the others' sends arrive (median 6 ms instead of
// 11; make bench-controlplane).
// KeysEvery is how often the prefix affinity keys go each way: they only
// feed home plans rebuilt every second.
const (
	SendsEvery = 5 * time.Millisecond
	KeysEvery  = 250 * time.Millisecond
)

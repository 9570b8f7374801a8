package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/infergate/infergate/dataplane/endpoints"
	"github.com/infergate/infergate/e2e/harness"
	"github.com/infergate/infergate/e2e/modelsim"
)

// scrapeWindow is how long each scrape rate is measured; settle is how long
// scrapers need to take up a new interval (the longest one, 50 ms × 16 +
// 20 % jitter, plus a margin).
const (
	scrapeWindow = 3 * time.Second
	scrapeSettle = 1200 * time.Millisecond
)

// TestScrapeLoadIndependentOfProxyCount runs 16, 4 and 1 real proxy
// processes of one gateway against a simulated fleet and measures the
// /metrics scrapes each model server gets per second. The control plane
// tells the proxies how many they are (Manifest.proxy_count) and each
// scrapes every 50 ms × that many, so the rate must not grow with the
// proxies: 16 proxies may cost at most 2× the scrapes of one. The same 16
// proxies first run against a control plane that never re-publishes the
// count (a 1 h coalescing window: each keeps the count of 1 it connected
// with, as every proxy did before the count existed), showing the check
// fails without the plumbing.
func TestScrapeLoadIndependentOfProxyCount(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	podIPs := []string{"127.0.0.41", "127.0.0.42", "127.0.0.43"}
	podPort := harness.FreePortOn(t, podIPs...)
	proxyIPs := make([]string, 16)
	for i := range proxyIPs {
		proxyIPs[i] = fmt.Sprintf("127.0.1.%d", i+1)
	}
	// Every proxy binds the gateway's listener port, each on its own IP.
	gatewayPort := harness.FreePortOn(t, proxyIPs...)
	xdsAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
	cpAdmin := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))

	writeFile(t, dir, "fleet.yaml", render(t, fleetYAML, map[string]int{"GatewayPort": gatewayPort, "PodPort": podPort}))
	listen := make([]string, len(podIPs))
	for i, ip := range podIPs {
		writePod(t, dir, i, ip)
		listen[i] = fmt.Sprintf("%s:%d", ip, podPort)
	}
	fleet, err := modelsim.StartFleet(ctx, modelsim.FleetConfig{Listen: listen, ShutdownTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fleet.Close() })

	startCP := func(extra ...string) *harness.Process {
		cp := harness.Start(t, "controlplane", bins.Path("controlplane"),
			append([]string{"--config-dir", dir, "--xds-address", xdsAddr, "--admin-address", cpAdmin}, extra...)...)
		harness.WaitHTTP(ctx, t, "http://"+cpAdmin+"/readyz", syncTimeout)
		return cp
	}
	// Ready (its snapshot translated) before any proxy connects, so the
	// first Manifest says 1 proxy.
	cp := startCP("--proxy-count-delay", "1h")

	type proxy struct {
		admin string
		proc  *harness.Process
	}
	proxies := make([]proxy, len(proxyIPs))
	for i, ip := range proxyIPs {
		proxies[i].admin = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1"))
		proxies[i].proc = harness.Start(t, fmt.Sprintf("proxy-%d", i), bins.Path("proxy"),
			"--xds-address", xdsAddr, "--gateway", gatewayName, "--node-id", fmt.Sprintf("proxy-%d", i),
			"--listen-address", ip, "--admin-address", proxies[i].admin, "--log-level", "warn")
	}
	// waitCount waits until every running proxy scrapes as one of n, then
	// until the scrapers have taken up that interval.
	waitCount := func(running []proxy, n int) {
		t.Helper()
		harness.Eventually(t, syncTimeout, func() error {
			for _, p := range running {
				got, err := scrapeSchedule(ctx, p.admin)
				if err != nil {
					return err
				}
				if got.Proxies != n {
					return fmt.Errorf("proxy %s scrapes as one of %d proxies (interval %s), want %d", p.admin, got.Proxies, got.Interval, n)
				}
			}
			return nil
		})
		time.Sleep(scrapeSettle)
	}
	// perServer measures the scrapes per second each model server gets.
	perServer := func() float64 {
		before := fleetScrapes(fleet)
		t0 := time.Now()
		time.Sleep(scrapeWindow)
		return float64(fleetScrapes(fleet)-before) / time.Since(t0).Seconds() / float64(fleet.Len())
	}

	waitCount(proxies, 1)
	without := perServer()

	// The real control plane: the 16 reconnect and learn they are 16.
	cp.Stop(5 * time.Second)
	startCP()
	waitCount(proxies, 16)
	with16 := perServer()

	for _, p := range proxies[4:] {
		p.proc.Stop(5 * time.Second)
	}
	waitCount(proxies[:4], 4)
	with4 := perServer()

	for _, p := range proxies[1:4] {
		p.proc.Stop(5 * time.Second)
	}
	waitCount(proxies[:1], 1)
	with1 := perServer()

	t.Logf("scrapes/s per model server (%d servers, %v windows): 1 proxy %.1f, 4 proxies %.1f, 16 proxies %.1f; "+
		"16 proxies without the count %.1f", fleet.Len(), scrapeWindow, with1, with4, with16, without)
	t.Logf("16 proxies / 1 proxy = %.2f× (target ≤ 2×); without the count %.2f×", with16/with1, without/with1)
	if with1 <= 0 {
		t.Fatalf("one proxy made no scrapes")
	}
	if r := with16 / with1; r > 2 {
		t.Errorf("16 proxies scrape each server %.2f× as often as 1 (target ≤ 2×)", r)
	}
	if r := with4 / with1; r > 2 {
		t.Errorf("4 proxies scrape each server %.2f× as often as 1 (target ≤ 2×)", r)
	}
	// Without the count each proxy scrapes every 50 ms: ~16×. Demand a
	// quarter of that, so a loaded machine does not fail the test, but a
	// check that could not fail would.
	if r := without / with1; r < 4 {
		t.Errorf("16 proxies without the count scrape only %.2f× as often as 1: the measurement cannot tell the plumbing works", r)
	}
}

// scrapeSchedule reads the scrape schedule from a proxy's /config.
func scrapeSchedule(ctx context.Context, admin string) (endpoints.Schedule, error) {
	var cfg struct {
		Scraping endpoints.Schedule `json:"scraping"`
	}
	body, err := httpGet(ctx, "http://"+admin+"/config")
	if err == nil {
		err = json.Unmarshal([]byte(body), &cfg)
	}
	return cfg.Scraping, err
}

func fleetScrapes(f *modelsim.Fleet) int64 {
	var n int64
	for _, s := range f.Stats() {
		n += s.Scrapes
	}
	return n
}

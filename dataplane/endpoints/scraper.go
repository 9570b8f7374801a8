package endpoints

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"syscall"
	"time"
)

// maxMetricsBytes bounds what one scrape reads, so a broken server cannot
// make the proxy buffer or parse without limit: a larger body is an error
// (ErrTooLarge), not a truncated sample. vLLM's exposition with a dozen
// models and their histograms is a few hundred KB.
const maxMetricsBytes = 4 << 20

// maxBackoff bounds how far a failing endpoint's scrapes are spaced out:
// each consecutive failure doubles the wait (from the interval), so an
// endpoint serving junk, oversized or hanging /metrics costs the proxy a
// parse or a timeout a second at most, and a recovered one is seen again
// within a second.
const maxBackoff = time.Second

type scraper struct {
	ep     *Endpoint
	client *http.Client
	url    string
	names  metricNames
	// interval returns the current interval between scrapes (it changes
	// with the number of proxies sharing the servers).
	interval func() time.Duration
	timeout  time.Duration
	logger   *slog.Logger
	onScrape func(*Endpoint) // may be nil
	// sameAddress is set when /metrics is served on the serving port:
	// a refused scrape then means the server itself is gone (markDown).
	sameAddress bool
	// body and kept are the previous scrape's buffers, reused.
	body, kept []byte
}

// keepSmall returns b emptied for reuse, or nil when it is large.
func keepSmall(b []byte) []byte {
	if cap(b) > 256<<10 {
		return nil
	}
	return b[:0]
}

func (s *scraper) run(ctx context.Context) {
	// Scrape at once so a new endpoint has state before its first request
	// is likely to arrive, then every interval with jitter.
	t := time.NewTimer(0)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.scrape(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := s.interval()
		now := time.Now()
		if err != nil {
			s.ep.scrapeFailed(err, now)
			if failures == 0 {
				s.logger.Warn("scrape failed", "url", s.url, "err", err)
			}
			failures++
			wait = min(wait<<min(failures, 10), max(maxBackoff, wait))
		} else {
			if failures > 0 {
				s.logger.Info("scrape recovered", "url", s.url, "failures", failures)
			}
			failures = 0
		}
		wait = jitter(wait)
		if s.sameAddress && errors.Is(err, syscall.ECONNREFUSED) {
			// Down until the next scrape has had time to say otherwise.
			s.ep.markDown(now.Add(wait + s.timeout))
		} else {
			s.ep.markDown(time.Time{})
		}
		t.Reset(wait)
	}
}

// jitter spreads d uniformly over [0.8d, 1.2d).
func jitter(d time.Duration) time.Duration {
	return d*8/10 + time.Duration(rand.Int64N(int64(d)*4/10+1))
}

func (s *scraper) scrape(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return err
	}
	// Ask for the text format: it is what expfmt's text parser reads and
	// what every model server offers.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("GET %s: status %d", s.url, resp.StatusCode)
	}
	body := bytes.NewBuffer(s.body[:0])
	_, err = body.ReadFrom(&cappedReader{r: resp.Body, limit: maxMetricsBytes})
	if errors.Is(err, ErrTooLarge) {
		return fmt.Errorf("GET %s: body exceeds %d bytes", s.url, maxMetricsBytes)
	}
	if err != nil {
		return fmt.Errorf("GET %s: reading body: %w", s.url, err)
	}
	m, kept, err := parse(body.Bytes(), s.names, s.kept)
	// Keep the buffers for the next scrape unless an unusual body grew
	// them: a failing endpoint must not pin megabytes.
	s.body, s.kept = keepSmall(body.Bytes()), keepSmall(kept)
	if err != nil {
		return fmt.Errorf("GET %s: %w", s.url, err)
	}
	m.At = time.Now()
	s.ep.SetMetrics(m)
	s.ep.lastErr.Store(nil)
	s.ep.scrapes.Add(1)
	if s.onScrape != nil {
		s.onScrape(s.ep)
	}
	return nil
}

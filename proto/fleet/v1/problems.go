package fleetv1

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits and timing of the problems a proxy reports about its pools
// (KeyReport.problems), shared by the proxies and the control plane that
// shows them on the pools' status.
const (
	// MaxProblemsPerReport bounds a report's problems (one per pool and
	// reason at most).
	MaxProblemsPerReport = MaxPoolsPerReport
	// MaxProblemReasonBytes bounds a problem's reason, a status condition
	// reason.
	MaxProblemReasonBytes = 64
	// MaxProblemMessageBytes bounds a problem's message (NewProblem
	// shortens longer ones).
	MaxProblemMessageBytes = 512
	// ProblemsRefresh is how often a proxy sends its problems when they
	// do not change; ProblemsTTL is how long the control plane keeps them
	// without hearing them again. Several refreshes fit in the TTL, so a
	// late report does not clear a standing problem, and a proxy the
	// control plane cannot see leave (connected to another replica) stops
	// counting within the TTL.
	ProblemsRefresh = 10 * time.Second
	ProblemsTTL     = 3 * ProblemsRefresh
)

// Reasons of the problems proxies report.
const (
	// ReasonTokenizerUnusable: the tokenizer file of a pool's kvEvents
	// profile is missing, unreadable, does not parse or is of a kind the
	// proxy does not implement, so the pool's prefix matching stays
	// approximate.
	ReasonTokenizerUnusable = "TokenizerUnusable"
)

// NewProblem returns a problem of pool, with message shortened to
// MaxProblemMessageBytes (on a rune boundary) and made valid UTF-8.
func NewProblem(pool, reason, message string) *PoolProblem {
	message = ShortenMessage(message, MaxProblemMessageBytes)
	return &PoolProblem{Pool: pool, Reason: reason, Message: message}
}

// ShortenMessage makes s valid UTF-8 of at most n bytes (n > 3), cut on a
// rune boundary and marked with "..." where it was cut: the form a message
// shown in a status condition takes.
func ShortenMessage(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// checkProblems checks a report's problems: pool names and reasons within
// their limits, reasons that are condition reasons, messages within
// theirs, one problem per pool and reason.
func checkProblems(ps *PoolProblems) error {
	if len(ps.GetProblems()) > MaxProblemsPerReport {
		return fmt.Errorf("report has %d problems, at most %d", len(ps.GetProblems()), MaxProblemsPerReport)
	}
	seen := make(map[[2]string]bool, len(ps.GetProblems()))
	for _, p := range ps.GetProblems() {
		switch {
		case p.GetPool() == "" || len(p.GetPool()) > MaxPoolNameBytes:
			return fmt.Errorf("problem of pool %q: want a pool name of 1 to %d bytes", p.GetPool(), MaxPoolNameBytes)
		case !validReason(p.GetReason()):
			return fmt.Errorf("problem of pool %s: reason %q: want 1 to %d ASCII letters and digits, a letter first", p.GetPool(), p.GetReason(), MaxProblemReasonBytes)
		case len(p.GetMessage()) > MaxProblemMessageBytes || !utf8.ValidString(p.GetMessage()):
			return fmt.Errorf("problem of pool %s: message of %d bytes: want valid UTF-8 of at most %d", p.GetPool(), len(p.GetMessage()), MaxProblemMessageBytes)
		}
		k := [2]string{p.GetPool(), p.GetReason()}
		if seen[k] {
			return fmt.Errorf("problem of pool %s: reason %s twice", p.GetPool(), p.GetReason())
		}
		seen[k] = true
	}
	return nil
}

// validReason: a condition reason of letters and digits (a subset of what
// Kubernetes allows), starting with a letter.
func validReason(r string) bool {
	if r == "" || len(r) > MaxProblemReasonBytes {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

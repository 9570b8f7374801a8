package extproc

import (
	"fmt"
	"net/http"
	"net/textproto"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"golang.org/x/net/http/httpguts"
)

// Bounds on what a picker may ask for, so a faulty or hostile picker
// cannot make the proxy build unbounded requests: more is a protocol error
// (the failure mode applies).
const (
	// MaxHeaderMutations is the most set and remove entries, together, of
	// one phase's answers.
	MaxHeaderMutations = 256
	// MaxHeaderMutationBytes bounds the names and values a phase's answers
	// set (the proxy's default request header limit).
	MaxHeaderMutationBytes = 64 << 10
)

// headerEdit is one validated header mutation.
type headerEdit struct {
	// name is in canonical form; value is unused for removals.
	name, value string
	op          editOp
}

type editOp uint8

const (
	opSet       editOp = iota // replace every value (Envoy's default for ext_proc)
	opAppend                  // add a value
	opAddAbsent               // set only when absent
	opOverwrite               // replace only when present
	opRemove
)

// mutations collects a phase's header edits in order, within the bounds.
type mutations struct {
	edits []headerEdit
	bytes int
}

var errTooManyMutations = fmt.Errorf("more than %d header mutations or %d bytes of them", MaxHeaderMutations, MaxHeaderMutationBytes)

// add validates a HeaderMutation and queues its edits: removals first, as
// Envoy applies them. Names a picker may not touch (pseudo-headers, Host,
// framing and hop-by-hop fields, which the proxy owns) are skipped, as
// Envoy ignores them; an invalid name or value is an error, as in Envoy.
func (m *mutations) add(hm *extprocv3.HeaderMutation) error {
	if hm == nil {
		return nil
	}
	if len(m.edits)+len(hm.GetRemoveHeaders())+len(hm.GetSetHeaders()) > MaxHeaderMutations {
		return errTooManyMutations
	}
	for _, name := range hm.GetRemoveHeaders() {
		if !httpguts.ValidHeaderFieldName(name) {
			if strings.HasPrefix(name, ":") {
				continue
			}
			return fmt.Errorf("remove_headers: invalid header name %q", trunc(name))
		}
		if !mutable(name) {
			continue
		}
		m.edits = append(m.edits, headerEdit{name: textproto.CanonicalMIMEHeaderKey(name), op: opRemove})
	}
	for _, hvo := range hm.GetSetHeaders() {
		name, value, err := headerOf(hvo.GetHeader())
		if err != nil {
			return fmt.Errorf("set_headers: %w", err)
		}
		if name == "" || !mutable(name) {
			continue
		}
		m.bytes += len(name) + len(value)
		if m.bytes > MaxHeaderMutationBytes {
			return errTooManyMutations
		}
		op := opSet
		switch {
		case hvo.GetAppend() != nil:
			// The deprecated wrapper decides when present (Envoy).
			if hvo.GetAppend().GetValue() {
				op = opAppend
			}
		case hvo.GetAppendAction() == corev3.HeaderValueOption_ADD_IF_ABSENT:
			op = opAddAbsent
		case hvo.GetAppendAction() == corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			op = opOverwrite
		}
		m.edits = append(m.edits, headerEdit{name: textproto.CanonicalMIMEHeaderKey(name), value: value, op: op})
	}
	return nil
}

// headerOf reads a HeaderValue: raw_value when set, else value (a picker
// sets one of them). A pseudo-header comes back with an empty name.
func headerOf(h *corev3.HeaderValue) (name, value string, err error) {
	name = h.GetKey()
	if strings.HasPrefix(name, ":") {
		return "", "", nil
	}
	if !httpguts.ValidHeaderFieldName(name) {
		return "", "", fmt.Errorf("invalid header name %q", trunc(name))
	}
	value = h.GetValue()
	if raw := h.GetRawValue(); len(raw) > 0 {
		value = string(raw)
	}
	if !httpguts.ValidHeaderFieldValue(value) {
		return "", "", fmt.Errorf("header %s: invalid value", name)
	}
	return name, value, nil
}

// mutable reports whether a picker may set or remove the header: not Host
// (routing stays the proxy's), not the framing and hop-by-hop fields the
// proxy derives itself (a changed body gets its own Content-Length).
func mutable(name string) bool {
	switch strings.ToLower(name) {
	case "host", "content-length", "transfer-encoding", "connection", "keep-alive",
		"proxy-connection", "te", "trailer", "upgrade":
		return false
	}
	return true
}

// apply edits h in order.
func (m *mutations) apply(h http.Header) {
	for _, e := range m.edits {
		switch e.op {
		case opRemove:
			delete(h, e.name)
		case opSet:
			h[e.name] = []string{e.value}
		case opAppend:
			h[e.name] = append(h[e.name], e.value)
		case opAddAbsent:
			if len(h[e.name]) == 0 {
				h[e.name] = []string{e.value}
			}
		case opOverwrite:
			if len(h[e.name]) > 0 {
				h[e.name] = []string{e.value}
			}
		}
	}
}

// value returns the value the edits leave for name (canonical) when they
// set it, "" otherwise.
func (m *mutations) value(name string) string {
	v := ""
	for _, e := range m.edits {
		if e.name != name {
			continue
		}
		switch e.op {
		case opRemove:
			v = ""
		case opSet, opOverwrite, opAddAbsent:
			v = e.value
		case opAppend:
			if v == "" {
				v = e.value
			} else {
				v += "," + e.value
			}
		}
	}
	return v
}

// trunc shortens picker-supplied text quoted in errors and logs.
func trunc(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

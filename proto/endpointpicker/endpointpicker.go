// Package endpointpicker is the contract of a pool's external endpoint
// picker (InferencePool spec.endpointPickerRef) that the control plane and
// the proxy share: the annotation bounding each wait for the picker's
// answer, its default and its domain. The control plane reads the
// annotation and reports a bad one on the pool's status, sending no
// timeout (the proxy's default) instead; the proxy checks what it receives
// against the same domain, so the two cannot drift.
package endpointpicker

import (
	"fmt"
	"time"
)

// TimeoutAnnotation on an InferencePool bounds each wait for its endpoint
// picker's answer (to the request, to the response headers): a Go
// duration within [MinTimeout, MaxTimeout].
const TimeoutAnnotation = "infergate.dev/endpoint-picker-timeout"

// DefaultTimeout applies without the annotation (proxy flag
// --endpoint-picker-timeout): long enough for a picker that queues
// requests under load (the reference picker's flow control), short enough
// that a hung picker fails requests in bounded time.
const DefaultTimeout = 10 * time.Second

// The domain of a timeout.
const (
	MinTimeout = time.Millisecond
	MaxTimeout = 5 * time.Minute
)

// CheckTimeout reports a timeout outside the domain.
func CheckTimeout(d time.Duration) error {
	if d < MinTimeout || d > MaxTimeout {
		return fmt.Errorf("%s is outside %s..%s", d, MinTimeout, MaxTimeout)
	}
	return nil
}

// Timeout reads TimeoutAnnotation: 0 without it, an error when it is not
// a duration within the domain.
func Timeout(annotations map[string]string) (time.Duration, error) {
	raw, ok := annotations[TimeoutAnnotation]
	if !ok {
		return 0, nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil {
		return 0, fmt.Errorf("annotation %s: %q is not a duration", TimeoutAnnotation, raw)
	}
	if err := CheckTimeout(d); err != nil {
		return 0, fmt.Errorf("annotation %s: %w", TimeoutAnnotation, err)
	}
	return d, nil
}

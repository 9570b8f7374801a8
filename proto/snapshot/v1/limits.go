package snapshotv1

// MaxRetryAttempts bounds a Route's retry attempts, the first included:
// more only multiply the load on a failing backend. The control plane
// caps what it sends; a proxy caps what it receives.
const MaxRetryAttempts = 10

// DefaultRetryCodes are the statuses retried when a Retry names none.
func DefaultRetryCodes() []uint32 { return []uint32{502, 503, 504} }

// RetryableStatus reports whether a status may be listed in Retry.codes:
// only error statuses are.
func RetryableStatus(code uint32) bool { return code >= 400 && code <= 599 }

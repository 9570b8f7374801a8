package endpointpicker

import (
	"testing"
	"time"
)

func TestTimeout(t *testing.T) {
	for raw, want := range map[string]time.Duration{"2s": 2 * time.Second, "1ms": time.Millisecond, "5m": 5 * time.Minute} {
		if d, err := Timeout(map[string]string{TimeoutAnnotation: raw}); err != nil || d != want {
			t.Errorf("%q: %v %v", raw, d, err)
		}
	}
	for _, raw := range []string{"soon", "0s", "-1s", "999us", "5m1s", ""} {
		if _, err := Timeout(map[string]string{TimeoutAnnotation: raw}); err == nil {
			t.Errorf("%q accepted", raw)
		}
	}
	if d, err := Timeout(nil); d != 0 || err != nil {
		t.Errorf("no annotation: %v %v", d, err)
	}
}

package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestOnIsBindableAndBelowEphemeral(t *testing.T) {
	lo, hi := window()
	for range 20 {
		p, err := On()
		if err != nil {
			t.Fatal(err)
		}
		if hi > lo && (p < lo || p >= hi) {
			t.Fatalf("port %d outside [%d, %d)", p, lo, hi)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d handed out but not bindable: %v", p, err)
		}
		_ = l.Close()
	}
}

func TestOnSkipsATakenPort(t *testing.T) {
	// Drawing a held port at random is rare, so check the test On relies
	// on directly: a port something listens on is not free.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	held := l.Addr().(*net.TCPAddr).Port
	if freeOnAll(held, []string{"127.0.0.1"}) {
		t.Fatalf("port %d is held but reported free", held)
	}
}

func TestOnNeverRepeatsInOneProcess(t *testing.T) {
	// A test takes several ports before binding any: none may be handed
	// out twice. 1,000 independent draws from the ~22k-port window would
	// repeat one almost surely.
	seen := map[int]bool{}
	for range 1000 {
		p, err := On()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}

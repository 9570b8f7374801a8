package engine

// loraSlots tracks which adapters are resident in the engine's max-loras
// slots. A resident adapter with no running request may be swapped out (least
// recently used first) to load another one; when every slot is busy, requests
// for other adapters wait.
type loraSlots struct {
	max      int
	resident []string // least recently used first
	running  map[string]int
}

func newLoRASlots(max int) *loraSlots {
	return &loraSlots{max: max, running: make(map[string]int)}
}

func (s *loraSlots) isResident(a string) int {
	for i, r := range s.resident {
		if r == a {
			return i
		}
	}
	return -1
}

// admit reports whether a request for adapter a can run now and whether the
// adapter must be loaded first.
func (s *loraSlots) admit(a string) (ok, load bool) {
	if s.isResident(a) >= 0 {
		return true, false
	}
	if len(s.resident) < s.max {
		return true, true
	}
	for _, r := range s.resident {
		if s.running[r] == 0 {
			return true, true
		}
	}
	return false, false
}

// use marks a as running one more request, loading it (evicting an idle
// resident) when needed, and returns the adapter it evicted ("" if none).
// Call only after admit said ok.
func (s *loraSlots) use(a string) (evicted string) {
	if i := s.isResident(a); i >= 0 {
		s.resident = append(s.resident[:i], s.resident[i+1:]...)
	} else if len(s.resident) >= s.max {
		for i, r := range s.resident {
			if s.running[r] == 0 {
				evicted = r
				s.resident = append(s.resident[:i], s.resident[i+1:]...)
				break
			}
		}
	}
	s.resident = append(s.resident, a)
	s.running[a]++
	return evicted
}

func (s *loraSlots) done(a string) {
	s.running[a]--
	if s.running[a] <= 0 {
		delete(s.running, a)
	}
}

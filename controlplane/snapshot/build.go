package snapshot

import (
	"errors"
	"fmt"
	"sort"

	"github.com/infergate/infergate/controlplane/translate"
)

// BuildAll builds the Set of every gateway of a translation, keyed
// "<namespace>/<name>" as the xDS server expects. One gateway failing (which
// only a translator bug can cause: duplicate or empty names) does not keep
// the others from being served; the errors are returned together.
func BuildAll(out *translate.Output) (map[string]*Set, error) {
	return BuildChanged(out, nil, nil)
}

// BuildChanged is BuildAll reusing prevSets, built from prev, for every
// gateway whose resources out shares with prev (an incremental translation
// did not translate it again): only changed gateways are hashed, and of
// those only the resources their translation made anew (NewSetFrom).
func BuildChanged(out, prev *translate.Output, prevSets map[string]*Set) (map[string]*Set, error) {
	sets := make(map[string]*Set, len(out.Gateways))
	var errs []error
	names := make([]string, 0, len(out.Gateways))
	for name := range out.Gateways {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		g := out.Gateways[name]
		if s, ok := prevSets[name]; ok && prev != nil && prev.Gateways[name] == g {
			sets[name] = s
			continue
		}
		s, err := NewSetFrom(prevSets[name], g.Gateway, g.All())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sets[name] = s
	}
	if len(errs) > 0 {
		return sets, fmt.Errorf("building snapshots: %w", errors.Join(errs...))
	}
	return sets, nil
}

package kvindex

import (
	"os"
	"time"

	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

// tokenizerFiles caches the pools' tokenizers by path: a tokenizer.json
// is loaded once (Llama 3's takes ~0.5 s) and again only when the file
// changes (a new ConfigMap or volume revision), and a file that does not
// load is reported once per change, not on every attach pass.
type tokenizerFiles struct {
	byPath map[string]*tokenizerFile
	// builtin is the ByteTokens tokenizer, shared.
	builtin *Tokenizer
}

type tokenizerFile struct {
	mod  time.Time
	size int64
	tok  *Tokenizer
	err  error
}

// get returns the tokenizer tk names; fresh is true when this call loaded
// (or failed to load) the file, so the caller reports a failure once.
func (f *tokenizerFiles) get(tk *snapshotv1.Tokenizer) (tok *Tokenizer, fresh bool, err error) {
	path := tk.GetPath()
	if path == "" {
		if f.builtin == nil {
			if f.builtin, err = NewTokenizer(tk); err != nil {
				return nil, true, err
			}
		}
		return f.builtin, false, nil
	}
	if f.byPath == nil {
		f.byPath = map[string]*tokenizerFile{}
	}
	st, statErr := os.Stat(path)
	e := f.byPath[path]
	switch {
	case statErr != nil && e != nil && e.err != nil && e.tok == nil && e.size == -1:
		return nil, false, e.err // still missing
	case statErr != nil:
		f.byPath[path] = &tokenizerFile{size: -1, err: statErr}
		return nil, true, statErr
	case e != nil && e.size == st.Size() && e.mod.Equal(st.ModTime()):
		return e.tok, false, e.err
	}
	t, err := NewTokenizer(tk)
	f.byPath[path] = &tokenizerFile{mod: st.ModTime(), size: st.Size(), tok: t, err: err}
	return t, true, err
}

// forget drops files no pool names any more.
func (f *tokenizerFiles) forget(used map[string]bool) {
	for p := range f.byPath {
		if !used[p] {
			delete(f.byPath, p)
		}
	}
}

package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// ModelField is where a body's top-level "model" string sits.
type ModelField struct {
	// Name is the decoded model name.
	Name string
	// Start and End delimit the JSON string token, quotes included, so the
	// value can be replaced in place.
	Start, End int
}

var errNotObject = errors.New("body is not a JSON object")

// FindModel scans a JSON object for its top-level "model" string without
// decoding the rest (prompts can be hundreds of KB; only one field is
// needed). Like Python's json (what vLLM uses), a repeated key's last value
// wins; a "model" that is not a string counts as absent. ok is false when
// there is no model; err is non-nil when the body is not a well-formed JSON
// object as far as the scan can tell (it does not validate numbers or
// literals).
func FindModel(b []byte) (f ModelField, ok bool, err error) {
	err = eachTopLevel(b, func(key []byte, esc bool, vs, ve int) error {
		if !isKey(key, esc, "model") {
			return nil
		}
		f, ok = ModelField{}, false
		if b[vs] == '"' {
			name, err := decodeString(b[vs:ve])
			if err != nil {
				return err
			}
			f, ok = ModelField{Name: name, Start: vs, End: ve}, true
		}
		return nil
	})
	if err != nil {
		return ModelField{}, false, err
	}
	return f, ok, nil
}

// eachTopLevel calls fn with every top-level key token (quotes included)
// of the JSON object b and the span of its value, without decoding
// anything. It fails when b is not a well-formed object as far as the scan
// can tell (numbers and literals are not validated).
func eachTopLevel(b []byte, fn func(key []byte, esc bool, vs, ve int) error) error {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errNotObject
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return trailing(b, i+1)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return errors.New("expected object key")
		}
		ke, esc, err := scanString(b, i)
		if err != nil {
			return err
		}
		key := b[i:ke]
		i = skipWS(b, ke)
		if i >= len(b) || b[i] != ':' {
			return errors.New("expected ':' after object key")
		}
		i = skipWS(b, i+1)
		vs := i
		ve, err := skipValue(b, i)
		if err != nil {
			return err
		}
		if err := fn(key, esc, vs, ve); err != nil {
			return err
		}
		i = skipWS(b, ve)
		if i >= len(b) {
			return errors.New("unterminated object")
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return trailing(b, i+1)
		default:
			return errors.New("expected ',' or '}' in object")
		}
	}
}

// RewriteModel returns body with the model string at f replaced by name.
func RewriteModel(body []byte, f ModelField, name string) []byte {
	q := quote(name)
	out := make([]byte, 0, len(body)-(f.End-f.Start)+len(q))
	out = append(out, body[:f.Start]...)
	out = append(out, q...)
	return append(out, body[f.End:]...)
}

// quote returns name as a JSON string.
func quote(name string) []byte {
	q, _ := json.Marshal(name) // a string always marshals
	return q
}

func trailing(b []byte, i int) error {
	if skipWS(b, i) != len(b) {
		return errors.New("data after the JSON object")
	}
	return nil
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString returns the index after the string starting at b[i] == '"' and
// whether it contains escapes.
func scanString(b []byte, i int) (end int, esc bool, err error) {
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return 0, false, errors.New("unterminated string")
		}
		q := j + k
		// The quote is escaped when an odd number of backslashes precede it.
		n := 0
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			if !esc {
				esc = bytes.IndexByte(b[i+1:q], '\\') >= 0
			}
			return q + 1, esc, nil
		}
		esc = true
		j = q + 1
	}
}

// skipValue returns the index after the JSON value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errors.New("missing value")
	}
	switch b[i] {
	case '"':
		end, _, err := scanString(b, i)
		return end, err
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				end, _, err := scanString(b, i)
				if err != nil {
					return 0, err
				}
				i = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
			i++
		}
		return 0, errors.New("unterminated container")
	default:
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if j == i {
					return 0, errors.New("missing value")
				}
				return j, nil
			case '{', '[', '"', ':':
				return 0, errors.New("unexpected character in literal")
			}
			j++
		}
		return j, nil
	}
}

// isKey reports whether the key token tok (quotes included) is name.
func isKey(tok []byte, esc bool, name string) bool {
	if !esc {
		return len(tok) == len(name)+2 && string(tok[1:len(tok)-1]) == name
	}
	s, err := decodeString(tok)
	return err == nil && s == name
}

// decodeString decodes a JSON string token; the fast path (no escapes,
// valid UTF-8, no control characters) is a single copy.
func decodeString(tok []byte) (string, error) {
	inner := tok[1 : len(tok)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) && !hasControl(inner) {
		return string(inner), nil
	}
	var s string
	if err := json.Unmarshal(tok, &s); err != nil {
		return "", err
	}
	return s, nil
}

func hasControl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 {
			return true
		}
	}
	return false
}

package tokenizer

import "unicode/utf8"

// GPT-2's byte-level alphabet: every byte is one printable rune in the
// vocabulary's strings — the printable Latin-1 bytes stand for themselves,
// the other 68 take the runes from U+0100 on, in byte order.
var byteRune, runeByte = byteAlphabet()

// noByte marks a rune outside the alphabet in runeByte.
const noByte = 0xffff

func byteAlphabet() (br [256]rune, rb [324]uint16) {
	for i := range rb {
		rb[i] = noByte
	}
	n := rune(0)
	for b := range 256 {
		if ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF) {
			br[b] = rune(b)
		} else {
			br[b] = 256 + n
			n++
		}
		rb[br[b]] = uint16(b)
	}
	return br, rb
}

// decodeByteLevel appends the bytes a vocabulary string stands for to dst;
// false when it holds a rune outside the alphabet.
func decodeByteLevel(dst []byte, s string) ([]byte, bool) {
	for _, r := range s {
		if r < 0 || int(r) >= len(runeByte) || runeByte[r] == noByte {
			return dst, false
		}
		dst = append(dst, byte(runeByte[r]))
	}
	return dst, true
}

// EncodeByteLevel appends the vocabulary string of raw bytes to dst (what
// a tokenizer.json's vocab and merges hold).
func EncodeByteLevel(dst []byte, raw []byte) []byte {
	for _, b := range raw {
		dst = utf8.AppendRune(dst, byteRune[b])
	}
	return dst
}

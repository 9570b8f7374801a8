// Package tokenizer loads a Hugging Face tokenizer.json of a byte-level BPE
// model (GPT-2, Llama 3, Qwen 2/2.5/3, Mistral's Tekken-style JSON, DeepSeek
// V3 and the like) and turns text into the token ids the model server
// computes for it, which precise prefix-cache matching keys KV blocks by.
//
// It implements exactly what those files use, as the Rust `tokenizers`
// library runs it:
//
//   - model BPE over a byte-level vocabulary (GPT-2's bytes-to-unicode
//     alphabet), merges ranked by their order in the file, ignore_merges
//     (a pre-token found whole in the vocabulary is one token);
//   - normalizer none or NFC;
//   - pre_tokenizer ByteLevel (GPT-2's split pattern when use_regex, the
//     default) or Sequence[Split(pattern, Isolated), ByteLevel(use_regex
//     false)] with the split patterns of GPT-2, cl100k / Llama 3 (digits in
//     runs of up to three) and Qwen 2 (single digits), each matched by a hand
//     written scanner equivalent to the regular expression (Go's regexp has
//     no look-ahead, which the patterns' `\s+(?!\S)` needs);
//   - added tokens, special or not, matched leftmost-longest on the raw
//     text before anything else, with lstrip, rstrip and single_word;
//   - post_processor TemplateProcessing (the tokens around a single
//     sequence, e.g. Llama 3's <|begin_of_text|>), Roberta/Bert processing,
//     ByteLevel (no effect on ids) or a Sequence of those, applied only when
//     the caller asks for special tokens (completions; a rendered chat
//     template carries its own).
//
// Anything else (another model type, byte_fallback, dropout, a pattern or
// normalizer it does not know) is refused at load with an error naming it:
// a tokenizer that guessed would key every block wrong without a sign.
//
// Why no library: the pure-Go ports available (github.com/sugarme/tokenizer)
// split with Go's regexp, which cannot run Llama 3's or GPT-2's pattern
// (the look-ahead), so they drop or mis-split trailing whitespace, and they
// panic on malformed files; tiktoken ports do not read tokenizer.json.
package tokenizer

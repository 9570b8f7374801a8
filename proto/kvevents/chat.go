package kvevents

// Llama 3's chat template as model servers render it before tokenizing
// (without a system prompt of its own): modelsim renders chat requests
// with it, and a proxy renders them the same way to compute the same
// token ids.
const (
	llama3Begin       = "<|begin_of_text|>"
	llama3StartHeader = "<|start_header_id|>"
	llama3EndHeader   = "<|end_header_id|>\n\n"
	llama3EOT         = "<|eot_id|>"
)

// AppendLlama3Message appends one rendered message; call AppendLlama3Begin
// first and AppendLlama3End last.
func AppendLlama3Message(dst []byte, role, content string) []byte {
	dst = append(dst, llama3StartHeader...)
	dst = append(dst, role...)
	dst = append(dst, llama3EndHeader...)
	dst = append(dst, content...)
	return append(dst, llama3EOT...)
}

// AppendLlama3Begin appends the template's opening.
func AppendLlama3Begin(dst []byte) []byte { return append(dst, llama3Begin...) }

// AppendLlama3End appends the assistant header that the answer follows.
func AppendLlama3End(dst []byte) []byte {
	dst = append(dst, llama3StartHeader...)
	dst = append(dst, "assistant"...)
	return append(dst, llama3EndHeader...)
}

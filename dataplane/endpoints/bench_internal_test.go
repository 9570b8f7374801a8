package endpoints

import (
	"os"
	"testing"
)

// BenchmarkScrapeParse compares parsing a simulated vLLM replica's whole
// exposition (testdata/modelsim-vllm.txt; its histograms are most of it,
// as on a real server) with parsing the lines keepFamilies keeps, which
// is what a scrape does.
func BenchmarkScrapeParse(b *testing.B) {
	body, err := os.ReadFile("testdata/modelsim-vllm.txt")
	if err != nil {
		b.Fatal(err)
	}
	names := namesFor("vllm")
	b.Run("whole", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parseKept(body, names); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("kept", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		var scratch []byte
		for b.Loop() {
			var err error
			if _, scratch, err = parse(body, names, scratch); err != nil {
				b.Fatal(err)
			}
		}
	})
}

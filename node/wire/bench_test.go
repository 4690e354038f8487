package wire

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

type blob struct {
	S string `json:"s"`
}

func benchSizes() []struct {
	name string
	data any
} {
	return []struct {
		name string
		data any
	}{
		{"ping", nil},
		{"64KiB", blob{strings.Repeat("x", 64<<10)}},
		{"64KiB-raw", json.RawMessage(`{"s":"` + strings.Repeat("x", 64<<10) + `"}`)},
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	for _, s := range benchSizes() {
		b.Run(s.name, func(b *testing.B) {
			var buf []byte
			f, _ := AppendFrame(nil, "test", 1, s.data)
			b.SetBytes(int64(len(f)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = AppendFrame(buf[:0], "test", 1, s.data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkReadEnvelope(b *testing.B) {
	for _, s := range benchSizes() {
		b.Run(s.name, func(b *testing.B) {
			f, _ := AppendFrame(nil, "test", 1, s.data)
			const n = 64
			stream := bytes.Repeat(f, n)
			src := bytes.NewReader(stream)
			r := NewReader(src, 0)
			b.SetBytes(int64(len(f)))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if i%n == 0 {
					src.Reset(stream)
				}
				if _, err := r.ReadEnvelope(); err != nil && err != io.EOF {
					b.Fatal(err)
				}
			}
		})
	}
}

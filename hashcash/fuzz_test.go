package hashcash

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzParse checks that Parse never panics, that what it refuses it
// refuses with a well-formed *Error, and that what it accepts formats
// back to the same text.
func FuzzParse(f *testing.F) {
	for _, s := range knownStamps {
		f.Add(s)
	}
	for _, s := range []string{
		"",
		":",
		"::::::",
		":::::::",
		"1",
		"1:",
		"1:20",
		"1:20:140422:mint2::salt",
		"1:20:140422:mint2::salt:0:extra",
		"0:20:140422:mint2::salt:0",
		"1:0020:140422:mint2::salt:0",
		"1:-1:140422:mint2::salt:0",
		"1:999:140422:mint2::salt:0",
		"1:20:140230:mint2::salt:0",
		"1:20:1404221260:mint2::salt:0",
		"1:20:140422125960:mint2::salt:0",
		"1:20:14042201000000:mint2::salt:0",
		"1:20:140422:mint 2::salt:0",
		"1:20:140422:mint2:\x00:salt:0",
		"1:20:140422:mint2::sa.lt:0",
		"1:20:140422:mint2::salt:\xff",
		"1:20:140422:" + strings.Repeat("r", 500) + "::salt:0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		s, err := Parse(text)
		if err != nil {
			var herr *Error
			if !errors.As(err, &herr) {
				t.Fatalf("Parse(%q) error %v is not an *Error", text, err)
			}
			if herr.Reason != ReasonMalformed || herr.Field < FieldStamp || herr.Field > FieldCounter {
				t.Fatalf("Parse(%q) error %+v", text, herr)
			}
			if s != nil {
				t.Fatalf("Parse(%q) returned %v with error", text, s)
			}
			return
		}
		if got := s.String(); got != text {
			t.Fatalf("Parse(%q).String() = %q", text, got)
		}
		if s.Bits < 0 || s.Bits > MaxBits || s.Date.Location() != time.UTC {
			t.Fatalf("Parse(%q) = %+v", text, s)
		}
		// Verify must not panic either, and agrees with Parse.
		if _, err := (Policy{Resource: s.Resource, Expiry: -1, Skew: 1 << 62}).Verify(text); errors.Is(err, ErrMalformed) {
			t.Fatalf("Verify(%q) = %v after Parse accepted it", text, err)
		}
	})
}

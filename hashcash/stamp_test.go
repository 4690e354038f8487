package hashcash

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// testNow is the clock of the tests that do not depend on the real one.
var testNow = time.Date(2026, 11, 22, 14, 27, 1, 0, time.UTC)

// Stamps made by the reference tool and by the PHP library of the
// original network, all of which must parse and format back unchanged.
var knownStamps = []string{
	"1:20:140422:mint2::ArrRIabEj3nZrOcM:0000000000007u1E",
	"1:24:140422:mint2:ext1:Nde2ffWsRoe3DXVQ:00000001M+iu",
	"1:20:140422:mint2:ext2:salt2:256507",
	"1:28:140422:::s15xXleWocBKSA95Zw4e1Q==:245861178",
	"1:21:870221:thefox::2B6kv/rFiCdJRzqhH7P2eA==:995214",
	"1:5:140325:thefox::Ifr62IiXO9YHQ2tXyqSOUQ==:5",
	"1:6:8702210958:thefox::sPc4d5G2UZpTuTmyfOy6IA==:13",
	"1:5:870221095824:thefox::lN4IGUU6R5FH27OhM+DGkw==:14",
	"1:11:141119::::656",
	"1:11:141119::::1580",
	"1:16:261122:foo::mNgC3Rr3B8y5pheu:000000000000000pmB",
	"1:16:261122142701:foo::H7IPzMaiAy4AnKqA:000000000Cd7",
	"1:8:2611221427:foo::y2IRR1iYUu8spELY:00000000000003G",
	"1:20:261122:foo:extdata:qrfYycSJ4vqsjmhq:00000008fuP",
}

func TestParseKnownStamps(t *testing.T) {
	for _, text := range knownStamps {
		s, err := Parse(text)
		if err != nil {
			t.Errorf("Parse(%q): %v", text, err)
			continue
		}
		if got := s.String(); got != text {
			t.Errorf("Parse(%q).String() = %q", text, got)
		}
		if z := s.ZeroBits(); z < s.Bits {
			t.Errorf("%q claims %d bits, hash has %d", text, s.Bits, z)
		}
	}
}

func TestParseFields(t *testing.T) {
	s, err := Parse("1:5:870221095824:thefox:a=b;c:lN4IGUU6R5FH27OhM+DGkw==:14")
	if err != nil {
		t.Fatal(err)
	}
	want := Stamp{
		Bits:      5,
		Date:      time.Date(1987, 2, 21, 9, 58, 24, 0, time.UTC),
		DateWidth: DateSecond,
		Resource:  "thefox",
		Ext:       "a=b;c",
		Rand:      "lN4IGUU6R5FH27OhM+DGkw==",
		Counter:   "14",
	}
	if *s != want {
		t.Errorf("Parse = %+v, want %+v", *s, want)
	}
}

func TestParseDates(t *testing.T) {
	tests := []struct {
		date string
		want time.Time
	}{
		{"140422", time.Date(2014, 4, 22, 0, 0, 0, 0, time.UTC)},
		{"691231", time.Date(2069, 12, 31, 0, 0, 0, 0, time.UTC)},
		{"700101", time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"2611221427", time.Date(2026, 11, 22, 14, 27, 0, 0, time.UTC)},
		{"240229235959", time.Date(2024, 2, 29, 23, 59, 59, 0, time.UTC)},
	}
	for _, tt := range tests {
		s, err := Parse("1:0:" + tt.date + ":r:::")
		if err != nil {
			t.Errorf("date %s: %v", tt.date, err)
			continue
		}
		if !s.Date.Equal(tt.want) || s.DateWidth != len(tt.date) {
			t.Errorf("date %s = %v (width %d), want %v", tt.date, s.Date, s.DateWidth, tt.want)
		}
	}
}

func TestParseMalformed(t *testing.T) {
	tests := []struct {
		name  string
		stamp string
		field int
	}{
		{"empty", "", FieldStamp},
		{"too few fields", "1:20:140422:mint2::salt", FieldStamp},
		{"too many fields", "1:20:140422:mint2::salt:0:extra", FieldStamp},
		{"longer than 512 bytes", "1:20:140422:" + strings.Repeat("r", 500) + "::salt:0", FieldStamp},
		{"version 0", "0:20:140422:mint2::salt:0", FieldVersion},
		{"version 2", "2:20:140422:mint2::salt:0", FieldVersion},
		{"version not a number", "v1:20:140422:mint2::salt:0", FieldVersion},
		{"empty version", ":20:140422:mint2::salt:0", FieldVersion},
		{"non-numeric bits", "1:2x:140422:mint2::salt:0", FieldBits},
		{"negative bits", "1:-2:140422:mint2::salt:0", FieldBits},
		{"empty bits", "1::140422:mint2::salt:0", FieldBits},
		{"oversize bits", "1:0020:140422:mint2::salt:0", FieldBits},
		{"bits with leading zero", "1:020:140422:mint2::salt:0", FieldBits},
		{"more bits than SHA-1 has", "1:161:140422:mint2::salt:0", FieldBits},
		{"date of 8 digits", "1:20:14042201:mint2::salt:0", FieldDate},
		{"oversize date", "1:20:14042201000000:mint2::salt:0", FieldDate},
		{"date not digits", "1:20:14O422:mint2::salt:0", FieldDate},
		{"month 13", "1:20:141322:mint2::salt:0", FieldDate},
		{"month 0", "1:20:140022:mint2::salt:0", FieldDate},
		{"day 0", "1:20:140400:mint2::salt:0", FieldDate},
		{"30 February", "1:20:140230:mint2::salt:0", FieldDate},
		{"29 February of a common year", "1:20:230229:mint2::salt:0", FieldDate},
		{"hour 24", "1:20:1404222400:mint2::salt:0", FieldDate},
		{"minute 60", "1:20:1404221260:mint2::salt:0", FieldDate},
		{"second 60", "1:20:140422125960:mint2::salt:0", FieldDate},
		{"space in resource", "1:20:140422:mint 2::salt:0", FieldResource},
		{"control character in resource", "1:20:140422:mint\n2::salt:0", FieldResource},
		{"non-ASCII resource", "1:20:140422:mïnt2::salt:0", FieldResource},
		{"tab in ext", "1:20:140422:mint2:a\tb:salt:0", FieldExt},
		{"dot in rand", "1:20:140422:mint2::sa.lt:0", FieldRand},
		{"minus in counter", "1:20:140422:mint2::salt:-1", FieldCounter},
		{"newline after counter", "1:20:140422:mint2::salt:0\n", FieldCounter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.stamp)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want error", tt.stamp, s)
			}
			var herr *Error
			if !errors.As(err, &herr) {
				t.Fatalf("Parse(%q) error %v is not an *Error", tt.stamp, err)
			}
			if herr.Reason != ReasonMalformed || herr.Field != tt.field {
				t.Errorf("Parse(%q): reason %v, field %d; want %v, field %d (%v)",
					tt.stamp, herr.Reason, herr.Field, ReasonMalformed, tt.field, err)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("errors.Is(%v, ErrMalformed) = false", err)
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	_, err := Parse("1:2x:140422:mint2::salt:0")
	want := `hashcash: malformed stamp: field 2 (bits): "2x" is not a decimal number`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
	if errors.Is(err, ErrBits) {
		t.Errorf("errors.Is(%v, ErrBits) = true", err)
	}
}

func TestStringDateWidths(t *testing.T) {
	s := Stamp{Bits: 12, Date: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Resource: "r", Rand: "x", Counter: "0"}
	for width, want := range map[int]string{
		DateDay:    "1:12:260102:r::x:0",
		DateMinute: "1:12:2601020304:r::x:0",
		DateSecond: "1:12:260102030405:r::x:0",
		0:          "1:12:260102030405:r::x:0",
	} {
		s.DateWidth = width
		if got := s.String(); got != want {
			t.Errorf("width %d: String() = %q, want %q", width, got, want)
		}
	}
}

func TestZeroBits(t *testing.T) {
	// SHA-1 01d106345750ab94a8d80e1c0dbe0da3662d476e: 7 zero bits.
	if got := ZeroBits("1:5:140325:thefox::Ifr62IiXO9YHQ2tXyqSOUQ==:5"); got != 7 {
		t.Errorf("ZeroBits = %d, want 7", got)
	}
}

func TestExpires(t *testing.T) {
	s, err := Parse("1:15:261122142701:node::abcd:0")
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 24, 14, 27, 1, 0, time.UTC)
	if got := s.Expires(48 * time.Hour); !got.Equal(want) {
		t.Errorf("Expires(48h) = %v, want %v", got, want)
	}
	if got := (Policy{}).ExpiresAt(s); !got.Equal(want) {
		t.Errorf("Policy{}.ExpiresAt = %v, want %v", got, want)
	}
	if got := (Policy{Expiry: -1}).ExpiresAt(s); !got.IsZero() {
		t.Errorf("ExpiresAt without expiry = %v, want zero time", got)
	}
}

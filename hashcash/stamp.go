package hashcash

import (
	"crypto/sha1"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// MaxLen is the length in bytes of the longest stamp that Parse accepts.
const MaxLen = 512

// MaxBits is the largest bit count a stamp can claim: the size of a
// SHA-1 hash.
const MaxBits = 160

// Date widths, in digits, for Stamp.DateWidth.
const (
	DateDay    = 6  // YYMMDD
	DateMinute = 10 // YYMMDDhhmm
	DateSecond = 12 // YYMMDDhhmmss
)

// A Stamp is a parsed Hashcash version 1 stamp. Its String method gives
// back the exact text that was parsed, which is the text that is hashed.
type Stamp struct {
	// Bits is the number of leading zero bits the stamp claims.
	Bits int
	// Date is when the stamp was minted, in UTC, truncated to DateWidth.
	Date time.Time
	// DateWidth is the number of digits of the date field: DateDay,
	// DateMinute or DateSecond. Any other value formats as DateSecond.
	DateWidth int
	// Resource is what the stamp pays for, such as a node ID.
	Resource string
	// Ext is the extension field, usually empty.
	Ext string
	// Rand is the random field that makes the stamp unique.
	Rand string
	// Counter is the field varied while minting.
	Counter string
}

// String returns the stamp's text.
func (s *Stamp) String() string {
	var b strings.Builder
	b.Grow(24 + len(s.Resource) + len(s.Ext) + len(s.Rand) + len(s.Counter))
	b.WriteString("1:")
	b.WriteString(strconv.Itoa(s.Bits))
	b.WriteByte(':')
	b.WriteString(formatDate(s.Date, s.DateWidth))
	b.WriteByte(':')
	b.WriteString(s.Resource)
	b.WriteByte(':')
	b.WriteString(s.Ext)
	b.WriteByte(':')
	b.WriteString(s.Rand)
	b.WriteByte(':')
	b.WriteString(s.Counter)
	return b.String()
}

// Expires returns the moment a stamp stops being valid under the given
// expiry period: its date plus expiry.
func (s *Stamp) Expires(expiry time.Duration) time.Time {
	return s.Date.Add(expiry)
}

// ZeroBits returns the number of leading zero bits of the SHA-1 hash of
// s.String(): the work the stamp actually carries.
func (s *Stamp) ZeroBits() int {
	return ZeroBits(s.String())
}

// ZeroBits returns the number of leading zero bits of the SHA-1 hash of
// the text stamp, between 0 and 160.
func ZeroBits(stamp string) int {
	sum := sha1.Sum([]byte(stamp))
	n := 0
	for _, c := range sum {
		if c != 0 {
			return n + bits.LeadingZeros8(c)
		}
		n += 8
	}
	return n
}

// Parse parses a Hashcash version 1 stamp. It checks the syntax only; use
// Policy.Verify to check the work, the resource and the date. A refused
// text yields an *Error with Reason ReasonMalformed and the number of the
// offending field.
//
// Parse is strict so that a parsed stamp formats back to the same text:
// the bit count is a decimal number from 0 to 160 without leading zeros,
// the date is a valid UTC date of 6, 10 or 12 digits, the resource and
// extension are printable ASCII other than space and colon, and rand and
// counter use the base64 alphabet and '=', as in the reference tool.
func Parse(stamp string) (*Stamp, error) {
	if len(stamp) > MaxLen {
		return nil, malformed(FieldStamp, "%d bytes, longer than %d", len(stamp), MaxLen)
	}
	var f [7]string
	rest := stamp
	for i := range f {
		j := strings.IndexByte(rest, ':')
		if i == len(f)-1 {
			if j >= 0 {
				return nil, malformed(FieldStamp, "more than %d fields", len(f))
			}
			f[i] = rest
			break
		}
		if j < 0 {
			return nil, malformed(FieldStamp, "%d fields, want %d", i+1, len(f))
		}
		f[i], rest = rest[:j], rest[j+1:]
	}

	if f[0] != "1" {
		if !isDigits(f[0]) {
			return nil, malformed(FieldVersion, "%q is not a version number", f[0])
		}
		return nil, malformed(FieldVersion, "unsupported version %q", f[0])
	}
	var s Stamp
	var err *Error
	if s.Bits, err = parseBits(f[1]); err != nil {
		return nil, err
	}
	if s.Date, err = parseDate(f[2]); err != nil {
		return nil, err
	}
	s.DateWidth = len(f[2])
	if i := badTextChar(f[3]); i >= 0 {
		return nil, malformed(FieldResource, "bad character %q at offset %d", f[3][i], i)
	}
	s.Resource = f[3]
	if i := badTextChar(f[4]); i >= 0 {
		return nil, malformed(FieldExt, "bad character %q at offset %d", f[4][i], i)
	}
	s.Ext = f[4]
	if i := badBase64Char(f[5]); i >= 0 {
		return nil, malformed(FieldRand, "bad character %q at offset %d", f[5][i], i)
	}
	s.Rand = f[5]
	if i := badBase64Char(f[6]); i >= 0 {
		return nil, malformed(FieldCounter, "bad character %q at offset %d", f[6][i], i)
	}
	s.Counter = f[6]
	return &s, nil
}

// parseBits parses the bits field: at most three digits (as in the
// reference tool), no leading zeros, at most MaxBits.
func parseBits(f string) (int, *Error) {
	switch {
	case f == "":
		return 0, malformed(FieldBits, "empty")
	case len(f) > 3:
		return 0, malformed(FieldBits, "oversize field of %d bytes, at most 3 digits", len(f))
	case !isDigits(f):
		return 0, malformed(FieldBits, "%q is not a decimal number", f)
	case len(f) > 1 && f[0] == '0':
		return 0, malformed(FieldBits, "%q has a leading zero", f)
	}
	n, _ := strconv.Atoi(f) // at most 3 digits: cannot fail
	if n > MaxBits {
		return 0, malformed(FieldBits, "%d bits, more than %d", n, MaxBits)
	}
	return n, nil
}

// parseDate parses YYMMDD, YYMMDDhhmm or YYMMDDhhmmss as a UTC time.
func parseDate(f string) (time.Time, *Error) {
	switch len(f) {
	case DateDay, DateMinute, DateSecond:
	default:
		if len(f) > DateSecond {
			return time.Time{}, malformed(FieldDate, "oversize field of %d bytes, want 6, 10 or 12 digits", len(f))
		}
		return time.Time{}, malformed(FieldDate, "%d bytes, want 6, 10 or 12 digits", len(f))
	}
	if !isDigits(f) {
		return time.Time{}, malformed(FieldDate, "%q is not a date of digits", f)
	}
	var v [6]int // year, month, day, hour, minute, second
	for i := 0; i < len(f); i += 2 {
		v[i/2] = int(f[i]-'0')*10 + int(f[i+1]-'0')
	}
	year := 2000 + v[0]
	if v[0] >= 70 {
		year = 1900 + v[0]
	}
	month, day, hour, minute, sec := v[1], v[2], v[3], v[4], v[5]
	t := time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC)
	// time.Date normalizes out-of-range values; a valid date survives
	// the round trip unchanged.
	if month < 1 || month > 12 || t.Day() != day || t.Hour() != hour || t.Minute() != minute || t.Second() != sec {
		return time.Time{}, malformed(FieldDate, "%q is not a valid date", f)
	}
	return t, nil
}

// formatDate formats t in UTC with width digits (6, 10 or 12; other
// values mean 12).
func formatDate(t time.Time, width int) string {
	const layout = "060102150405"
	switch width {
	case DateDay, DateMinute:
	default:
		width = DateSecond
	}
	return t.UTC().Format(layout[:width])
}

// truncateDate returns t in UTC truncated to what a date field of width
// digits holds.
func truncateDate(t time.Time, width int) time.Time {
	t = t.UTC()
	switch width {
	case DateDay:
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	case DateMinute:
		return t.Truncate(time.Minute)
	}
	return t.Truncate(time.Second)
}

// canFormatYear reports whether a date in year can be written with a
// two-digit year and read back the same.
func canFormatYear(year int) bool { return year >= 1970 && year <= 2069 }

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// badTextChar returns the index of the first byte of s that may not
// appear in a resource or extension (outside '!'..'~', or ':'), or -1.
func badTextChar(s string) int {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < '!' || c > '~' || c == ':' {
			return i
		}
	}
	return -1
}

// badBase64Char returns the index of the first byte of s outside the
// base64 alphabet and '=' (the reference tool's alphabet for rand and
// counter), or -1.
func badBase64Char(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '=') {
			return i
		}
	}
	return -1
}

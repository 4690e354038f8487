package hashcash

import (
	"errors"
	"testing"
	"time"
)

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func TestVerifyKnownStampsWithoutExpiry(t *testing.T) {
	for _, text := range knownStamps {
		s, err := Parse(text)
		if err != nil {
			t.Fatal(err)
		}
		p := Policy{MinBits: s.Bits, Resource: s.Resource, Expiry: -1, Now: fixedClock(testNow)}
		if _, err := p.Verify(text); err != nil {
			t.Errorf("Verify(%q): %v", text, err)
		}
	}
}

func TestVerifyAccepts(t *testing.T) {
	const stamp = "1:20:140422:mint2:ext2:salt2:256507"
	date := time.Date(2014, 4, 22, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		p    Policy
	}{
		{"fewer bits required", Policy{MinBits: 15, Resource: "mint2", Now: fixedClock(date.Add(time.Hour))}},
		{"exactly the bits claimed", Policy{MinBits: 20, Resource: "mint2", Now: fixedClock(date.Add(time.Hour))}},
		{"last second before expiry", Policy{Resource: "mint2", Now: fixedClock(date.Add(DefaultExpiry - time.Second))}},
		{"longer expiry", Policy{Resource: "mint2", Expiry: 72 * time.Hour, Now: fixedClock(date.Add(71 * time.Hour))}},
		{"dated ahead within default skew", Policy{Resource: "mint2", Now: fixedClock(date.Add(-DefaultSkew))}},
		{"dated ahead within set skew", Policy{Resource: "mint2", Skew: time.Hour, Now: fixedClock(date.Add(-time.Hour))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tt.p.Verify(stamp)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if s.String() != stamp || s.Bits != 20 || s.Resource != "mint2" {
				t.Errorf("Verify returned %+v", s)
			}
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	const (
		stamp    = "1:20:140422:mint2:ext2:salt2:256507"
		badHash  = "1:20:140422:mint2:ext2:salt2:256508" // claims 20 bits, has fewer
		thefox87 = "1:21:870221:thefox::2B6kv/rFiCdJRzqhH7P2eA==:995214"
	)
	date := time.Date(2014, 4, 22, 0, 0, 0, 0, time.UTC)
	at := fixedClock(date.Add(time.Hour))
	if z := ZeroBits(badHash); z >= 20 {
		t.Fatalf("test stamp %q has %d bits", badHash, z)
	}
	tests := []struct {
		name   string
		stamp  string
		p      Policy
		reason Reason
		is     error
	}{
		{"claims too few bits", stamp, Policy{MinBits: 21, Resource: "mint2", Now: at}, ReasonBits, ErrBits},
		{"hash lacks claimed bits", badHash, Policy{MinBits: 12, Resource: "mint2", Now: at}, ReasonBits, ErrBits},
		{"wrong resource", stamp, Policy{Resource: "mint3", Now: at}, ReasonResource, ErrResource},
		{"resource differs in case", stamp, Policy{Resource: "Mint2", Now: at}, ReasonResource, ErrResource},
		{"expired", stamp, Policy{Resource: "mint2", Now: fixedClock(date.Add(DefaultExpiry))}, ReasonExpired, ErrExpired},
		{"expired under set expiry", stamp, Policy{Resource: "mint2", Expiry: time.Hour, Now: fixedClock(date.Add(time.Hour))}, ReasonExpired, ErrExpired},
		{"1987 stamp, 365-day expiry", thefox87, Policy{Resource: "thefox", Expiry: 365 * 24 * time.Hour, Now: at}, ReasonExpired, ErrExpired},
		{"from the future", stamp, Policy{Resource: "mint2", Now: fixedClock(date.Add(-DefaultSkew - time.Second))}, ReasonFuture, ErrFuture},
		{"future, no skew allowed", stamp, Policy{Resource: "mint2", Skew: -1, Now: fixedClock(date.Add(-time.Second))}, ReasonFuture, ErrFuture},
		{"malformed", "1:20:140422:mint2:ext2:salt2", Policy{Resource: "mint2", Now: at}, ReasonMalformed, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tt.p.Verify(tt.stamp)
			if err == nil {
				t.Fatalf("Verify accepted %v", s)
			}
			var herr *Error
			if !errors.As(err, &herr) || herr.Reason != tt.reason {
				t.Fatalf("Verify error %v, want reason %v", err, tt.reason)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
			for _, other := range []error{ErrMalformed, ErrBits, ErrResource, ErrExpired, ErrFuture, ErrSpent} {
				if other != tt.is && errors.Is(err, other) {
					t.Errorf("errors.Is(%v, %v) = true", err, other)
				}
			}
			if s != nil {
				t.Errorf("Verify returned stamp %v with error", s)
			}
		})
	}
}

// TestVerifyWrapped checks that the reason survives wrapping, as it
// does when a caller adds context.
func TestVerifyWrapped(t *testing.T) {
	_, err := Policy{Resource: "x"}.Verify("1:20:140422:mint2:ext2:salt2:256507")
	wrapped := errors.Join(errors.New("peer 7"), err)
	if !errors.Is(wrapped, ErrResource) {
		t.Errorf("errors.Is(wrapped, ErrResource) = false for %v", wrapped)
	}
	if !errors.Is(&Error{Reason: ReasonSpent, Detail: "seen at 12:00"}, ErrSpent) {
		t.Error("an *Error with ReasonSpent is not ErrSpent")
	}
}

func TestReasonString(t *testing.T) {
	for r, want := range map[Reason]string{
		ReasonMalformed: "malformed stamp",
		ReasonBits:      "insufficient bits",
		ReasonResource:  "wrong resource",
		ReasonExpired:   "expired stamp",
		ReasonFuture:    "stamp from the future",
		ReasonSpent:     "spent stamp",
		Reason(0):       "Reason(0)",
		Reason(99):      "Reason(99)",
	} {
		if got := r.String(); got != want {
			t.Errorf("Reason(%d).String() = %q, want %q", int(r), got, want)
		}
	}
}

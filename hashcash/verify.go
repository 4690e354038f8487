package hashcash

import (
	"fmt"
	"strings"
	"time"
)

// Defaults for the zero fields of a Policy.
const (
	// DefaultExpiry is how long a stamp stays valid after its date:
	// two days, as on the original network.
	DefaultExpiry = 48 * time.Hour
	// DefaultSkew is how far a stamp's date may lie ahead of the
	// verifier's clock. Stamps minted by this package carry the time to
	// the second, so only clock differences between nodes need
	// covering; ten minutes covers an unsynchronized clock without
	// letting a stamp be pre-minted for much later use.
	DefaultSkew = 10 * time.Minute
)

// A Policy says which stamps Verify accepts. The zero Policy accepts a
// stamp of any bit count for the empty resource, dated within the last
// DefaultExpiry.
type Policy struct {
	// MinBits is the least number of bits a stamp must claim.
	MinBits int
	// Resource is the resource the stamp must be minted for, compared
	// exactly (case-sensitive) unless FoldCase is set. It is always checked.
	Resource string
	// FoldCase compares resources without regard to case, as the C tool
	// does (it lowercases the resource when minting). The protocol's
	// resources are lowercase already and leave this off.
	FoldCase bool
	// Expiry is how long a stamp is valid after its date. Zero means
	// DefaultExpiry; a negative value means stamps never expire.
	Expiry time.Duration
	// Skew is how far a stamp's date may lie in the future. Zero means
	// DefaultSkew; a negative value allows no future date at all.
	Skew time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

func (p *Policy) expiry() time.Duration {
	if p.Expiry == 0 {
		return DefaultExpiry
	}
	return p.Expiry
}

func (p *Policy) skew() time.Duration {
	switch {
	case p.Skew == 0:
		return DefaultSkew
	case p.Skew < 0:
		return 0
	}
	return p.Skew
}

func (p *Policy) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// ExpiresAt returns when s stops being valid under p: its date plus the
// policy's expiry period. It returns the zero Time if stamps never
// expire under p. A spent-stamp store keeps s at least until then.
func (p Policy) ExpiresAt(s *Stamp) time.Time {
	if p.Expiry < 0 {
		return time.Time{}
	}
	return s.Expires(p.expiry())
}

// Verify parses stamp and checks it against p. It returns the parsed
// stamp, or an *Error whose Reason says why the stamp was refused.
//
// The cheap checks come first, so the reason reported for a stamp with
// several faults is, in order: malformed, too few bits claimed, wrong
// resource, from the future, expired, and last the hash not carrying
// the claimed bits (ReasonBits).
func (p Policy) Verify(stamp string) (*Stamp, error) {
	s, err := Parse(stamp)
	if err != nil {
		return nil, err
	}
	if s.Bits < p.MinBits {
		return nil, &Error{Reason: ReasonBits, Detail: fmt.Sprintf("stamp claims %d bits, need %d", s.Bits, p.MinBits)}
	}
	if s.Resource != p.Resource && !(p.FoldCase && strings.EqualFold(s.Resource, p.Resource)) {
		return nil, &Error{Reason: ReasonResource, Detail: fmt.Sprintf("stamp is for %q, want %q", s.Resource, p.Resource)}
	}
	now := p.now()
	if limit := now.Add(p.skew()); s.Date.After(limit) {
		return nil, &Error{Reason: ReasonFuture, Detail: fmt.Sprintf("dated %s, %s ahead of %s", s.Date.Format(time.RFC3339), s.Date.Sub(now).Round(time.Second), now.UTC().Format(time.RFC3339))}
	}
	if p.Expiry >= 0 {
		if exp := s.Expires(p.expiry()); !now.Before(exp) {
			return nil, &Error{Reason: ReasonExpired, Detail: fmt.Sprintf("dated %s, expired at %s", s.Date.Format(time.RFC3339), exp.Format(time.RFC3339))}
		}
	}
	if z := ZeroBits(stamp); z < s.Bits {
		return nil, &Error{Reason: ReasonBits, Detail: fmt.Sprintf("stamp claims %d bits, hash has %d", s.Bits, z)}
	}
	return s, nil
}

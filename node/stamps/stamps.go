// Package stamps checks the hashcash stamps that pay for peers' requests:
// a stamp must satisfy the node's policy for its purpose and must not have
// been spent before. Spent stamps are kept in the store until they expire,
// so a replayed stamp is refused across restarts too.
package stamps

import (
	"errors"
	"fmt"

	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/store"
)

// Checker verifies and spends stamps.
type Checker struct {
	Spent *store.Stamps
	// Policy is the template of every check; Check sets its MinBits and
	// Resource.
	Policy hashcash.Policy
}

// Check accepts stamp if it carries at least bits bits for resource, is
// in date and unspent, and records it as spent. A refusal is a
// *hashcash.Error whose Reason says why (ReasonSpent for a replay). A
// stamp that cannot be recorded because the disk is nearly full fails
// with an error wrapping store.ErrLowSpace: the request must be refused
// (protocol error 9110), since an unrecorded stamp could be replayed.
func (c *Checker) Check(stamp, resource string, bits int) (*hashcash.Stamp, error) {
	p := c.Policy
	p.MinBits, p.Resource = bits, resource
	st, err := p.Verify(stamp)
	if err != nil {
		return nil, err
	}
	exp := p.ExpiresAt(st)
	if exp.IsZero() {
		return nil, errors.New("stamps: a policy whose stamps never expire cannot guard against replay")
	}
	if err := c.Spent.Spend(stamp, exp); err != nil {
		if errors.Is(err, store.ErrSpent) {
			return nil, &hashcash.Error{Reason: hashcash.ReasonSpent}
		}
		return nil, fmt.Errorf("stamps: %w", err)
	}
	return st, nil
}

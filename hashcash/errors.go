package hashcash

import "fmt"

// A Reason says why a stamp was refused.
type Reason int

// Reasons for refusing a stamp.
const (
	// ReasonMalformed: the text is not a well-formed version 1 stamp.
	// Error.Field names the offending field.
	ReasonMalformed Reason = iota + 1
	// ReasonBits: the stamp claims fewer bits than required, or its
	// hash does not have as many leading zero bits as it claims.
	ReasonBits
	// ReasonResource: the stamp was minted for another resource.
	ReasonResource
	// ReasonExpired: the stamp's date is older than the expiry period.
	ReasonExpired
	// ReasonFuture: the stamp's date lies further in the future than
	// the allowed clock skew.
	ReasonFuture
	// ReasonSpent: the stamp has been spent before. This package does
	// not keep spent stamps; a spent-stamp store reports this reason.
	ReasonSpent
)

var reasonNames = [...]string{
	ReasonMalformed: "malformed stamp",
	ReasonBits:      "insufficient bits",
	ReasonResource:  "wrong resource",
	ReasonExpired:   "expired stamp",
	ReasonFuture:    "stamp from the future",
	ReasonSpent:     "spent stamp",
}

// String returns a short description of r, such as "expired stamp".
func (r Reason) String() string {
	if r > 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// Field numbers used in Error.Field for ReasonMalformed. Field 0 stands
// for the stamp as a whole (too long, wrong number of fields).
const (
	FieldStamp    = 0
	FieldVersion  = 1
	FieldBits     = 2
	FieldDate     = 3
	FieldResource = 4
	FieldExt      = 5
	FieldRand     = 6
	FieldCounter  = 7
)

var fieldNames = [...]string{"stamp", "version", "bits", "date", "resource", "ext", "rand", "counter"}

// Error is the error returned when a stamp is refused. Callers map
// Reason to protocol error codes:
//
//	var herr *hashcash.Error
//	if errors.As(err, &herr) && herr.Reason == hashcash.ReasonExpired { ... }
//
// or test for one reason with errors.Is(err, hashcash.ErrExpired).
type Error struct {
	Reason Reason
	// Field is the 1-based number of the offending field
	// (FieldVersion … FieldCounter) when Reason is ReasonMalformed,
	// or FieldStamp (0) when the fault lies with the stamp as a whole.
	Field int
	// Detail describes the fault for people; it is not meant to be parsed.
	Detail string
}

// Sentinel errors, one per Reason, for use with errors.Is. An *Error
// matches the sentinel of its Reason, whatever its Field and Detail.
var (
	ErrMalformed = &Error{Reason: ReasonMalformed}
	ErrBits      = &Error{Reason: ReasonBits}
	ErrResource  = &Error{Reason: ReasonResource}
	ErrExpired   = &Error{Reason: ReasonExpired}
	ErrFuture    = &Error{Reason: ReasonFuture}
	ErrSpent     = &Error{Reason: ReasonSpent}
)

func (e *Error) Error() string {
	msg := "hashcash: " + e.Reason.String()
	if e.Reason == ReasonMalformed {
		if e.Field > 0 && e.Field < len(fieldNames) {
			msg += fmt.Sprintf(": field %d (%s)", e.Field, fieldNames[e.Field])
		}
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Is reports whether target is the sentinel error (such as ErrExpired)
// for e's Reason.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Field == 0 && t.Detail == "" && t.Reason == e.Reason
}

func malformed(field int, format string, args ...any) *Error {
	return &Error{Reason: ReasonMalformed, Field: field, Detail: fmt.Sprintf(format, args...)}
}

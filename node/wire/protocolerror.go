package wire

import "errors"

// A ProtocolError is an error frame: one the peer sent (Remote), in answer
// to a Call or to end the handshake, or one this side sent before closing
// the session because the peer broke the protocol.
type ProtocolError struct {
	Code   Code
	Text   string
	Name   string // the name of the offending frame, if known
	Remote bool   // sent by the peer
	Err    error  // the cause on this side, if any
}

func (e *ProtocolError) Error() string {
	s := "peer: "
	if e.Remote {
		s += "peer sent error "
	} else {
		s += "protocol error "
	}
	s += e.Code.String()
	if e.Name != "" {
		s += " on " + e.Name
	}
	if e.Text != "" && e.Text != e.Code.Text() {
		s += ": " + e.Text
	}
	return s
}

// Unwrap returns the cause.
func (e *ProtocolError) Unwrap() error { return e.Err }

// CodeOf returns the error code of err if it is or wraps a ProtocolError,
// and 0 otherwise.
func CodeOf(err error) Code {
	var pe *ProtocolError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return 0
}

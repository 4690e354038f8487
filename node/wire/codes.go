package wire

import "strconv"

// A Code is the number carried in an error frame.
//
// The ranges are the original protocol's: 1xxx identity and handshake,
// 2xxx–3xxx its session encryption (replaced by TLS; not used), 4xxx
// hashcash, 5xxx bridges (reserved), 9xxx everything else. Codes the
// original defined keep their numbers. The 9040–9070 codes are shared with
// the control socket.
type Code int

// Error codes.
const (
	// CodeIdentifyFirst: a frame other than hello, id, id_ok, error or quit
	// before the handshake completed. The session is closed.
	CodeIdentifyFirst Code = 1000
	// CodeAlreadyIdentified: a second hello or id. The session goes on.
	CodeAlreadyIdentified Code = 1010
	// CodeOwnAddress: the peer presented the receiver's own key
	// ("you use my ID"). The session is closed.
	CodeOwnAddress Code = 1020
	// CodeAddressMismatch: the address in id is not the key of the peer's
	// TLS certificate ("id does not match key"). The session is closed.
	CodeAddressMismatch Code = 1030
	// CodeProtocolVersion: hello names a protocol version the receiver does
	// not speak. The session is closed.
	CodeProtocolVersion Code = 1040
	// CodeDuplicateSession: the receiver already has a session with this
	// peer and keeps that one. The session is closed; the error comes
	// after the handshake, or in place of hello when the connection was
	// dialled only to check the peer's address.
	CodeDuplicateSession Code = 1050

	// CodeHashcash: a missing, malformed, expired, spent or too cheap
	// hashcash stamp.
	CodeHashcash Code = 4000

	// CodeInvalidData: the data does not fit the message (missing or
	// malformed field, unknown rid, handshake frames out of order).
	CodeInvalidData Code = 9000
	// CodeUnknownCommand: a message name the receiver does not know.
	CodeUnknownCommand Code = 9020
	// CodeNotImplemented: a known message the receiver does not serve.
	CodeNotImplemented Code = 9030
	// CodeFrameTooLarge: a frame over the limit. The session is closed.
	CodeFrameTooLarge Code = 9040
	// CodeBusy: the receiver cannot take the request now (too many in
	// flight, queue full); the sender may retry later.
	CodeBusy Code = 9050
	// CodeFailed: the request was valid but failed; the text says why.
	CodeFailed Code = 9060
	// CodeBadEnvelope: a frame that is JSON but not an envelope (no valid
	// name, rid not an unsigned integer). The session goes on.
	CodeBadEnvelope Code = 9070
	// CodeNotJSON: a frame that is not JSON text. The session goes on
	// once the handshake is complete, and is closed before.
	CodeNotJSON Code = 9080
	// CodeTimeout: the handshake did not complete, or the peer sent
	// nothing, within the deadline. The session is closed.
	CodeTimeout Code = 9090
	// CodeTooManyConnections: the receiver has no room for another
	// connection (in all, or from the peer's IP address). It is sent in
	// place of hello, and the connection is closed.
	CodeTooManyConnections Code = 9100
	// CodeInsufficientStorage: the receiver is low on disk space and
	// refuses requests that would make it write (such as node_find, which
	// spends a stamp); the sender should ask another node. The session
	// goes on.
	CodeInsufficientStorage Code = 9110
	// CodeUnknown: any other error.
	CodeUnknown Code = 9999
)

var codeText = map[Code]string{
	CodeIdentifyFirst:       "must identify first",
	CodeAlreadyIdentified:   "already identified",
	CodeOwnAddress:          "you use my address",
	CodeAddressMismatch:     "address does not match key",
	CodeProtocolVersion:     "protocol version not supported",
	CodeDuplicateSession:    "duplicate session",
	CodeHashcash:            "hashcash verification failed",
	CodeInvalidData:         "invalid data",
	CodeUnknownCommand:      "unknown command",
	CodeNotImplemented:      "not implemented",
	CodeFrameTooLarge:       "frame too large",
	CodeBusy:                "busy",
	CodeFailed:              "request failed",
	CodeBadEnvelope:         "invalid envelope",
	CodeNotJSON:             "not JSON",
	CodeTimeout:             "timeout",
	CodeTooManyConnections:  "too many connections",
	CodeInsufficientStorage: "insufficient storage",
	CodeUnknown:             "unknown error",
}

// Codes returns every defined code, in ascending order.
func Codes() []Code {
	return []Code{
		CodeIdentifyFirst, CodeAlreadyIdentified, CodeOwnAddress, CodeAddressMismatch,
		CodeProtocolVersion, CodeDuplicateSession, CodeHashcash, CodeInvalidData,
		CodeUnknownCommand, CodeNotImplemented, CodeFrameTooLarge, CodeBusy, CodeFailed,
		CodeBadEnvelope, CodeNotJSON, CodeTimeout, CodeTooManyConnections, CodeInsufficientStorage, CodeUnknown,
	}
}

// Text returns the code's standard text, or "" for an undefined code.
func (c Code) Text() string { return codeText[c] }

// String returns the code's number and text, as "1000 must identify first".
func (c Code) String() string {
	s := strconv.Itoa(int(c))
	if t := c.Text(); t != "" {
		s += " " + t
	}
	return s
}

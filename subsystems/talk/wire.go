package talk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/phpchat/phpchat-node/config"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/subsystems/talkapi"
)

// Message names of the talk family (docs/protocol.md, section 7).
const (
	NameRequest  = "talk_request"
	NameResponse = "talk_response"
	NameMsg      = "talk_msg"
	NameNick     = "talk_user_nickname_change"
	NameClose    = "talk_close"
)

// Purpose is the hashcash purpose of a talk request in a node's policy
// (the "hashcash" member of its id).
const Purpose = NameRequest

// Limits of the talk messages.
const (
	MaxTalkIDLen = 64   // bytes of a talk id
	MaxText      = 4096 // bytes of a talk_msg's text
	MaxReason    = 512  // bytes of a talk_close's reason
)

// Request is the data of a talk_request: a request (it carries a rid),
// answered at once with a Response of status 0 or 4, or an error.
type Request struct {
	// Talk is the caller's id of the talk: 1 to 64 characters of
	// A-Z a-z 0-9 _ -, unique among the caller's talks with the callee.
	Talk string `json:"talk"`
	// Nickname is the caller's nickname.
	Nickname string `json:"nickname"`
	// Stamp is a hashcash stamp on Resource(callee, caller, talk) with
	// at least the bits of the callee's policy for "talk_request".
	Stamp string `json:"stamp"`
}

// Response is the data of a talk_response: the immediate reply to a
// talk_request (status 0 or 4, carrying the request's rid) or, later, the
// user's answer as a one-way message (status 1, 2 or 3).
type Response struct {
	Talk   string `json:"talk"`
	Status int    `json:"status"`
	// Nickname is the callee's nickname, with status 1.
	Nickname string `json:"nickname,omitempty"`
}

// Msg is the data of a talk_msg, one line of an open talk.
type Msg struct {
	Talk string `json:"talk"`
	Text string `json:"text"`
	// Ignore marks cover traffic: the receiver drops the message.
	Ignore bool `json:"ignore,omitempty"`
}

// NickChange is the data of a talk_user_nickname_change: the sender's new
// nickname, sent on each of its open talks.
type NickChange struct {
	Talk     string `json:"talk"`
	Nickname string `json:"nickname"`
}

// Close is the data of a talk_close: the end of an open talk, or the
// caller withdrawing a request not yet answered.
type Close struct {
	Talk   string `json:"talk"`
	Reason string `json:"reason,omitempty"`
}

// Resource is the hashcash resource a talk request's stamp pays for: it
// binds the stamp to the callee, the caller and the talk, so it is worth
// nothing for another request.
func Resource(callee, caller identity.Address, talk string) string {
	return "talk/" + callee.String() + "/" + caller.String() + "/" + talk
}

// errInvalid marks a payload refused with error 9000.
var errInvalid = errors.New("invalid talk data")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errInvalid, fmt.Sprintf(format, args...))
}

// ValidTalkID reports whether id is a well-formed talk id.
func ValidTalkID(id string) bool {
	if id == "" || len(id) > MaxTalkIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// CheckText checks a line of talk: valid UTF-8 of at most MaxText bytes
// without control characters (tabs aside), so that printing it cannot
// drive the reader's terminal.
func CheckText(text string, max int) error {
	if len(text) > max {
		return invalid("text is %d bytes, at most %d", len(text), max)
	}
	if !utf8.ValidString(text) {
		return invalid("text is not UTF-8")
	}
	for _, r := range text {
		if r < ' ' && r != '\t' || r == 0x7f || r >= 0x80 && r < 0xa0 || r == 0x2028 || r == 0x2029 {
			return invalid("text has a control character %U", r)
		}
	}
	return nil
}

// parse decodes and checks the payload of a talk frame. The error, if
// any, wraps errInvalid and says what is wrong, for an error 9000.
func parse(e wire.Envelope) (any, error) {
	if len(e.Data) == 0 {
		return nil, invalid("%s without data", e.Name)
	}
	if !utf8.Valid(e.Data) {
		return nil, invalid("%s data is not UTF-8", e.Name)
	}
	var talkID string
	var out any
	switch e.Name {
	case NameRequest:
		var v Request
		if err := decode(e.Data, &v); err != nil {
			return nil, err
		}
		if e.RID == 0 {
			return nil, invalid("talk_request is a request and needs a rid")
		}
		if err := config.CheckNickname(v.Nickname); err != nil {
			return nil, invalid("%v", err)
		}
		// A missing stamp is not checked here: it is answered 4000, as
		// any stamp that does not pay (docs/protocol.md §5.8).
		talkID, out = v.Talk, v
	case NameResponse:
		var v Response
		if err := decode(e.Data, &v); err != nil {
			return nil, err
		}
		if v.Status < talkapi.StatusWaiting || v.Status > talkapi.StatusNoUI {
			return nil, invalid("unknown status %d", v.Status)
		}
		if v.Status == talkapi.StatusAccepted {
			if err := config.CheckNickname(v.Nickname); err != nil {
				return nil, invalid("%v", err)
			}
		}
		talkID, out = v.Talk, v
	case NameMsg:
		var v Msg
		if err := decode(e.Data, &v); err != nil {
			return nil, err
		}
		if !v.Ignore && v.Text == "" {
			return nil, invalid("empty text")
		}
		if err := CheckText(v.Text, MaxText); err != nil {
			return nil, err
		}
		talkID, out = v.Talk, v
	case NameNick:
		var v NickChange
		if err := decode(e.Data, &v); err != nil {
			return nil, err
		}
		if err := config.CheckNickname(v.Nickname); err != nil {
			return nil, invalid("%v", err)
		}
		talkID, out = v.Talk, v
	case NameClose:
		var v Close
		if err := decode(e.Data, &v); err != nil {
			return nil, err
		}
		if err := CheckText(v.Reason, MaxReason); err != nil {
			return nil, err
		}
		talkID, out = v.Talk, v
	default:
		return nil, invalid("not a talk message: %s", e.Name)
	}
	if !ValidTalkID(talkID) {
		return nil, invalid("bad talk id %q", truncate(talkID, 80))
	}
	return out, nil
}

func decode(data []byte, v any) error {
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(v); err != nil {
		return invalid("%v", err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Names are the message names of the talk family, which the service
// registers for with the kernel.
var Names = []string{NameRequest, NameResponse, NameMsg, NameNick, NameClose}

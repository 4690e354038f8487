package wire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// ParseEnvelope parses one frame, without its LF. The error wraps
// ErrNotJSON or ErrBadEnvelope. When the frame is JSON with a well-formed
// name, the returned envelope carries that name even on error, so that the
// error can be reported against it. The envelope does not alias frame.
//
// The frame is checked as strictly as encoding/json checks it (json.Valid);
// keys match exactly, and the last of repeated keys counts. Members other
// than name, rid and data are ignored. A null name, rid or data is taken as
// absent.
func ParseEnvelope(frame []byte) (Envelope, error) {
	var (
		e              Envelope
		nameErr, ridEr error
		data           []byte
		b              = frame
	)
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		if json.Valid(frame) {
			return e, fmt.Errorf("%w: not an object", ErrBadEnvelope)
		}
		return e, errNotJSON(frame)
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			if i == len(b) || b[i] != '"' {
				return Envelope{}, errNotJSON(frame)
			}
			end, esc, ok := scanString(b, i)
			if !ok {
				return Envelope{}, errNotJSON(frame)
			}
			key := b[i+1 : end-1]
			if esc {
				var k string
				if json.Unmarshal(b[i:end], &k) != nil {
					return Envelope{}, errNotJSON(frame)
				}
				key = []byte(k)
			}
			i = skipSpace(b, end)
			if i == len(b) || b[i] != ':' {
				return Envelope{}, errNotJSON(frame)
			}
			i = skipSpace(b, i+1)
			start := i
			if i, ok = scanValue(b, i); !ok {
				return Envelope{}, errNotJSON(frame)
			}
			v := b[start:i]
			switch string(key) {
			case "name":
				e.Name, nameErr = parseName(v)
			case "rid":
				e.RID, ridEr = parseRID(v)
			case "data":
				data = v
			}
			i = skipSpace(b, i)
			if i == len(b) {
				return Envelope{}, errNotJSON(frame)
			}
			if b[i] == '}' {
				i++
				break
			}
			if b[i] != ',' {
				return Envelope{}, errNotJSON(frame)
			}
			i = skipSpace(b, i+1)
		}
	}
	if skipSpace(b, i) != len(b) {
		return Envelope{}, errNotJSON(frame)
	}
	if err := errors.Join(nameErr, ridEr); err != nil {
		return e, fmt.Errorf("%w: %v", ErrBadEnvelope, err)
	}
	if e.Name == "" {
		return e, fmt.Errorf("%w: no name", ErrBadEnvelope)
	}
	if len(data) > 0 && string(data) != "null" {
		e.Data = append(json.RawMessage(nil), data...)
	}
	return e, nil
}

func errNotJSON(frame []byte) error {
	var v any
	err := json.Unmarshal(frame, &v) // only for the message; frames that fail are rare
	if err == nil {
		err = errors.New("invalid JSON")
	}
	return fmt.Errorf("%w: %v", ErrNotJSON, err)
}

// parseName parses the JSON value v, which is valid, as a message name.
func parseName(v []byte) (string, error) {
	if string(v) == "null" {
		return "", nil
	}
	if v[0] != '"' {
		return "", errors.New("name is not a string")
	}
	s := string(v[1 : len(v)-1])
	for j := 0; j < len(s); j++ {
		if s[j] == '\\' {
			if json.Unmarshal(v, &s) != nil {
				return "", errors.New("malformed name")
			}
			break
		}
	}
	if !ValidName(s) {
		return "", fmt.Errorf("malformed name %q", truncate(s, MaxNameLen+1))
	}
	return s, nil
}

// parseRID parses the JSON value v, which is valid, as a request id.
func parseRID(v []byte) (uint64, error) {
	if string(v) == "null" {
		return 0, nil
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, errors.New("rid is not an unsigned integer")
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, errors.New("rid overflows 64 bits")
		}
		n = n*10 + d
	}
	return n, nil
}

// valid reports whether b is one JSON value, with optional white space
// around it.
func valid(b []byte) bool {
	i, ok := scanValue(b, skipSpace(b, 0))
	return ok && skipSpace(b, i) == len(b)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString scans the JSON string starting at b[i] == '"'. It returns the
// index after the closing quote, whether the string holds escapes, and
// whether it is well-formed. Like encoding/json, it accepts any bytes but
// control characters, including invalid UTF-8.
func scanString(b []byte, i int) (end int, esc, ok bool) {
	for i++; i < len(b); i++ {
		for i+8 <= len(b) && plainWord(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		if i == len(b) {
			break
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, esc, true
		case c == '\\':
			esc = true
			i++
			if i == len(b) {
				return 0, false, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return 0, false, false
				}
				for _, h := range b[i+1 : i+5] {
					if !isHex(h) {
						return 0, false, false
					}
				}
				i += 4
			default:
				return 0, false, false
			}
		case c < 0x20:
			return 0, false, false
		}
	}
	return 0, false, false
}

// plainWord reports whether none of the 8 bytes in w ends a JSON string,
// starts an escape or is a control character.
func plainWord(w uint64) bool {
	const lsb, msb = 0x0101010101010101, 0x8080808080808080
	ctl := (w - 0x20*lsb) & ^w & msb // a byte < 0x20
	q := w ^ '"'*lsb                 // a zero byte where w has '"'
	q = (q - lsb) & ^q & msb
	bs := w ^ '\\'*lsb
	bs = (bs - lsb) & ^bs & msb
	return ctl|q|bs == 0
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// scanNumber scans the JSON number starting at b[i].
func scanNumber(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i == len(b) || !isDigit(b[i]) {
			return 0, false
		}
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i == len(b) || !isDigit(b[i]) {
			return 0, false
		}
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	return i, true
}

// maxDepth is encoding/json's limit on nesting, kept so that both accept
// the same texts.
const maxDepth = 10000

// scanValue scans the JSON value starting at b[i] (no leading space) and
// returns the index after it. It does not recurse: the open arrays and
// objects are kept on a stack of at most maxDepth bytes.
func scanValue(b []byte, i int) (int, bool) {
	var stack []byte // '[' or '{' per open container
	for {
		// A value starts at b[i].
		if i == len(b) {
			return 0, false
		}
		var ok bool
		switch c := b[i]; {
		case c == '"':
			if i, _, ok = scanString(b, i); !ok {
				return 0, false
			}
		case c == '-' || isDigit(c):
			if i, ok = scanNumber(b, i); !ok {
				return 0, false
			}
		case c == 't' || c == 'f' || c == 'n':
			lit := "null"
			if c == 't' {
				lit = "true"
			} else if c == 'f' {
				lit = "false"
			}
			if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
				return 0, false
			}
			i += len(lit)
		case c == '[' || c == '{':
			if len(stack) == maxDepth {
				return 0, false
			}
			stack = append(stack, c)
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == c+2 { // ']' or '}'
				stack = stack[:len(stack)-1]
				i++
				break
			}
			if c == '{' {
				if i, ok = scanKey(b, i); !ok {
					return 0, false
				}
			}
			continue
		default:
			return 0, false
		}
		// A value ended before b[i]: close containers or go to the next
		// element.
		for {
			if len(stack) == 0 {
				return i, true
			}
			i = skipSpace(b, i)
			if i == len(b) {
				return 0, false
			}
			top := stack[len(stack)-1]
			if b[i] == top+2 {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			if b[i] != ',' {
				return 0, false
			}
			i = skipSpace(b, i+1)
			if top == '{' {
				if i, ok = scanKey(b, i); !ok {
					return 0, false
				}
			}
			break
		}
	}
}

// scanKey scans `"key" :` and the space after it, starting at b[i].
func scanKey(b []byte, i int) (int, bool) {
	if i == len(b) || b[i] != '"' {
		return 0, false
	}
	i, _, ok := scanString(b, i)
	if !ok {
		return 0, false
	}
	i = skipSpace(b, i)
	if i == len(b) || b[i] != ':' {
		return 0, false
	}
	return skipSpace(b, i+1), true
}

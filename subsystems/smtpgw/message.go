package smtpgw

import (
	"bytes"
	"strings"
)

// rewrite returns msg with From set to from, every Bcc removed and a
// Message-ID (made by newID) added if it has none. Every other byte of the
// header and the body is kept as the client wrote it.
func rewrite(msg []byte, from string, newID func() string) []byte {
	hdr, body := splitHeader(msg)
	nl := "\r\n"
	if bytes.Contains(msg, []byte("\n")) && !bytes.Contains(msg, []byte("\r\n")) {
		nl = "\n"
	}
	var out bytes.Buffer
	out.Grow(len(msg) + len(from) + 128)
	wroteFrom, hasID := false, false
	for f := range fields(hdr) {
		name, value, _ := bytes.Cut(f, []byte(":"))
		switch strings.ToLower(string(bytes.TrimRight(name, " \t"))) {
		case "from":
			if !wroteFrom {
				out.WriteString("From: " + from + nl)
				wroteFrom = true
			}
			continue
		case "bcc":
			continue
		case "message-id":
			hasID = hasID || len(bytes.TrimSpace(value)) > 0
		}
		out.Write(f)
		if !bytes.HasSuffix(f, []byte("\n")) {
			out.WriteString(nl) // the last line of a message without a body
		}
	}
	if !wroteFrom {
		out.WriteString("From: " + from + nl)
	}
	if !hasID {
		out.WriteString("Message-ID: " + newID() + nl)
	}
	if len(hdr) == 0 && !startsWithBlankLine(body) {
		out.WriteString(nl) // a message without a header: the whole of it is the body
	}
	out.Write(body)
	return out.Bytes()
}

// splitHeader splits msg before the blank line that ends its header; body
// starts with that line. A message whose first line is not a header field
// has no header.
func splitHeader(msg []byte) (hdr, body []byte) {
	if !isField(msg) {
		return nil, msg
	}
	for i := 0; i < len(msg); {
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 {
			return msg, nil // a header with no body
		}
		line := msg[i : i+j+1]
		if string(line) == "\n" || string(line) == "\r\n" {
			return msg[:i], msg[i:]
		}
		i += j + 1
	}
	return msg, nil
}

// isField reports whether b starts with a header field's name and colon.
func isField(b []byte) bool {
	for i, c := range b {
		switch {
		case c == ':':
			return i > 0
		case c <= ' ' || c >= 0x7f:
			return false
		}
	}
	return false
}

func startsWithBlankLine(b []byte) bool {
	return bytes.HasPrefix(b, []byte("\r\n")) || bytes.HasPrefix(b, []byte("\n"))
}

// fields yields the header's fields, each with its continuation lines and
// line ends.
func fields(hdr []byte) func(yield func([]byte) bool) {
	return func(yield func([]byte) bool) {
		start := 0
		for i := 0; i < len(hdr); {
			j := bytes.IndexByte(hdr[i:], '\n')
			end := len(hdr)
			if j >= 0 {
				end = i + j + 1
			}
			if end < len(hdr) && (hdr[end] == ' ' || hdr[end] == '\t') {
				i = end // the next line continues this field
				continue
			}
			if !yield(hdr[start:end]) {
				return
			}
			start, i = end, end
		}
	}
}

package messages

import (
	"bytes"
	"net/mail"

	"github.com/phpchat/phpchat-node/node/identity"
)

// mailAddress returns the mail form of a sender's address, named by its
// nickname in the address book if it is there: what a mail client shows
// as From. Only the envelope's signature vouches for a sender, so the
// From a message carries is replaced with it (see setFrom).
func (s *Service) mailAddress(a identity.Address) string {
	addr := mail.Address{Address: a.String() + "@" + s.cfg.MailDomain}
	if ct, err := s.cfg.DB.Contacts().ByAddress(a.String()); err == nil {
		addr.Name = ct.Nickname
	}
	return addr.String()
}

// setFrom returns the RFC 5322 message content with its From field (and
// any continuation lines) replaced by from. The rest of the header and
// the body are kept byte for byte. Content without a header section gets
// one.
func setFrom(content []byte, from string) []byte {
	field := []byte("From: " + from + "\r\n")
	end := headerEnd(content)
	if end < 0 {
		return append(append(field, "\r\n"...), content...)
	}
	out := make([]byte, 0, len(content)+len(field))
	out = append(out, field...)
	header := content[:end]
	skipping := false
	for len(header) > 0 {
		i := bytes.IndexByte(header, '\n')
		line := header[:i+1]
		header = header[i+1:]
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			if !skipping {
				out = append(out, line...)
			}
			continue
		}
		name, _, _ := bytes.Cut(line, []byte(":"))
		skipping = bytes.EqualFold(bytes.TrimSpace(name), []byte("From"))
		if !skipping {
			out = append(out, line...)
		}
	}
	return append(out, content[end:]...)
}

// headerEnd returns the length of content's header section, its last
// line ending included (the blank line after it is not), or -1 if
// content does not begin with a header field.
func headerEnd(content []byte) int {
	first, _, _ := bytes.Cut(content, []byte("\n"))
	name, _, ok := bytes.Cut(first, []byte(":"))
	if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
		return -1
	}
	for i := 0; i < len(content); {
		j := bytes.IndexByte(content[i:], '\n')
		if j < 0 {
			return -1 // a header without a body: not a message
		}
		line := content[i : i+j+1]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return i
		}
		i += j + 1
	}
	return -1
}

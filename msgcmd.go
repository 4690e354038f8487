package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/control"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
)

// maxSendContent is the largest message `send` hands to the node: its
// base64 must fit in one frame of the control socket.
const maxSendContent = (control.MaxFrame - 4096) / 4 * 3

func sendCommand() *cli.Command {
	return &cli.Command{
		Name:      "send",
		Usage:     "send an offline message: the body is read from standard input",
		UsageText: sendUsage[len("usage: "):],
		Description: "Queues the message on the running node and prints its id once the message\n" +
			"is on disk. The node delivers it to the recipient, or to nodes near it that\n" +
			"hold it until the recipient comes online; `phpchat-node messages` shows its state.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "to", Usage: "the recipient: an address, or a nickname of the address book"},
			&cli.StringFlag{Name: "subject", Usage: "the subject"},
			&cli.StringSliceFlag{Name: "attach", Usage: "attach a file; repeatable"},
		},
		Action: sendMessage,
	}
}

// sendUsage is the synopsis of the send command.
const sendUsage = "usage: phpchat-node send --to ADDRESS|NICKNAME [--subject S] [--attach FILE]... < BODY"

func sendMessage(c *cli.Context) error {
	if c.String("to") == "" {
		return cli.Exit(sendUsage, exitSettings)
	}
	if c.NArg() != 0 {
		return cli.Exit("send: unexpected arguments (the body is read from standard input): "+strings.Join(c.Args().Slice(), " "), exitSettings)
	}
	var atts []attachment
	for _, name := range c.StringSlice("attach") {
		data, err := os.ReadFile(name)
		if err != nil {
			return cli.Exit(fmt.Sprintf("send: attachment: %v", err), exitFailure)
		}
		atts = append(atts, attachment{Name: filepath.Base(name), Data: data})
	}
	// Fail before the user types a text that could not be sent.
	if err := withNode(c, "send", func(context.Context, *control.Client) error { return nil }); err != nil {
		return err
	}
	body, err := io.ReadAll(io.LimitReader(c.App.Reader, maxSendContent+1))
	if err != nil {
		return cli.Exit(fmt.Sprintf("send: reading the body: %v", err), exitFailure)
	}
	return withNode(c, "send", func(ctx context.Context, cl *control.Client) error {
		var in node.Info
		if err := cl.Call(ctx, "info", nil, &in, nil); err != nil {
			return err
		}
		to, err := recipient(ctx, cl, c.String("to"))
		if err != nil {
			return err
		}
		from, domain := mailAddress(in)
		content, err := buildMessage(draft{
			From: from, To: mail.Address{Name: to.Name, Address: to.Address.String() + "@" + domain},
			Subject: c.String("subject"), Body: body, Attachments: atts, Date: time.Now(),
		})
		if err != nil {
			return err
		}
		if len(content) > maxSendContent {
			return fmt.Errorf("the message is %d bytes, more than the %d that `send` can hand to the node", len(content), maxSendContent)
		}
		var id control.MsgID
		if err := cl.Call(ctx, "msg.send", control.MsgSend{To: to.Address.String(), Content: content}, &id, nil); err != nil {
			return err
		}
		fmt.Fprintln(c.App.Writer, id.ID)
		return nil
	})
}

// withNode runs f on a connection to the running node; an error is an
// exit with status 1 naming the command.
func withNode(c *cli.Context, cmd string, f func(context.Context, *control.Client) error) error {
	l, err := layout(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Context, control.CallTimeout)
	defer cancel()
	cl, err := control.Dial(ctx, l.ControlSocket())
	if err != nil {
		return cli.Exit(fmt.Sprintf("%s: %v", cmd, err), exitFailure)
	}
	defer cl.Close()
	if err := f(ctx, cl); err != nil {
		return cli.Exit(fmt.Sprintf("%s: %v", cmd, errText(err)), exitFailure)
	}
	return nil
}

// peer is a recipient: its address and, if named by nickname, the name.
type peer struct {
	Address identity.Address
	Name    string
}

// recipient resolves an address, or a nickname of the node's address book.
func recipient(ctx context.Context, cl *control.Client, s string) (peer, error) {
	if addr, err := identity.ParseAddress(s); err == nil {
		return peer{Address: addr}, nil
	}
	var list []store.Contact
	if err := cl.Call(ctx, "contacts.list", nil, &list, nil); err != nil {
		return peer{}, err
	}
	for _, ct := range list {
		if strings.EqualFold(ct.Nickname, s) {
			addr, err := identity.ParseAddress(ct.Address)
			if err != nil {
				return peer{}, fmt.Errorf("contact %d: %w", ct.ID, err)
			}
			return peer{Address: addr, Name: ct.Nickname}, nil
		}
	}
	return peer{}, fmt.Errorf("%q is neither an address nor a nickname of the address book", s)
}

// mailAddress returns the node's mail address and its domain.
func mailAddress(in node.Info) (mail.Address, string) {
	_, domain, ok := strings.Cut(in.MailAddress, "@")
	if !ok {
		domain = "phpchat.lan"
	}
	return mail.Address{Name: in.Nickname, Address: in.MailAddress}, domain
}

// An attachment is a file attached to a message.
type attachment struct {
	Name string
	Data []byte
}

// A draft is a message to build.
type draft struct {
	From, To    mail.Address
	Subject     string
	Body        []byte
	Attachments []attachment
	Date        time.Time
}

// buildMessage makes d an RFC 5322 message: text/plain in UTF-8, or with
// attachments multipart/mixed with the text first and each file in base64.
// Lines end in CRLF.
func buildMessage(d draft) ([]byte, error) {
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("From", d.From.String())
	hdr("To", d.To.String())
	if s := strings.Join(strings.Fields(d.Subject), " "); s != "" {
		hdr("Subject", mime.QEncoding.Encode("utf-8", s))
	}
	hdr("Date", d.Date.Format(time.RFC1123Z))
	_, domain, _ := strings.Cut(d.From.Address, "@")
	hdr("Message-ID", "<"+randomHex(16)+"@"+domain+">")
	hdr("MIME-Version", "1.0")
	textType, textEnc, text := textPart(d.Body)
	if len(d.Attachments) == 0 {
		hdr("Content-Type", textType)
		hdr("Content-Transfer-Encoding", textEnc)
		b.WriteString("\r\n")
		b.Write(text)
		return b.Bytes(), nil
	}
	mw := multipart.NewWriter(&b)
	hdr("Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": mw.Boundary()}))
	b.WriteString("\r\nThis is a message in MIME format.\r\n")
	pw, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {textType}, "Content-Transfer-Encoding": {textEnc}})
	if err != nil {
		return nil, err
	}
	pw.Write(text)
	for _, a := range d.Attachments {
		ctype := mime.TypeByExtension(filepath.Ext(a.Name))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		pw, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {ctype},
			"Content-Disposition":       {mime.FormatMediaType("attachment", map[string]string{"filename": a.Name})},
			"Content-Transfer-Encoding": {"base64"},
		})
		if err != nil {
			return nil, err
		}
		writeBase64(pw, a.Data)
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// textPart returns the Content-Type, the transfer encoding and the encoded
// text of a body: as it is (8bit, lines ending in CRLF) when it is UTF-8
// with lines of at most 998 bytes, else quoted-printable.
func textPart(body []byte) (ctype, enc string, text []byte) {
	lines := strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n")
	plain := utf8.Valid(body) && !bytes.ContainsAny(body, "\x00\r")
	for _, l := range lines {
		if len(l) > 998 {
			plain = false
		}
	}
	ctype = "text/plain; charset=utf-8"
	if plain {
		return ctype, "8bit", []byte(strings.Join(lines, "\r\n"))
	}
	var b bytes.Buffer
	qw := quotedprintable.NewWriter(&b)
	qw.Write(body)
	qw.Close()
	return ctype, "quoted-printable", b.Bytes()
}

// writeBase64 writes data in base64, in lines of 76 characters.
func writeBase64(w io.Writer, data []byte) {
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		io.WriteString(w, enc[:76]+"\r\n")
		enc = enc[76:]
	}
	io.WriteString(w, enc+"\r\n")
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// messagesUsage is the synopsis of the messages command.
const messagesUsage = "usage: phpchat-node messages [list|read ID|delete ID] [--json]"

func messagesCommand() *cli.Command {
	jsonFlag := &cli.BoolFlag{Name: "json", Usage: "print JSON"}
	return &cli.Command{
		Name:      "messages",
		Usage:     "list, read and delete the offline messages of the running node",
		UsageText: messagesUsage[len("usage: "):],
		Flags:     []cli.Flag{jsonFlag},
		Action:    listMessages,
		Subcommands: []*cli.Command{
			{Name: "list", Usage: "list the inbox and the outbox", Flags: []cli.Flag{jsonFlag}, Action: listMessages},
			{Name: "read", Usage: "print a message (an inbox message is then marked read)", ArgsUsage: "ID", Flags: []cli.Flag{jsonFlag}, Action: readMessage},
			{Name: "delete", Usage: "delete a message", ArgsUsage: "ID", Flags: []cli.Flag{jsonFlag}, Action: deleteMessage},
		},
	}
}

func listMessages(c *cli.Context) error {
	args, asJSON, err := argsAndJSON(c)
	if err != nil || len(args) != 0 {
		return cli.Exit(messagesUsage, exitSettings)
	}
	return withNode(c, "messages", func(ctx context.Context, cl *control.Client) error {
		var list []msgapi.Summary
		if err := cl.Call(ctx, "msg.list", nil, &list, nil); err != nil {
			return err
		}
		if asJSON {
			if list == nil {
				list = []msgapi.Summary{}
			}
			return json.NewEncoder(c.App.Writer).Encode(list)
		}
		printMessages(c.App.Writer, list)
		return nil
	})
}

// printMessages prints a listing: unread messages are marked with a star.
func printMessages(w io.Writer, list []msgapi.Summary) {
	if len(list) == 0 {
		fmt.Fprintln(w, "No messages.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, " \tID\tBOX\tSTATE\tDATE\tFROM/TO\tSUBJECT")
	for _, m := range list {
		mark := " "
		if m.Box == "inbox" && !m.Read {
			mark = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", mark, m.ID, m.Box, stateText(m), m.Date.Local().Format(time.DateTime), m.Peer, printable(m.Subject))
	}
	tw.Flush()
}

// stateText is a message's state for a listing.
func stateText(m msgapi.Summary) string {
	switch {
	case m.Box == "inbox" && m.Read:
		return "read"
	case m.Box == "inbox":
		return "unread"
	case m.State == msgapi.StateSent && m.Relays > 0:
		return fmt.Sprintf("sent (%d relays)", m.Relays)
	case m.State == msgapi.StateRefused && m.Reason != "":
		return "refused: " + printable(m.Reason)
	}
	return m.State
}

// printable replaces the control characters of peer text, so that it
// cannot drive the terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}

// idArg returns the one ID argument of read or delete.
func idArg(c *cli.Context, usage string) (string, bool, error) {
	args, asJSON, err := argsAndJSON(c)
	if err != nil || len(args) != 1 {
		return "", false, cli.Exit(usage, exitSettings)
	}
	return args[0], asJSON, nil
}

func readMessage(c *cli.Context) error {
	id, asJSON, err := idArg(c, "usage: phpchat-node messages read ID [--json]")
	if err != nil {
		return err
	}
	return withNode(c, "messages read", func(ctx context.Context, cl *control.Client) error {
		var m msgapi.Message
		if err := cl.Call(ctx, "msg.read", control.MsgID{ID: id}, &m, nil); err != nil {
			return err
		}
		if asJSON {
			return json.NewEncoder(c.App.Writer).Encode(m)
		}
		_, err := c.App.Writer.Write(m.Content)
		if err == nil && !bytes.HasSuffix(m.Content, []byte("\n")) {
			_, err = io.WriteString(c.App.Writer, "\n")
		}
		return err
	})
}

func deleteMessage(c *cli.Context) error {
	id, asJSON, err := idArg(c, "usage: phpchat-node messages delete ID [--json]")
	if err != nil {
		return err
	}
	return withNode(c, "messages delete", func(ctx context.Context, cl *control.Client) error {
		if err := cl.Call(ctx, "msg.delete", control.MsgID{ID: id}, nil, nil); err != nil {
			return err
		}
		if asJSON {
			return json.NewEncoder(c.App.Writer).Encode(struct {
				Deleted string `json:"deleted"`
			}{id})
		}
		fmt.Fprintf(c.App.Writer, "deleted %s\n", id)
		return nil
	})
}

// A readable is a message as the console shows it.
type readable struct {
	Header      mail.Header
	Text        string   // the first text/plain part, decoded
	Attachments []string // the other parts: name, type and size
}

// readMessageText parses an RFC 5322 message for the console: its
// headers, its text, and what else it holds.
func readMessageText(content []byte) (readable, error) {
	m, err := mail.ReadMessage(bytes.NewReader(content))
	if err != nil {
		return readable{}, fmt.Errorf("not a mail message: %w", err)
	}
	r := readable{Header: m.Header}
	err = r.addPart(textproto.MIMEHeader(m.Header), m.Body, 0)
	return r, err
}

// addPart adds a MIME part to r: the text if it is the first text/plain
// part, else a line in Attachments; a multipart part is walked.
func (r *readable) addPart(h textproto.MIMEHeader, body io.Reader, depth int) error {
	ctype, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		ctype, params = "text/plain", nil
	}
	if strings.HasPrefix(ctype, "multipart/") && depth < 8 {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("MIME part: %w", err)
			}
			if err := r.addPart(p.Header, p, depth+1); err != nil {
				return err
			}
		}
	}
	var dec io.Reader = body
	switch strings.ToLower(h.Get("Content-Transfer-Encoding")) {
	case "base64":
		dec = base64.NewDecoder(base64.StdEncoding, body) // it skips line ends
	case "quoted-printable":
		dec = quotedprintable.NewReader(body)
	}
	data, err := io.ReadAll(dec)
	if err != nil {
		return fmt.Errorf("MIME part: %w", err)
	}
	_, dparams, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	name := dparams["filename"]
	if name == "" {
		name = params["name"]
	}
	if ctype == "text/plain" && name == "" && r.Text == "" {
		r.Text = strings.ReplaceAll(string(data), "\r\n", "\n")
		return nil
	}
	if name == "" {
		name = "(no name)"
	}
	r.Attachments = append(r.Attachments, fmt.Sprintf("%s (%s, %d bytes)", name, ctype, len(data)))
	return nil
}

// decodeHeader decodes the RFC 2047 words of a header value.
func decodeHeader(v string) string {
	if d, err := new(mime.WordDecoder).DecodeHeader(v); err == nil {
		return d
	}
	return v
}

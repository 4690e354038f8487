package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/phpchat/phpchat-node/node/identity"
)

func TestAppendFrame(t *testing.T) {
	for _, tc := range []struct {
		name string
		rid  uint64
		data any
		want string
	}{
		{"quit", 0, nil, `{"name":"quit"}`},
		{"ping", 7, nil, `{"name":"ping","rid":7}`},
		{"pong", 18446744073709551615, nil, `{"name":"pong","rid":18446744073709551615}`},
		{"error", 3, Error{Code: CodeUnknownCommand, Text: "unknown command", Name: "x"},
			`{"name":"error","rid":3,"data":{"code":9020,"text":"unknown command","name":"x"}}`},
		{"test", 0, json.RawMessage("{\n  \"a\": [1,\n 2]\n}"), `{"name":"test","data":{"a":[1,2]}}`},
		{"test", 0, map[string]string{"s": "line\nbreak"}, `{"name":"test","data":{"s":"line\nbreak"}}`},
		{"test", 0, (*Hello)(nil), `{"name":"test"}`},
	} {
		b, err := AppendFrame(nil, tc.name, tc.rid, tc.data)
		if err != nil {
			t.Errorf("AppendFrame(%q, %d, %v): %v", tc.name, tc.rid, tc.data, err)
			continue
		}
		if got := string(b); got != tc.want+"\n" {
			t.Errorf("AppendFrame(%q, %d, %v) = %q, want %q", tc.name, tc.rid, tc.data, got, tc.want+"\n")
		}
	}
}

func TestAppendFrameRefuses(t *testing.T) {
	for _, name := range []string{"", "Ping", "1st", "a b", `a"`, strings.Repeat("a", MaxNameLen+1)} {
		if _, err := AppendFrame(nil, name, 0, nil); !errors.Is(err, ErrBadEnvelope) {
			t.Errorf("AppendFrame(name %q) err = %v, want ErrBadEnvelope", name, err)
		}
	}
	// Data that is not JSON must not reach the wire: it could forge fields.
	e := Envelope{Name: "x", Data: json.RawMessage(`1,"name":"evil"`)}
	if b, err := e.AppendFrame(nil); err == nil {
		t.Errorf("AppendFrame with invalid data = %q, want error", b)
	}
	if _, err := AppendFrame(nil, "x", 0, func() {}); err == nil {
		t.Error("AppendFrame(func) succeeded")
	}
}

func TestParseEnvelope(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Envelope
		err  error
	}{
		{`{"name":"ping"}`, Envelope{Name: "ping"}, nil},
		{`{"name":"ping","rid":5,"data":null}`, Envelope{Name: "ping", RID: 5}, nil},
		{` {"data":{"a" : 1},"name":"x_1","extra":true} `, Envelope{Name: "x_1", Data: json.RawMessage(`{"a" : 1}`)}, nil},
		{``, Envelope{}, ErrNotJSON},
		{`garbage`, Envelope{}, ErrNotJSON},
		{`{"name":"ping"`, Envelope{}, ErrNotJSON},
		{`{"name":"a"}{"name":"b"}`, Envelope{}, ErrNotJSON},
		{`[1,2]`, Envelope{}, ErrBadEnvelope},
		{`"ping"`, Envelope{}, ErrBadEnvelope},
		{`{}`, Envelope{}, ErrBadEnvelope},
		{`{"name":""}`, Envelope{}, ErrBadEnvelope},
		{`{"name":"PING"}`, Envelope{}, ErrBadEnvelope},
		{`{"name":5}`, Envelope{}, ErrBadEnvelope},
		{`{"name":"node_find","rid":-1}`, Envelope{Name: "node_find"}, ErrBadEnvelope},
		{`{"name":"node_find","rid":1.5}`, Envelope{Name: "node_find"}, ErrBadEnvelope},
		{`{"name":"node_find","rid":"1"}`, Envelope{Name: "node_find"}, ErrBadEnvelope},
	} {
		got, err := ParseEnvelope([]byte(tc.in))
		if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Errorf("ParseEnvelope(%q) err = %v, want %v", tc.in, err, tc.err)
		}
		if got.Name != tc.want.Name || got.RID != tc.want.RID || !bytes.Equal(got.Data, tc.want.Data) {
			t.Errorf("ParseEnvelope(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	a, _ := identity.Generate()
	id := ID{
		Address:      a.Address,
		Port:         25000,
		Capabilities: []string{"dht", "relay"},
		Hashcash:     HashcashPolicy{"node_find": 12, "talk_request": 15, "msg": 15},
	}
	e, err := NewEnvelope(NameID, 0, id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.AppendFrame(nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewReader(bytes.NewReader(b), 0).ReadEnvelope()
	if err != nil {
		t.Fatal(err)
	}
	var id2 ID
	if err := got.Decode(&id2); err != nil {
		t.Fatal(err)
	}
	if err := id2.Validate(); err != nil {
		t.Fatal(err)
	}
	if id2.Address != id.Address || id2.Port != id.Port || !id2.Has("relay") || id2.Hashcash["msg"] != 15 {
		t.Errorf("round trip: got %+v, want %+v", id2, id)
	}
}

func TestReaderFrames(t *testing.T) {
	const max = 32
	in := "a\n" + // short
		strings.Repeat("b", max) + "\n" + // exactly the limit
		strings.Repeat("c", max+1) + "\n" + // one over
		"\n" + // empty
		strings.Repeat("d", 10*max) + "\n" + // far over
		"e\n" +
		"tail" // cut short
	type result struct {
		frame string
		err   error
	}
	want := []result{
		{"a", nil},
		{strings.Repeat("b", max), nil},
		{"", ErrFrameTooLarge},
		{"", nil},
		{"", ErrFrameTooLarge},
		{"e", nil},
		{"", io.ErrUnexpectedEOF},
	}
	for _, name := range []string{"whole", "onebyte", "halfreader"} {
		var src io.Reader = strings.NewReader(in)
		switch name {
		case "onebyte":
			src = iotest.OneByteReader(src)
		case "halfreader":
			src = iotest.HalfReader(src)
		}
		r := NewReader(src, max)
		for i, w := range want {
			f, err := r.ReadFrame()
			if string(f) != w.frame || !errors.Is(err, w.err) || (err == nil) != (w.err == nil) {
				t.Errorf("%s: frame %d = %q, %v; want %q, %v", name, i, f, err, w.frame, w.err)
			}
		}
	}
}

func TestReaderEOF(t *testing.T) {
	r := NewReader(strings.NewReader("x\n"), 0)
	if _, err := r.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadFrame(); err != io.EOF {
		t.Fatalf("at end: err = %v, want io.EOF", err)
	}
}

// A read error in the middle of a frame (a timeout, say) loses nothing: the
// next call resumes the frame.
func TestReaderResumesAfterError(t *testing.T) {
	errTimeout := errors.New("timeout")
	src := io.MultiReader(
		strings.NewReader(`{"name":`),
		iotest.ErrReader(errTimeout),
	)
	r := NewReader(&onceErr{r: src, rest: strings.NewReader(`"ping"}` + "\n")}, 0)
	if _, err := r.ReadFrame(); !errors.Is(err, errTimeout) {
		t.Fatalf("first read: err = %v, want timeout", err)
	}
	f, err := r.ReadFrame()
	if err != nil || string(f) != `{"name":"ping"}` {
		t.Fatalf("resumed read = %q, %v", f, err)
	}
}

// onceErr reads r until it fails, then continues with rest.
type onceErr struct {
	r, rest io.Reader
	failed  bool
}

func (o *onceErr) Read(p []byte) (int, error) {
	if o.failed {
		return o.rest.Read(p)
	}
	n, err := o.r.Read(p)
	if err != nil && err != io.EOF {
		o.failed = true
	}
	return n, err
}

// The reader never grows past its limit, whatever the input.
func TestReaderBoundedMemory(t *testing.T) {
	const max = 4 << 10
	r := NewReader(io.LimitReader(zeros{}, 64<<20), max)
	if _, err := r.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
	if _, err := r.ReadFrame(); err != io.ErrUnexpectedEOF {
		t.Fatalf("after skipping: err = %v, want io.ErrUnexpectedEOF", err)
	}
	if c := len(r.buf) + cap(r.frame); c > 2*max {
		t.Fatalf("reader holds %d bytes", c)
	}
}

// A frame over the limit is refused as soon as the bytes are in, without
// waiting for its end or for more data.
func TestReaderTooLargeAtOnce(t *testing.T) {
	errBlocked := errors.New("would block")
	for _, max := range []int{32, 100 << 10} {
		src := io.MultiReader(strings.NewReader(strings.Repeat("x", max+1)), iotest.ErrReader(errBlocked))
		r := NewReader(src, max)
		if _, err := r.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
			t.Errorf("max %d: err = %v, want ErrFrameTooLarge", max, err)
		}
		if _, err := r.ReadFrame(); !errors.Is(err, errBlocked) {
			t.Errorf("max %d: then err = %v, want the stream's", max, err)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestWriter(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 64)
	if err := w.WriteFrame(NamePing, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteEnvelope(Envelope{Name: NameQuit, Data: json.RawMessage(`{"reason":"bye"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFrame("test", 0, strings.Repeat("x", 64)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversize write: err = %v, want ErrFrameTooLarge", err)
	}
	want := `{"name":"ping","rid":1}` + "\n" + `{"name":"quit","data":{"reason":"bye"}}` + "\n"
	if buf.String() != want {
		t.Fatalf("written %q, want %q", buf.String(), want)
	}
}

func TestCodes(t *testing.T) {
	seen := map[Code]bool{}
	prev := Code(0)
	for _, c := range Codes() {
		if c.Text() == "" {
			t.Errorf("code %d has no text", c)
		}
		if c <= prev {
			t.Errorf("Codes not ascending at %d", c)
		}
		prev = c
		seen[c] = true
	}
	if len(seen) != len(codeText) {
		t.Errorf("Codes lists %d codes, table has %d", len(seen), len(codeText))
	}
	// The original protocol's numbers are kept.
	for c, n := range map[Code]int{
		CodeIdentifyFirst: 1000, CodeAlreadyIdentified: 1010, CodeOwnAddress: 1020,
		CodeAddressMismatch: 1030, CodeHashcash: 4000, CodeInvalidData: 9000,
		CodeUnknownCommand: 9020, CodeUnknown: 9999,
	} {
		if int(c) != n {
			t.Errorf("%v: number %d, want %d", c, int(c), n)
		}
	}
	if got := CodeFrameTooLarge.String(); got != "9040 frame too large" {
		t.Errorf("String = %q", got)
	}
	if got := Code(1234).String(); got != "1234" {
		t.Errorf("String of undefined code = %q", got)
	}
	if e := NewError(CodeTimeout, "id", ""); e.Text != "timeout" || e.Name != "id" {
		t.Errorf("NewError = %+v", e)
	}
}

func TestValidate(t *testing.T) {
	a, _ := identity.Generate()
	good := ID{Address: a.Address, Port: 1}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for i, id := range []ID{
		{Port: 1},
		{Address: a.Address, Port: 70000},
		{Address: a.Address, Capabilities: []string{"Bad"}},
		{Address: a.Address, Capabilities: make([]string, MaxCapabilities+1)},
		{Address: a.Address, Hashcash: HashcashPolicy{"msg": 65}},
		{Address: a.Address, Hashcash: HashcashPolicy{"": 1}},
	} {
		if err := id.Validate(); !errors.Is(err, ErrInvalidPayload) {
			t.Errorf("ID %d: Validate = %v, want ErrInvalidPayload", i, err)
		}
	}
	for i, h := range []Hello{
		{},
		{Protocol: 1, Software: "x\x1b[2J"},
		{Protocol: 1, ObservedAddr: "example.com:1"},
		{Protocol: 1, ObservedAddr: "1.2.3.4"},
	} {
		if err := h.Validate(); !errors.Is(err, ErrInvalidPayload) {
			t.Errorf("Hello %d: Validate = %v, want ErrInvalidPayload", i, err)
		}
	}
	for _, h := range []Hello{
		{Protocol: 1},
		{Protocol: 2, Software: "phpchat-node/0.1.0", ObservedAddr: "[2001:db8::1]:25000"},
	} {
		if err := h.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", h, err)
		}
	}
}

func TestPlainWord(t *testing.T) {
	for c := range 256 {
		want := c >= 0x20 && c != '"' && c != '\\'
		for pos := range 8 {
			w := []byte("abcdefgh")
			w[pos] = byte(c)
			if got := plainWord(binary.LittleEndian.Uint64(w)); got != want {
				t.Errorf("plainWord with %#x at %d = %v, want %v", c, pos, got, want)
			}
		}
	}
	for _, s := range []string{"\x00\x00\x00\x00\x00\x00\x00\x00", "\xff\xff\xff\xff\xff\xff\xff\xff", "\x1f\xff\x20\x80\x7f\x21\x5b\x5d"} {
		want := !strings.ContainsAny(s, "\"\\") && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 })
		if got := plainWord(binary.LittleEndian.Uint64([]byte(s))); got != want {
			t.Errorf("plainWord(%q) = %v, want %v", s, got, want)
		}
	}
}

// DecodeError and DecodeQuit cut a peer's texts to the spec's limits.
func TestDecodeBoundsText(t *testing.T) {
	long := strings.Repeat("é", MaxTextLen) // two bytes a rune: cut inside one
	e, err := NewEnvelope(NameError, 0, Error{Code: CodeBusy, Text: long, Name: long})
	if err != nil {
		t.Fatal(err)
	}
	we, err := DecodeError(e)
	if err != nil || len(we.Text) > MaxTextLen || len(we.Name) > MaxNameLen || !utf8.ValidString(we.Text) {
		t.Fatalf("DecodeError: text %d bytes, name %d, %v", len(we.Text), len(we.Name), err)
	}
	e, err = NewEnvelope(NameQuit, 0, Quit{Reason: long})
	if err != nil {
		t.Fatal(err)
	}
	if q := DecodeQuit(e); len(q.Reason) != MaxTextLen || !utf8.ValidString(q.Reason) {
		t.Fatalf("DecodeQuit: reason %d bytes", len(q.Reason))
	}
}

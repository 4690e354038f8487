package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzReadFrame feeds arbitrary streams to the frame reader and the
// envelope parser. Neither may panic; every frame is within the limit and
// has no LF; every envelope parsed is well-formed and survives a round trip.
func FuzzReadFrame(f *testing.F) {
	for _, s := range []string{
		"",
		"\n",
		`{"name":"hello","data":{"protocol":1,"software":"phpchat-node/0.1.0","observed_addr":"127.0.0.1:25000"}}` + "\n",
		`{"name":"id","data":{"address":"pc1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqs4tv9z","port":25000}}` + "\n",
		`{"name":"ping","rid":1}` + "\n" + `{"name":"pong","rid":1}` + "\n",
		`{"name":"error","data":{"code":9020,"text":"unknown command","name":"x"}}` + "\n",
		`{"name":"quit"}`,
		"garbage\r\n{\"name\":5}\n[]\n\"s\"\n",
		`{"name":"x","rid":-1}` + "\n" + `{"name":"x","rid":1e3}` + "\n",
		`{"name":"x","data":"` + strings.Repeat("a", 300) + `"}` + "\n" + `{"name":"y"}` + "\n",
		"{\"name\":\"x\",\"data\":\"\xff\xfe\"}\n",
		`{"name":"x","data":{"a":[[[[[[[[[[]]]]]]]]]]}}` + "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		const max = 256
		r := NewReader(bytes.NewReader(in), max)
		for range len(in) + 2 {
			frame, err := r.ReadFrame()
			if errors.Is(err, ErrFrameTooLarge) {
				continue
			}
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF {
					t.Fatalf("ReadFrame: unexpected error %v", err)
				}
				return
			}
			if len(frame) > max {
				t.Fatalf("frame of %d bytes over the limit %d", len(frame), max)
			}
			if bytes.IndexByte(frame, '\n') >= 0 {
				t.Fatalf("frame %q holds a LF", frame)
			}
			e, err := ParseEnvelope(frame)
			checkAgainstReference(t, frame, e, err)
			if err != nil {
				if !errors.Is(err, ErrNotJSON) && !errors.Is(err, ErrBadEnvelope) {
					t.Fatalf("ParseEnvelope(%q): unexpected error %v", frame, err)
				}
				if e.Name != "" && !ValidName(e.Name) {
					t.Fatalf("ParseEnvelope(%q) returned invalid name %q", frame, e.Name)
				}
				continue
			}
			if !ValidName(e.Name) {
				t.Fatalf("ParseEnvelope(%q) accepted name %q", frame, e.Name)
			}
			out, err := e.AppendFrame(nil)
			if err != nil {
				t.Fatalf("AppendFrame(%+v): %v", e, err)
			}
			if bytes.IndexByte(out[:len(out)-1], '\n') >= 0 {
				t.Fatalf("re-encoded frame %q holds a LF", out)
			}
			e2, err := ParseEnvelope(out[:len(out)-1])
			if err != nil {
				t.Fatalf("re-parse %q: %v", out, err)
			}
			if e2.Name != e.Name || e2.RID != e.RID || (len(e.Data) == 0) != (len(e2.Data) == 0) {
				t.Fatalf("round trip changed %+v into %+v", e, e2)
			}
			// Decoding into the payload types must not panic either.
			var h Hello
			var id ID
			var er Error
			if e.Decode(&h) == nil {
				_ = h.Validate()
			}
			if e.Decode(&id) == nil {
				_ = id.Validate()
			}
			_ = e.Decode(&er)
		}
	})
}

// checkAgainstReference compares ParseEnvelope's result with what
// encoding/json makes of the same frame.
func checkAgainstReference(t *testing.T, frame []byte, e Envelope, err error) {
	t.Helper()
	if valid(frame) != json.Valid(frame) {
		t.Fatalf("valid(%q) = %v, json.Valid says otherwise", frame, valid(frame))
	}
	if !json.Valid(frame) {
		if !errors.Is(err, ErrNotJSON) {
			t.Fatalf("ParseEnvelope(%q) = %+v, %v; encoding/json says not JSON", frame, e, err)
		}
		return
	}
	if errors.Is(err, ErrNotJSON) {
		t.Fatalf("ParseEnvelope(%q): %v; encoding/json says valid", frame, err)
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(frame, &m) != nil {
		if !errors.Is(err, ErrBadEnvelope) {
			t.Fatalf("ParseEnvelope(%q) = %+v, %v; want ErrBadEnvelope for a non-object", frame, e, err)
		}
		return
	}
	var (
		name string
		rid  uint64
		bad  bool
	)
	if v, ok := m["name"]; ok && string(v) != "null" {
		if json.Unmarshal(v, &name) != nil || !ValidName(name) {
			bad, name = true, ""
		}
	}
	if v, ok := m["rid"]; ok && string(v) != "null" {
		if json.Unmarshal(v, &rid) != nil || bytes.ContainsAny(v, ".eE-") {
			bad = true
		}
	}
	if name == "" {
		bad = true
	}
	if bad != (err != nil) || e.Name != name {
		t.Fatalf("ParseEnvelope(%q) = %+v, %v; reference: name %q, bad %v", frame, e, err, name, bad)
	}
	if bad {
		return
	}
	data := m["data"]
	if string(data) == "null" {
		data = nil
	}
	if e.RID != rid || !bytes.Equal(e.Data, data) {
		t.Fatalf("ParseEnvelope(%q) = %+v; reference: rid %d, data %q", frame, e, rid, data)
	}
}

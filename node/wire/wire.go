// Package wire is the framing of the peer protocol inside TLS.
//
// A peer connection carries frames: each frame is one JSON envelope
// {"name":…,"rid":…,"data":…} on a line of its own, ended by a single LF.
// A frame is at most MaxFrameSize bytes, the LF excluded. Name says what the
// frame is; rid, when present, pairs a reply with its request; data is the
// payload, whose shape depends on the name.
//
// The package reads and writes frames, holds the error-code table and the
// payloads of the messages of the handshake and the session
// (hello, id, id_ok, ping, pong, error, quit). It knows nothing of
// connections or of the handshake's order; that is package peer.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxFrameSize is the largest frame the protocol allows, in bytes, the LF
// excluded. Every implementation accepts frames up to this size.
const MaxFrameSize = 1 << 20

// MaxNameLen is the longest message name, in bytes.
const MaxNameLen = 64

// Errors of reading and parsing frames.
var (
	// ErrFrameTooLarge reports a frame over the reader's or writer's limit.
	ErrFrameTooLarge = errors.New("wire: frame too large")
	// ErrNotJSON reports a frame that is not JSON text.
	ErrNotJSON = errors.New("wire: frame is not JSON")
	// ErrBadEnvelope reports a frame that is JSON but not an envelope: not
	// an object, without a valid name, or with a rid that is not an
	// unsigned integer.
	ErrBadEnvelope = errors.New("wire: invalid envelope")
)

// An Envelope is one frame: a message name, an optional request id and the
// payload as raw JSON.
type Envelope struct {
	// Name says what the message is: 1 to MaxNameLen bytes of a-z, 0-9 and
	// '_', starting with a letter.
	Name string `json:"name"`
	// RID is the request id: a request carries one, its reply carries the
	// same, a one-way message none (0).
	RID uint64 `json:"rid,omitempty"`
	// Data is the payload, or nil when the message has none.
	Data json.RawMessage `json:"data,omitempty"`
}

// NewEnvelope returns an envelope whose Data is data encoded as JSON. A nil
// data, or one that encodes as null, gives an envelope without data.
func NewEnvelope(name string, rid uint64, data any) (Envelope, error) {
	e := Envelope{Name: name, RID: rid}
	if !ValidName(name) {
		return e, fmt.Errorf("%w: name %q", ErrBadEnvelope, name)
	}
	raw, err := marshalData(data)
	if err != nil {
		return e, fmt.Errorf("wire: encode %s data: %w", name, err)
	}
	e.Data = raw
	return e, nil
}

// Decode decodes the envelope's data into v. An envelope without data
// leaves v unchanged.
func (e Envelope) Decode(v any) error {
	if len(e.Data) == 0 {
		return nil
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("wire: decode %s data: %w", e.Name, err)
	}
	return nil
}

// AppendFrame appends the envelope as a frame, LF included, to dst.
// Data must be valid JSON; it is checked and written without insignificant
// white space, so the frame is always one line.
func (e Envelope) AppendFrame(dst []byte) ([]byte, error) {
	var data any
	if len(e.Data) > 0 {
		data = e.Data
	}
	return AppendFrame(dst, e.Name, e.RID, data)
}

// AppendFrame appends a frame with the given name, rid and data (encoded as
// JSON; nil or null means none), LF included, to dst.
func AppendFrame(dst []byte, name string, rid uint64, data any) ([]byte, error) {
	if !ValidName(name) {
		return dst, fmt.Errorf("%w: name %q", ErrBadEnvelope, name)
	}
	raw, err := marshalData(data)
	if err != nil {
		return dst, fmt.Errorf("wire: encode %s data: %w", name, err)
	}
	dst = append(dst, `{"name":"`...)
	dst = append(dst, name...) // ValidName: nothing to escape
	dst = append(dst, '"')
	if rid != 0 {
		dst = append(dst, `,"rid":`...)
		dst = appendUint(dst, rid)
	}
	if raw != nil {
		dst = append(dst, `,"data":`...)
		dst = append(dst, raw...)
	}
	return append(dst, '}', '\n'), nil
}

// marshalData encodes data as JSON on one line. It returns nil for no
// data.
func marshalData(data any) ([]byte, error) {
	switch d := data.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		// Checked here rather than by json.Marshal, which is slower and
		// would also rewrite it.
		if !valid(d) {
			return nil, errors.New("data is not valid JSON")
		}
		if bytes.IndexByte(d, '\n') >= 0 || bytes.IndexByte(d, '\r') >= 0 { // white space: strings cannot hold them
			var buf bytes.Buffer
			json.Compact(&buf, d)
			d = buf.Bytes()
		}
		if string(d) == "null" {
			return nil, nil
		}
		return bytes.TrimSpace(d), nil
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	if string(raw) == "null" {
		return nil, nil
	}
	return raw, nil
}

func appendUint(dst []byte, v uint64) []byte {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(dst, b[i:]...)
}

// ValidName reports whether name is a well-formed message name.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > MaxNameLen || name[0] < 'a' || name[0] > 'z' {
		return false
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// A Reader reads frames from a stream. It holds at most a fixed read
// buffer plus the limit of frame bytes, whatever the stream holds.
type Reader struct {
	rd         io.Reader
	max        int
	buf        []byte // read buffer
	r, w       int    // buf[r:w] is read from rd but not yet returned
	scan       int    // buf[r:scan] is known to hold no LF
	frame      []byte // the start of a frame longer than buf
	returned   bool   // the last call returned a frame (which may alias frame)
	discarding bool   // skipping the rest of a frame over the limit
	err        error  // a read error to return once the buffer is used up
}

// readBufferSize caps the size of the Reader's read buffer.
const readBufferSize = 64 << 10

// NewReader returns a Reader of frames of at most max bytes (the LF
// excluded) from r. A max of 0 or less means MaxFrameSize.
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 {
		max = MaxFrameSize
	}
	return &Reader{rd: r, max: max, buf: make([]byte, min(max+1, readBufferSize))}
}

// ReadFrame returns the next frame without its LF. The slice is valid until
// the next call.
//
// A frame over the limit yields ErrFrameTooLarge as soon as the bytes read
// pass the limit; the rest of that frame is skipped by the next call, so
// the caller may go on reading or stop at once. A stream that ends inside a
// frame yields io.ErrUnexpectedEOF, and at a frame boundary io.EOF. Other
// errors are the underlying reader's; after a timeout, a later call
// resumes where the stream stopped.
func (r *Reader) ReadFrame() ([]byte, error) {
	if r.returned {
		r.returned = false
		if cap(r.frame) > 2*readBufferSize {
			r.frame = nil // do not keep a large frame's buffer for ever
		}
		r.frame = r.frame[:0]
	}
	for empty := 0; ; {
		if i := bytes.IndexByte(r.buf[r.scan:r.w], '\n'); i >= 0 {
			end := r.scan + i
			line := r.buf[r.r:end]
			r.r, r.scan = end+1, end+1
			if r.discarding {
				r.discarding = false
				continue
			}
			if len(r.frame)+len(line) > r.max {
				r.frame = r.frame[:0]
				return nil, ErrFrameTooLarge
			}
			r.returned = true
			if len(r.frame) == 0 {
				return line, nil // no copy: the whole frame is in buf
			}
			r.frame = append(r.frame, line...)
			return r.frame, nil
		}
		r.scan = r.w
		switch {
		case r.discarding:
			r.r, r.w, r.scan = 0, 0, 0
		case len(r.frame)+r.w-r.r > r.max:
			r.frame = r.frame[:0]
			r.r, r.w, r.scan = 0, 0, 0
			r.discarding = true
			return nil, ErrFrameTooLarge
		case r.w == len(r.buf) && r.r > 0:
			n := copy(r.buf, r.buf[r.r:r.w])
			r.r, r.w, r.scan = 0, n, n
		case r.w == len(r.buf):
			r.frame = append(r.frame, r.buf...)
			r.r, r.w, r.scan = 0, 0, 0
		}
		if r.err != nil {
			err := r.err
			r.err = nil
			if err == io.EOF && (r.w > r.r || len(r.frame) > 0 || r.discarding) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		n, err := r.rd.Read(r.buf[r.w:])
		r.w += n
		r.err = err
		if n == 0 && err == nil {
			if empty++; empty == 100 {
				return nil, io.ErrNoProgress
			}
		}
	}
}

// ReadEnvelope reads and parses the next frame. Besides ReadFrame's errors
// it returns ParseEnvelope's, after which the stream is still in step.
func (r *Reader) ReadEnvelope() (Envelope, error) {
	frame, err := r.ReadFrame()
	if err != nil {
		return Envelope{}, err
	}
	return ParseEnvelope(frame)
}

// A Writer writes frames to a stream, one Write call per frame. It does not
// buffer: wrap the stream in a bufio.Writer to batch frames.
type Writer struct {
	w   io.Writer
	max int
	buf []byte
}

// NewWriter returns a Writer of frames of at most max bytes (the LF
// excluded) to w. A max of 0 or less means MaxFrameSize.
func NewWriter(w io.Writer, max int) *Writer {
	if max <= 0 {
		max = MaxFrameSize
	}
	return &Writer{w: w, max: max}
}

// WriteFrame writes a frame with the given name, rid and data (encoded as
// JSON; nil means none). A frame over the limit is not written and yields
// ErrFrameTooLarge.
func (w *Writer) WriteFrame(name string, rid uint64, data any) error {
	b, err := AppendFrame(w.buf[:0], name, rid, data)
	if err != nil {
		return err
	}
	return w.write(name, b)
}

// WriteEnvelope writes e as a frame.
func (w *Writer) WriteEnvelope(e Envelope) error {
	b, err := e.AppendFrame(w.buf[:0])
	if err != nil {
		return err
	}
	return w.write(e.Name, b)
}

func (w *Writer) write(name string, b []byte) error {
	if cap(b) <= readBufferSize {
		w.buf = b
	}
	if len(b)-1 > w.max {
		return fmt.Errorf("%w: %s frame of %d bytes, limit %d", ErrFrameTooLarge, name, len(b)-1, w.max)
	}
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("wire: write %s frame: %w", name, err)
	}
	return nil
}

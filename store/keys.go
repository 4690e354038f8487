package store

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"strings"
	"time"
)

// The key prefixes of every repository, in one place so that no two
// repositories share keys. A record lives under its repository's prefix; a
// secondary index under its own prefix, whose value is the record's key.
// No prefix may be a prefix of another (TestPrefixesAreDistinct), so a scan
// of one never sees another's keys. A new repository adds its prefixes here
// and to prefixes.
const (
	prefixMeta        = "meta/"         // meta/<name> → JSON value
	prefixContact     = "contact/"      // contact/<id, 8 bytes big-endian> → JSON Contact
	prefixContactNick = "contact-nick/" // contact-nick/<lower-case nickname> → contact key
	prefixContactAddr = "contact-addr/" // contact-addr/<address> → contact key
	prefixStamp       = "stamp/"        // stamp/<SHA-256 of the stamp> → empty, with a TTL
	prefixSeq         = "seq/"          // seq/<name> → badger.Sequence lease

	// Outbox (messages.go): message ids are 16 raw bytes, numbers 8 bytes
	// big-endian, times Unix nanoseconds as 8 bytes big-endian.
	prefixOut     = "out/"      // out/<id> → JSON OutMsg without its blobs
	prefixOutBody = "out-body/" // out-body/<id> → the message's content
	prefixOutEnv  = "out-env/"  // out-env/<id> → the sealed envelope
	prefixOutNum  = "out-num/"  // out-num/<number> → out key
	prefixOutDue  = "out-due/"  // out-due/<next attempt><id> → out key, while not final

	// Inbox (messages.go).
	prefixIn     = "in/"      // in/<id> → JSON InMsg without its content
	prefixInBody = "in-body/" // in-body/<id> → the message's content
	prefixInNum  = "in-num/"  // in-num/<number> → in key
	prefixInGone = "in-gone/" // in-gone/<id> → empty, with a TTL: deleted, still a duplicate

	// Relay store (relay.go): recipients are 32 raw bytes.
	prefixRelay      = "relay/"       // relay/<id> → relay record, TTL its expiry
	prefixRelayTo    = "relay-to/"    // relay-to/<recipient><stored><id> → relay key, same TTL
	prefixRelayExp   = "relay-exp/"   // relay-exp/<expires><id> → ledger entry, no TTL
	prefixRelayUse   = "relay-use/"   // relay-use/<recipient> → count and bytes held for it
	prefixRelayTotal = "relay-total/" // relay-total/ → count and bytes held in all
	prefixRelayDone  = "relay-done/"  // relay-done/<id><secret hash> → empty, TTL its expiry: deleted by receipt

	// Mailboxes of the IMAP gateway (mailbox.go): mailbox ids and UIDs are
	// 4 bytes big-endian.
	prefixMbox     = "mbox/"      // mbox/<name> → JSON Mailbox
	prefixMboxMsg  = "mbox-msg/"  // mbox-msg/<mailbox id><uid> → JSON MailboxMsg without its content
	prefixMboxBody = "mbox-body/" // mbox-body/<mailbox id><uid> → the content of a message the gateway holds
)

// prefixes lists every prefix above.
var prefixes = []string{
	prefixMeta, prefixContact, prefixContactNick, prefixContactAddr, prefixStamp, prefixSeq,
	prefixOut, prefixOutBody, prefixOutEnv, prefixOutNum, prefixOutDue,
	prefixIn, prefixInBody, prefixInNum, prefixInGone,
	prefixRelay, prefixRelayTo, prefixRelayExp, prefixRelayUse, prefixRelayTotal, prefixRelayDone,
	prefixMbox, prefixMboxMsg, prefixMboxBody,
}

// Counters, each a badger.Sequence under prefixSeq.
const (
	seqContact = prefixSeq + "contact"
	seqOut     = prefixSeq + "out"
	seqIn      = prefixSeq + "in"
	seqMbox    = prefixSeq + "mbox"
)

func metaKey(name string) []byte { return []byte(prefixMeta + name) }

func contactKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(prefixContact), id)
}

func contactNickKey(nick string) []byte { return []byte(prefixContactNick + strings.ToLower(nick)) }
func contactAddrKey(addr string) []byte { return []byte(prefixContactAddr + addr) }

func stampKey(stamp string) []byte {
	sum := sha256.Sum256([]byte(stamp))
	return append([]byte(prefixStamp), sum[:]...)
}

// idKey is prefix followed by a message id.
func idKey(prefix string, id [16]byte) []byte {
	return append([]byte(prefix), id[:]...)
}

// numKey is prefix followed by a local number.
func numKey(prefix string, n uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(prefix), n)
}

// timeIDKey is prefix followed by a time (Unix nanoseconds, so that keys
// sort by time) and a message id.
func timeIDKey(prefix string, t time.Time, id [16]byte) []byte {
	k := binary.BigEndian.AppendUint64([]byte(prefix), unixNano(t))
	return append(k, id[:]...)
}

// unixNano is t in Unix nanoseconds, zero for times before 1970 and the
// largest int64 for times after 2262.
func unixNano(t time.Time) uint64 {
	switch s := t.Unix(); {
	case s < 0:
		return 0
	case s >= math.MaxInt64/int64(time.Second):
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

func relayToKey(rcpt [32]byte, stored time.Time, id [16]byte) []byte {
	k := append([]byte(prefixRelayTo), rcpt[:]...)
	k = binary.BigEndian.AppendUint64(k, unixNano(stored))
	return append(k, id[:]...)
}

func relayUseKey(rcpt [32]byte) []byte { return append([]byte(prefixRelayUse), rcpt[:]...) }

func mboxKey(name string) []byte { return []byte(prefixMbox + name) }

// mboxMsgKey is prefix followed by a mailbox id and a UID.
func mboxMsgKey(prefix string, mbox, uid uint32) []byte {
	k := binary.BigEndian.AppendUint32([]byte(prefix), mbox)
	return binary.BigEndian.AppendUint32(k, uid)
}

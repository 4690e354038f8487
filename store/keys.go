package store

import (
	"crypto/sha256"
	"encoding/binary"
	"strings"
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
)

// prefixes lists every prefix above.
var prefixes = []string{prefixMeta, prefixContact, prefixContactNick, prefixContactAddr, prefixStamp, prefixSeq}

// Counters, each a badger.Sequence under prefixSeq.
const seqContact = prefixSeq + "contact"

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

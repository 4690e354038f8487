// Package config holds the node's settings and the layout of its data
// directory.
//
// Every setting has a default, a command-line flag, an environment variable
// and a key in settings.yml, all named after one key: the setting "listen" is
// the flag --listen, the variable PHPCHAT_LISTEN and the settings.yml key
// "listen". A value set in several places is taken from the first of: flag,
// environment, settings.yml, default.
package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/phpchat/phpchat-node/node/identity"
)

// Settings are the node's resolved settings.
type Settings struct {
	LogLevel        slog.Level
	LogFormat       string // "text" or "json"
	Listen          string // P2P listen address, host:port
	Connect         []string
	Bootstrap       []string
	NodeFindBits    int
	MaxInbound      int
	MaxOutbound     int
	MaxPerIP        int
	MaxHandshakes   int // inbound connections not yet authenticated
	IPv6Prefix      int // max-per-ip counts IPv6 peers by this prefix
	MaxFrame        int
	HandshakeTime   time.Duration
	IdleTimeout     time.Duration
	Miners          int
	Nickname        string
	MailDomain      string
	ShutdownTimeout time.Duration
	TalkTimeout     time.Duration // an incoming talk request waits this long for the user
	TalkBits        int           // hashcash bits a talk request must carry
	DiskReserve     uint64        // free bytes below which the node refuses work that writes

	MaxMessageSize      int           // bytes of an offline message's content
	MsgBits             int           // stamp bits of an envelope up to 64 KiB
	MsgReplicas         int           // relays that get a copy of a message
	MsgExpiry           time.Duration // how long a message lives
	RelayQuota          uint64        // bytes of envelopes held for others
	RelayRecipientQuota uint64        // the same, for one recipient

	SMTP, IMAP              bool   // the mail gateways are on
	SMTPListen, IMAPListen  string // their listen addresses
	MailTLSCert, MailTLSKey string // their certificate and key, if any

	Web                   bool   // the web console is on
	WebListen             string // its listen address
	WebTLSCert, WebTLSKey string // its certificate and key, if any

	// origins says where each value came from, such as "flag --listen".
	origins map[string]string
}

// Origin returns where the value of the setting key came from: a flag, an
// environment variable, a line of settings.yml or "default".
func (s *Settings) Origin(key string) string { return s.origins[key] }

// Refuse returns the error of a setting whose value was accepted by Resolve
// but found unusable later, such as a listen address already in use. The
// error names the setting and where its value came from.
func (s *Settings) Refuse(key string, err error) error {
	return &Error{Key: key, Origin: s.Origin(key), Err: err}
}

// A Setting describes one setting: its key, what it means, its default and
// how a value is checked and applied.
type Setting struct {
	Key     string
	Usage   string
	Default string
	// List settings take several values: a repeated flag, a
	// comma-separated environment variable, a YAML sequence. Sources pass
	// them joined by commas.
	List bool
	// Bool settings are switches: "true" or "false", a flag without a
	// value.
	Bool bool
	// DefaultText, if set, is how help and documents show the default,
	// when that is not the value itself.
	DefaultText string
	// apply checks v and stores it in s. The error says why v is refused,
	// without naming the key; the caller adds that.
	apply func(s *Settings, v string) error
}

// Env returns the environment variable of the setting.
func (d Setting) Env() string {
	return "PHPCHAT_" + strings.ToUpper(strings.ReplaceAll(d.Key, "-", "_"))
}

// DefaultNickname is the default of the nickname setting when settings.yml
// does not set one; the first run writes a random nickname of the form
// user_xxxx into a new settings.yml, so a node seldom has this one.
const DefaultNickname = "user"

// MaxNicknameLen is the longest nickname accepted, in bytes (as the original).
const MaxNicknameLen = 256

// Table lists every setting, in the order settings.yml shows them.
var Table = []Setting{
	{
		Key: "log-level", Default: "info",
		Usage: "least severe log level written: debug, info, warn or error",
		apply: func(s *Settings, v string) error {
			var l slog.Level
			if err := l.UnmarshalText([]byte(v)); err != nil || !oneOf(strings.ToLower(v), "debug", "info", "warn", "error") {
				return fmt.Errorf("unknown log level %q (want debug, info, warn or error)", v)
			}
			s.LogLevel = l
			return nil
		},
	},
	{
		Key: "log-format", Default: "text",
		Usage: "log format on standard error: text or json",
		apply: func(s *Settings, v string) error {
			if !oneOf(v, "text", "json") {
				return fmt.Errorf("unknown log format %q (want text or json)", v)
			}
			s.LogFormat = v
			return nil
		},
	},
	{
		Key: "listen", Default: "0.0.0.0:25000",
		Usage: "address the node listens on for peers (host:port; port 0 picks a free one)",
		apply: func(s *Settings, v string) error {
			if err := CheckListen(v); err != nil {
				return err
			}
			s.Listen = v
			return nil
		},
	},
	peersSetting("connect", "peers to dial at start and keep connected: host:port or address@host:port", func(s *Settings, t []string) { s.Connect = t }),
	peersSetting("bootstrap", "seed nodes to join the DHT through: host:port or address@host:port", func(s *Settings, t []string) { s.Bootstrap = t }),
	intSetting("node-find-bits", "12", "hashcash bits this node asks of each node_find (DHT lookup) request", 0, 32, func(s *Settings, n int) { s.NodeFindBits = n }),
	intSetting("max-inbound", "64", "most sessions peers may open to this node", 1, 100000, func(s *Settings, n int) { s.MaxInbound = n }),
	intSetting("max-outbound", "32", "most sessions this node opens to peers", 1, 100000, func(s *Settings, n int) { s.MaxOutbound = n }),
	intSetting("max-per-ip", "4", "most sessions from one IP address", 1, 100000, func(s *Settings, n int) { s.MaxPerIP = n }),
	intSetting("max-handshakes", "16", "most inbound connections not yet authenticated; a new one cuts the oldest short", 1, 100000, func(s *Settings, n int) { s.MaxHandshakes = n }),
	intSetting("ipv6-prefix", "64", "max-per-ip counts IPv6 peers by their prefix of this many bits", 32, 128, func(s *Settings, n int) { s.IPv6Prefix = n }),
	intSetting("max-frame", "1048576", "largest frame a peer may send, in bytes (every node accepts 1 MiB)", 1<<20, 16<<20, func(s *Settings, n int) { s.MaxFrame = n }),
	durationSetting("handshake-timeout", "10s", "time a peer has to complete the handshake", time.Second, 5*time.Minute, func(s *Settings, d time.Duration) { s.HandshakeTime = d }),
	durationSetting("idle-timeout", "2m", "a session silent this long is closed; it is pinged after half of it", 2*time.Second, 24*time.Hour, func(s *Settings, d time.Duration) { s.IdleTimeout = d }),
	intSetting("miners", "0", "hashcash miner goroutines; 0 means one per CPU", 0, 1024, func(s *Settings, n int) {
		if n == 0 {
			n = runtime.NumCPU()
		}
		s.Miners = n
	}),
	{
		Key: "nickname", Default: DefaultNickname, DefaultText: DefaultNickname + "_xxxx, random, written to settings.yml by the first run",
		Usage: "the name peers see in talks: one word",
		apply: func(s *Settings, v string) error {
			if err := CheckNickname(v); err != nil {
				return err
			}
			s.Nickname = v
			return nil
		},
	},
	{
		Key: "mail-domain", Default: "phpchat.lan",
		Usage: "domain of the node's mail address (<address>@<mail-domain>)",
		apply: func(s *Settings, v string) error {
			if err := checkDomain(v); err != nil {
				return err
			}
			s.MailDomain = strings.ToLower(v)
			return nil
		},
	},
	durationSetting("shutdown-timeout", "5s", "how long a stopping node waits for work in flight", time.Second, 10*time.Minute, func(s *Settings, d time.Duration) { s.ShutdownTimeout = d }),
	durationSetting("talk-timeout", "60s", "how long an incoming talk request waits for an answer", time.Second, 24*time.Hour, func(s *Settings, d time.Duration) { s.TalkTimeout = d }),
	intSetting("talk-bits", "15", "hashcash bits a peer's talk request must carry", 0, 32, func(s *Settings, n int) { s.TalkBits = n }),
	// The store maps 8 MiB log files and flushes 4 MiB tables: less room
	// than MinDiskReserve could fill the disk between readings.
	sizeSetting("disk-reserve", "64MiB", "free space to keep in the data dir's file system: below it the node refuses work that writes (such as 64MiB, 1GiB)", MinDiskReserve, 1<<50, func(s *Settings, n uint64) { s.DiskReserve = n }),
	sizeSetting("max-message-size", "8MiB", "largest offline message (its content) this node sends or takes", 64<<10, 64<<20, func(s *Settings, n uint64) { s.MaxMessageSize = int(n) }),
	intSetting("msg-bits", "20", "hashcash bits an offline message of up to 64 KiB must carry, one more for each doubling above (the network's minimum)", 0, 32, func(s *Settings, n int) { s.MsgBits = n }),
	intSetting("msg-replicas", "8", "relays near the recipient that get a copy of an offline message", 1, 32, func(s *Settings, n int) { s.MsgReplicas = n }),
	durationSetting("msg-expiry", "336h", "how long an offline message is delivered before it expires", time.Hour, 60*24*time.Hour, func(s *Settings, d time.Duration) { s.MsgExpiry = d }),
	sizeSetting("relay-quota", "1GiB", "bytes of other nodes' messages this node holds", 0, 1<<50, func(s *Settings, n uint64) { s.RelayQuota = n }),
	sizeSetting("relay-recipient-quota", "64MiB", "bytes of messages this node holds for one recipient", 0, 1<<50, func(s *Settings, n uint64) { s.RelayRecipientQuota = n }),
	boolSetting("smtp", "serve the SMTP gateway: mail clients send offline messages through it", func(s *Settings, b bool) { s.SMTP = b }),
	hostPortSetting("smtp-listen", "127.0.0.1:21025", "the SMTP gateway's listen address", func(s *Settings, v string) { s.SMTPListen = v }),
	boolSetting("imap", "serve the IMAP gateway: mail clients read offline messages through it", func(s *Settings, b bool) { s.IMAP = b }),
	hostPortSetting("imap-listen", "127.0.0.1:21143", "the IMAP gateway's listen address", func(s *Settings, v string) { s.IMAPListen = v }),
	fileSetting("mail-tls-cert", "the mail gateways' TLS certificate (PEM): STARTTLS and TLS; needed for a listen address off loopback", func(s *Settings, v string) { s.MailTLSCert = v }),
	fileSetting("mail-tls-key", "the private key of mail-tls-cert (PEM)", func(s *Settings, v string) { s.MailTLSKey = v }),
	boolSetting("web", "serve the web console: the node in a browser (phpchat-node web url prints its login URL)", func(s *Settings, b bool) { s.Web = b }),
	hostPortSetting("web-listen", "127.0.0.1:21080", "the web console's listen address", func(s *Settings, v string) { s.WebListen = v }),
	fileSetting("web-tls-cert", "the web console's TLS certificate (PEM): HTTPS; needed for a listen address off loopback", func(s *Settings, v string) { s.WebTLSCert = v }),
	fileSetting("web-tls-key", "the private key of web-tls-cert (PEM)", func(s *Settings, v string) { s.WebTLSKey = v }),
}

// boolSetting is a switch, off by default.
func boolSetting(key, usage string, set func(*Settings, bool)) Setting {
	return Setting{Key: key, Default: "false", Usage: usage, Bool: true, apply: func(s *Settings, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		set(s, b)
		return nil
	}}
}

// hostPortSetting is a listen address, host:port.
func hostPortSetting(key, def, usage string, set func(*Settings, string)) Setting {
	return Setting{Key: key, Default: def, Usage: usage, apply: func(s *Settings, v string) error {
		if err := CheckHostPort(v); err != nil {
			return err
		}
		set(s, v)
		return nil
	}}
}

// fileSetting is the path of a file that must exist, or empty.
func fileSetting(key, usage string, set func(*Settings, string)) Setting {
	return Setting{Key: key, Usage: usage, apply: func(s *Settings, v string) error {
		if v != "" {
			if _, err := os.Stat(v); err != nil {
				return err
			}
		}
		set(s, v)
		return nil
	}}
}

// sizeSetting is a setting of bytes (see ParseSize) from lo to hi.
func sizeSetting(key, def, usage string, lo, hi uint64, set func(*Settings, uint64)) Setting {
	return Setting{Key: key, Default: def, Usage: usage, apply: func(s *Settings, v string) error {
		n, err := ParseSize(v)
		if err != nil {
			return err
		}
		if n < lo || n > hi {
			return fmt.Errorf("%s is out of range (%s to %s)", v, formatSize(lo), formatSize(hi))
		}
		set(s, n)
		return nil
	}}
}

// formatSize writes n bytes as ParseSize reads them.
func formatSize(n uint64) string {
	for _, u := range []struct {
		unit string
		size uint64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.unit)
		}
	}
	return fmt.Sprint(n)
}

// MinDiskReserve is the least disk-reserve accepted.
const MinDiskReserve = 16 << 20

// ParseSize parses a size in bytes: a whole number, optionally followed by
// B, KiB, MiB, GiB or TiB (powers of 1024) or kB, MB, GB or TB (powers
// of 1000), as "64MiB" or "500 MB".
func ParseSize(v string) (uint64, error) {
	num := strings.TrimRight(v, "kKMGTiB ")
	unit := strings.TrimSpace(v[len(num):])
	mult := map[string]uint64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
		"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit]
	n, err := strconv.ParseUint(strings.TrimSpace(num), 10, 64)
	if err != nil || mult == 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (such as 64MiB or 1GiB)", v)
	}
	return n * mult, nil
}

// peersSetting is a list setting of peers to dial.
func peersSetting(key, usage string, set func(*Settings, []string)) Setting {
	return Setting{Key: key, Usage: usage, List: true, apply: func(s *Settings, v string) error {
		var targets []string
		for _, t := range SplitList(v) {
			if err := CheckPeerTarget(t); err != nil {
				return err
			}
			targets = append(targets, t)
		}
		set(s, targets)
		return nil
	}}
}

func intSetting(key, def, usage string, lo, hi int, set func(*Settings, int)) Setting {
	return Setting{Key: key, Default: def, Usage: usage, apply: func(s *Settings, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		switch {
		case n < lo:
			return fmt.Errorf("%d is below the minimum, %d", n, lo)
		case n > hi:
			return fmt.Errorf("%d is above the maximum, %d", n, hi)
		}
		set(s, n)
		return nil
	}}
}

// durationSetting is a setting of a duration from lo to hi: a value that
// parses but leaves the node unable to work, such as 1ns, is refused.
func durationSetting(key, def, usage string, lo, hi time.Duration, set func(*Settings, time.Duration)) Setting {
	return Setting{Key: key, Default: def, Usage: usage, apply: func(s *Settings, v string) error {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil || d <= 0:
			return fmt.Errorf("%q is not a positive duration (such as 5s)", v)
		case d < lo:
			return fmt.Errorf("%s is below the minimum, %s", v, lo)
		case d > hi:
			return fmt.Errorf("%s is above the maximum, %s", v, hi)
		}
		set(s, d)
		return nil
	}}
}

// SplitList splits a list setting's value into its entries.
func SplitList(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// CheckPeerTarget checks a peer to dial: host:port, or address@host:port
// with a valid node address.
func CheckPeerTarget(t string) error {
	hostport := t
	if at := strings.LastIndexByte(t, '@'); at >= 0 {
		if at == 0 {
			return fmt.Errorf("%q: empty address before @", t)
		}
		if _, err := identity.ParseAddress(t[:at]); err != nil {
			return fmt.Errorf("%q: %w", t, err)
		}
		hostport = t[at+1:]
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || host == "" {
		return fmt.Errorf("%q is not host:port or address@host:port", t)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q of %q out of range (1-65535)", port, t)
	}
	return nil
}

// Lookup returns the setting named key.
func Lookup(key string) (Setting, bool) {
	for _, d := range Table {
		if d.Key == key {
			return d, true
		}
	}
	return Setting{}, false
}

// A Source supplies values for settings: the command line, the environment
// or a settings file. Value reports the value of key and a description of
// where it came from, for error messages.
type Source interface {
	Value(key string) (value, origin string, ok bool)
}

// Error is a setting that was refused.
type Error struct {
	Key    string
	Origin string // where the value came from, such as "flag --listen"
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("setting %s (%s): %v", e.Key, e.Origin, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Resolve builds the settings from sources, the first source that has a
// value for a key winning, and defaults for keys no source has.
func Resolve(sources ...Source) (*Settings, error) {
	s := &Settings{origins: make(map[string]string, len(Table))}
	for _, d := range Table {
		v, origin := d.Default, "default"
		for _, src := range sources {
			if val, o, ok := src.Value(d.Key); ok {
				v, origin = val, o
				break
			}
		}
		if err := d.apply(s, v); err != nil {
			return nil, &Error{Key: d.Key, Origin: origin, Err: err}
		}
		s.origins[d.Key] = origin
	}
	return s, nil
}

// Env is the Source of environment variables; lookup is os.LookupEnv or a
// stand-in for tests.
type Env func(string) (string, bool)

// Value implements Source.
func (e Env) Value(key string) (string, string, bool) {
	d, ok := Lookup(key)
	if !ok {
		return "", "", false
	}
	v, ok := e(d.Env())
	return v, "environment " + d.Env(), ok
}

// Map is a Source of fixed values, such as flags already parsed.
type Map struct {
	Values map[string]string
	Origin string // such as "flag"; the key is appended
}

// Value implements Source.
func (m Map) Value(key string) (string, string, bool) {
	v, ok := m.Values[key]
	return v, m.Origin + " " + key, ok
}

// CheckHostPort checks a host:port address with a port from 0 to 65535.
func CheckHostPort(v string) error {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %v", v, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q of %q out of range (0-65535)", port, v)
	}
	return nil
}

// CheckListen checks a listen address: host:port with a port from 0 to
// 65535 and a host that is empty, an IP address or a host name. Whether
// the address can be bound is for the node to find out.
func CheckListen(v string) error {
	if err := CheckHostPort(v); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(v)
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	// A host of digits and dots that is no IP address, such as 999.1.1.1,
	// would otherwise be looked up as a name.
	if strings.Trim(host, "0123456789.") == "" || strings.Contains(host, ":") {
		return fmt.Errorf("host %q of %q is not an IP address", host, v)
	}
	if checkDomain(host) != nil {
		return fmt.Errorf("host %q of %q is neither an IP address nor a host name", host, v)
	}
	return nil
}

// CheckNickname checks a nickname: one word of 1 to MaxNicknameLen bytes
// of UTF-8 text, without spaces or control characters (as the console's
// /nick and a peer's address-book name need). It is the one rule for every
// nickname: settings, the address book and the console.
func CheckNickname(v string) error {
	switch {
	case v == "":
		return fmt.Errorf("nickname is empty")
	case len(v) > MaxNicknameLen:
		return fmt.Errorf("nickname is %d bytes, at most %d", len(v), MaxNicknameLen)
	case !utf8.ValidString(v):
		return fmt.Errorf("nickname %q is not UTF-8 text", v)
	}
	for _, r := range v {
		switch {
		case unicode.IsSpace(r):
			return fmt.Errorf("nickname %q is not one word (it has a space)", v)
		case unicode.IsControl(r) || r == '\uFFFD':
			return fmt.Errorf("nickname %q has a control or invalid character", v)
		}
	}
	return nil
}

func checkDomain(v string) error {
	if len(v) == 0 || len(v) > 253 {
		return fmt.Errorf("%q is not a domain name", v)
	}
	for _, label := range strings.Split(v, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q is not a domain name", v)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q is not a domain name", v)
			}
		}
	}
	return nil
}

func oneOf(v string, set ...string) bool {
	for _, s := range set {
		if v == s {
			return true
		}
	}
	return false
}

package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// ErrMailboxExists is returned when a mailbox's name is taken.
var ErrMailboxExists = errors.New("mailbox exists")

// A Mailbox is a folder of the IMAP gateway.
type Mailbox struct {
	ID          uint32    `json:"id"` // never reused; keys its messages
	Name        string    `json:"name"`
	UIDValidity uint32    `json:"uid_validity"`
	UIDNext     uint32    `json:"uid_next"`
	Special     string    `json:"special,omitempty"` // special-use attribute, such as `\Sent`
	Subscribed  bool      `json:"subscribed,omitempty"`
	Created     time.Time `json:"created"`
}

// A MailboxMsg is a message of a mailbox. It either refers to a message of
// the inbox or outbox (Ref), whose content lives there, or is held by the
// mailbox itself (Ref zero), with its content under a key of its own.
type MailboxMsg struct {
	UID       uint32    `json:"uid"`
	Ref       [16]byte  `json:"ref,omitzero"`
	Flags     []string  `json:"flags,omitempty"`
	Date      time.Time `json:"date"` // the IMAP internal date
	Size      int       `json:"size"`
	MessageID string    `json:"message_id,omitempty"`
	Content   []byte    `json:"-"` // set by AddMessages' caller for a held message; nil in lists
}

// Held reports whether the mailbox holds the message's content.
func (m MailboxMsg) Held() bool { return m.Ref == [16]byte{} }

// Mailboxes holds the IMAP gateway's folders: a small record per mailbox
// (mbox/, by name) with its UID counter, a record per message (mbox-msg/,
// by mailbox id and UID, so a scan lists a mailbox in UID order) and the
// content of the messages a mailbox holds (mbox-body/). Every write is
// durable: a UID, once given to a client, is never given to another
// message of the mailbox.
type Mailboxes struct{ d *DB }

// Mailboxes returns the mailboxes.
func (d *DB) Mailboxes() *Mailboxes { return &Mailboxes{d: d} }

// Create makes the mailbox name, or returns ErrMailboxExists. Its
// UIDVALIDITY is the time of its creation in seconds, or one more than
// the last one given when that is not larger, so that a mailbox deleted
// and made again under the same name never has its old UIDVALIDITY.
func (b *Mailboxes) Create(name, special string) (Mailbox, error) {
	id, err := b.d.next(seqMbox)
	if err != nil {
		return Mailbox{}, fmt.Errorf("mailbox create %q: %w", name, err)
	}
	now := time.Now().UTC()
	m := Mailbox{ID: uint32(id), Name: name, UIDNext: 1, Special: special, Subscribed: true, Created: now}
	err = b.d.update(true, func(txn *badger.Txn) error {
		if err := absent(txn, mboxKey(name)); err != nil {
			return ErrMailboxExists
		}
		var last uint32
		if err := getValue(txn, metaKey("mbox-uidvalidity"), func(v []byte) error { return json.Unmarshal(v, &last) }); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		m.UIDValidity = max(uint32(now.Unix()), last+1)
		v, _ := json.Marshal(m.UIDValidity)
		if err := txn.Set(metaKey("mbox-uidvalidity"), v); err != nil {
			return err
		}
		return putMailbox(txn, m)
	})
	if err != nil {
		return Mailbox{}, fmt.Errorf("mailbox create %q: %w", name, err)
	}
	return m, nil
}

// Get returns the mailbox name, or ErrNotFound.
func (b *Mailboxes) Get(name string) (Mailbox, error) {
	var m Mailbox
	err := b.d.db.View(func(txn *badger.Txn) error {
		return getValue(txn, mboxKey(name), func(v []byte) error { return json.Unmarshal(v, &m) })
	})
	if err != nil {
		return Mailbox{}, fmt.Errorf("mailbox %q: %w", name, err)
	}
	return m, nil
}

// List returns every mailbox, in the order of their names.
func (b *Mailboxes) List() ([]Mailbox, error) {
	var out []Mailbox
	err := b.d.db.View(func(txn *badger.Txn) error {
		return scanPrefix(txn, []byte(prefixMbox), func(_, v []byte) error {
			var m Mailbox
			err := json.Unmarshal(v, &m)
			out = append(out, m)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("mailbox list: %w", err)
	}
	return out, nil
}

// Rename renames the mailbox old to name, keeping its messages and UIDs.
func (b *Mailboxes) Rename(old, name string) error {
	err := b.d.update(true, func(txn *badger.Txn) error {
		var m Mailbox
		if err := getValue(txn, mboxKey(old), func(v []byte) error { return json.Unmarshal(v, &m) }); err != nil {
			return err
		}
		if err := absent(txn, mboxKey(name)); err != nil {
			return ErrMailboxExists
		}
		if err := txn.Delete(mboxKey(old)); err != nil {
			return err
		}
		m.Name = name
		return putMailbox(txn, m)
	})
	if err != nil {
		return fmt.Errorf("mailbox rename %q: %w", old, err)
	}
	return nil
}

// SetSubscribed marks the mailbox name subscribed or not.
func (b *Mailboxes) SetSubscribed(name string, subscribed bool) error {
	err := b.d.update(true, func(txn *badger.Txn) error {
		var m Mailbox
		if err := getValue(txn, mboxKey(name), func(v []byte) error { return json.Unmarshal(v, &m) }); err != nil {
			return err
		}
		m.Subscribed = subscribed
		return putMailbox(txn, m)
	})
	if err != nil {
		return fmt.Errorf("mailbox subscribe %q: %w", name, err)
	}
	return nil
}

// Delete deletes the mailbox name and its messages. The mailbox is gone
// at once; its messages are deleted after it, in batches, since a large
// mailbox does not fit in one transaction (a crash in between leaves
// records that no mailbox shows).
func (b *Mailboxes) Delete(name string) error {
	var m Mailbox
	err := b.d.update(true, func(txn *badger.Txn) error {
		if err := getValue(txn, mboxKey(name), func(v []byte) error { return json.Unmarshal(v, &m) }); err != nil {
			return err
		}
		return txn.Delete(mboxKey(name))
	})
	if err == nil {
		err = b.deleteAll(m.ID)
	}
	if err != nil {
		return fmt.Errorf("mailbox delete %q: %w", name, err)
	}
	return nil
}

// deleteAll deletes every message record and content of the mailbox id.
func (b *Mailboxes) deleteAll(id uint32) error {
	for _, prefix := range []string{prefixMboxMsg, prefixMboxBody} {
		p := binary.BigEndian.AppendUint32([]byte(prefix), id)
		for {
			var keys [][]byte
			err := b.d.db.View(func(txn *badger.Txn) error {
				it := txn.NewIterator(badger.IteratorOptions{Prefix: p})
				defer it.Close()
				for it.Rewind(); it.Valid() && len(keys) < 1000; it.Next() {
					keys = append(keys, it.Item().KeyCopy(nil))
				}
				return nil
			})
			if err != nil || len(keys) == 0 {
				return err
			}
			err = b.d.update(false, func(txn *badger.Txn) error {
				for _, k := range keys {
					if err := txn.Delete(k); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// AddMessages stores msgs in the mailbox id, giving each the mailbox's next
// UID, in order, and returns them with their UIDs once on disk, with the
// mailbox as it is after. A message the mailbox holds is stored with its
// Content; a reference is stored without.
func (b *Mailboxes) AddMessages(name string, msgs []MailboxMsg) ([]MailboxMsg, Mailbox, error) {
	out := make([]MailboxMsg, len(msgs))
	var m Mailbox
	err := b.d.update(true, func(txn *badger.Txn) error {
		if err := getValue(txn, mboxKey(name), func(v []byte) error { return json.Unmarshal(v, &m) }); err != nil {
			return err
		}
		for i, msg := range msgs {
			msg.UID = m.UIDNext
			m.UIDNext++
			v, err := json.Marshal(msg)
			if err != nil {
				return err
			}
			if err := txn.Set(mboxMsgKey(prefixMboxMsg, m.ID, msg.UID), v); err != nil {
				return err
			}
			if msg.Held() {
				if err := txn.Set(mboxMsgKey(prefixMboxBody, m.ID, msg.UID), msg.Content); err != nil {
					return err
				}
			}
			msg.Content = nil
			out[i] = msg
		}
		return putMailbox(txn, m)
	})
	if err != nil {
		return nil, Mailbox{}, fmt.Errorf("mailbox %q add: %w", name, err)
	}
	return out, m, nil
}

// Messages returns the messages of the mailbox id in UID order, without
// content.
func (b *Mailboxes) Messages(id uint32) ([]MailboxMsg, error) {
	var out []MailboxMsg
	err := b.d.db.View(func(txn *badger.Txn) error {
		p := binary.BigEndian.AppendUint32([]byte(prefixMboxMsg), id)
		return scanPrefix(txn, p, func(_, v []byte) error {
			var m MailboxMsg
			err := json.Unmarshal(v, &m)
			out = append(out, m)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("mailbox %d messages: %w", id, err)
	}
	return out, nil
}

// Content returns the content of the message uid that the mailbox id
// holds, or ErrNotFound.
func (b *Mailboxes) Content(id, uid uint32) ([]byte, error) {
	var c []byte
	err := b.d.db.View(func(txn *badger.Txn) error {
		return getValue(txn, mboxMsgKey(prefixMboxBody, id, uid), func(v []byte) error { c = bytes.Clone(v); return nil })
	})
	if err != nil {
		return nil, fmt.Errorf("mailbox %d message %d: %w", id, uid, err)
	}
	return c, nil
}

// SetFlags replaces the flags of the messages of the mailbox id, by UID.
// A message that is gone is skipped.
func (b *Mailboxes) SetFlags(id uint32, flags map[uint32][]string) error {
	err := b.d.update(true, func(txn *badger.Txn) error {
		for uid, f := range flags {
			key := mboxMsgKey(prefixMboxMsg, id, uid)
			var m MailboxMsg
			err := getValue(txn, key, func(v []byte) error { return json.Unmarshal(v, &m) })
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			m.Flags = f
			v, err := json.Marshal(m)
			if err != nil {
				return err
			}
			if err := txn.Set(key, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mailbox %d flags: %w", id, err)
	}
	return nil
}

// DeleteMessages deletes the messages uids of the mailbox id, with the
// content it holds of them. UIDs that are gone are skipped.
func (b *Mailboxes) DeleteMessages(id uint32, uids []uint32) error {
	err := b.d.update(true, func(txn *badger.Txn) error {
		for _, uid := range uids {
			if err := deleteRecord(txn, mboxMsgKey(prefixMboxMsg, id, uid), mboxMsgKey(prefixMboxBody, id, uid)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mailbox %d delete messages: %w", id, err)
	}
	return nil
}

func putMailbox(txn *badger.Txn, m Mailbox) error {
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return txn.Set(mboxKey(m.Name), v)
}

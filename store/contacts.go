package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// A Contact is an entry of the address book.
type Contact struct {
	ID       uint64    `json:"id"`
	Address  string    `json:"address"` // the node address, canonical text form
	Nickname string    `json:"nickname"`
	Added    time.Time `json:"added"`
}

// Contacts is the address book. Nicknames are unique regardless of case.
type Contacts struct{ db *badger.DB }

// Errors returned by Contacts.
var (
	ErrNicknameTaken = errors.New("nickname already in the address book")
	ErrAddressTaken  = errors.New("address already in the address book")
)

const (
	contactPrefix = "contact/"
	nickPrefix    = "contact-nick/"
	addrPrefix    = "contact-addr/"
	contactSeq    = "seq/contact"
)

func contactKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(contactPrefix), id)
}

func nickKey(nick string) []byte { return []byte(nickPrefix + strings.ToLower(nick)) }
func addrKey(addr string) []byte { return []byte(addrPrefix + addr) }

// Add stores a new contact, assigning its ID and, when zero, its Added time.
func (c *Contacts) Add(ct Contact) (Contact, error) {
	if ct.Added.IsZero() {
		ct.Added = time.Now().UTC()
	}
	err := c.db.Update(func(txn *badger.Txn) error {
		for key, taken := range map[string]error{string(nickKey(ct.Nickname)): ErrNicknameTaken, string(addrKey(ct.Address)): ErrAddressTaken} {
			if _, err := txn.Get([]byte(key)); err == nil {
				return taken
			} else if !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
		}
		id, err := nextSeq(txn, contactSeq)
		if err != nil {
			return err
		}
		ct.ID = id
		b, err := json.Marshal(ct)
		if err != nil {
			return err
		}
		idb := binary.BigEndian.AppendUint64(nil, id)
		if err := txn.Set(contactKey(id), b); err != nil {
			return err
		}
		if err := txn.Set(nickKey(ct.Nickname), idb); err != nil {
			return err
		}
		return txn.Set(addrKey(ct.Address), idb)
	})
	if err != nil {
		return Contact{}, fmt.Errorf("add contact %q: %w", ct.Nickname, err)
	}
	return ct, nil
}

// Remove deletes the contact with the given ID.
func (c *Contacts) Remove(id uint64) error {
	err := c.db.Update(func(txn *badger.Txn) error {
		ct, err := getContact(txn, contactKey(id))
		if err != nil {
			return err
		}
		for _, k := range [][]byte{contactKey(id), nickKey(ct.Nickname), addrKey(ct.Address)} {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove contact %d: %w", id, err)
	}
	return nil
}

// List returns every contact in the order they were added.
func (c *Contacts) List() ([]Contact, error) {
	var out []Contact
	err := c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(contactPrefix), PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var ct Contact
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &ct) }); err != nil {
				return err
			}
			out = append(out, ct)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list contacts: %w", err)
	}
	return out, nil
}

// ByNickname returns the contact with the nickname, compared regardless
// of case, or ErrNotFound.
func (c *Contacts) ByNickname(nick string) (Contact, error) {
	return c.byIndex(nickKey(nick), "nickname "+nick)
}

// ByAddress returns the contact with the address, or ErrNotFound.
func (c *Contacts) ByAddress(addr string) (Contact, error) {
	return c.byIndex(addrKey(addr), "address "+addr)
}

func (c *Contacts) byIndex(key []byte, what string) (Contact, error) {
	var ct Contact
	err := c.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		idb, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		ct, err = getContact(txn, append([]byte(contactPrefix), idb...))
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		err = ErrNotFound
	}
	if err != nil {
		return Contact{}, fmt.Errorf("contact with %s: %w", what, err)
	}
	return ct, nil
}

func getContact(txn *badger.Txn, key []byte) (Contact, error) {
	var ct Contact
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ct, ErrNotFound
	}
	if err != nil {
		return ct, err
	}
	err = item.Value(func(b []byte) error { return json.Unmarshal(b, &ct) })
	return ct, err
}

// nextSeq returns the next value of the named counter, starting at 1, in txn.
func nextSeq(txn *badger.Txn, name string) (uint64, error) {
	var n uint64
	item, err := txn.Get([]byte(name))
	switch {
	case err == nil:
		if err := item.Value(func(b []byte) error {
			if len(b) != 8 {
				return fmt.Errorf("counter %s is corrupt", name)
			}
			n = binary.BigEndian.Uint64(b)
			return nil
		}); err != nil {
			return 0, err
		}
	case !errors.Is(err, badger.ErrKeyNotFound):
		return 0, err
	}
	n++
	return n, txn.Set([]byte(name), binary.BigEndian.AppendUint64(nil, n))
}

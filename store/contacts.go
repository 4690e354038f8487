package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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

// Contacts is the address book. Nicknames are unique regardless of case,
// addresses are unique. Every change is durable: it is on disk when the
// method returns.
type Contacts struct{ d *DB }

// Errors returned by Contacts.
var (
	ErrNicknameTaken = errors.New("nickname already in the address book")
	ErrAddressTaken  = errors.New("address already in the address book")
)

// Add stores a new contact, assigning its ID and, when zero, its Added time.
// Concurrent Adds all succeed, except that of a nickname or an address
// already in the book, which fails with ErrNicknameTaken or ErrAddressTaken.
func (c *Contacts) Add(ct Contact) (Contact, error) {
	if ct.Added.IsZero() {
		ct.Added = time.Now().UTC()
	}
	id, err := c.d.next(seqContact)
	if err != nil {
		return Contact{}, fmt.Errorf("add contact %q: %w", ct.Nickname, err)
	}
	ct.ID = id
	b, err := json.Marshal(ct)
	if err != nil {
		return Contact{}, fmt.Errorf("add contact %q: %w", ct.Nickname, err)
	}
	r := record{key: contactKey(id), value: b, indexes: []index{
		{key: contactNickKey(ct.Nickname), taken: ErrNicknameTaken},
		{key: contactAddrKey(ct.Address), taken: ErrAddressTaken},
	}}
	if err := c.d.update(true, func(txn *badger.Txn) error { return putRecord(txn, r) }); err != nil {
		return Contact{}, fmt.Errorf("add contact %q: %w", ct.Nickname, err)
	}
	return ct, nil
}

// Remove deletes the contact with the given ID.
func (c *Contacts) Remove(id uint64) error {
	err := c.d.update(true, func(txn *badger.Txn) error {
		ct, err := getContact(txn, contactKey(id))
		if err != nil {
			return err
		}
		return deleteRecord(txn, contactKey(id), contactNickKey(ct.Nickname), contactAddrKey(ct.Address))
	})
	if err != nil {
		return fmt.Errorf("remove contact %d: %w", id, err)
	}
	return nil
}

// List returns every contact in the order they were added.
func (c *Contacts) List() ([]Contact, error) {
	var out []Contact
	err := c.d.db.View(func(txn *badger.Txn) error {
		return scanPrefix(txn, []byte(prefixContact), func(_, v []byte) error {
			var ct Contact
			if err := json.Unmarshal(v, &ct); err != nil {
				return err
			}
			out = append(out, ct)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list contacts: %w", err)
	}
	return out, nil
}

// ByNickname returns the contact with the nickname, compared regardless
// of case, or ErrNotFound.
func (c *Contacts) ByNickname(nick string) (Contact, error) {
	return c.byIndex(contactNickKey(nick), "nickname "+nick)
}

// ByAddress returns the contact with the address, or ErrNotFound.
func (c *Contacts) ByAddress(addr string) (Contact, error) {
	return c.byIndex(contactAddrKey(addr), "address "+addr)
}

func (c *Contacts) byIndex(key []byte, what string) (Contact, error) {
	var ct Contact
	err := c.d.db.View(func(txn *badger.Txn) error {
		return getByIndex(txn, key, func(v []byte) error { return json.Unmarshal(v, &ct) })
	})
	if err != nil {
		return Contact{}, fmt.Errorf("contact with %s: %w", what, err)
	}
	return ct, nil
}

func getContact(txn *badger.Txn, key []byte) (Contact, error) {
	var ct Contact
	err := getValue(txn, key, func(v []byte) error { return json.Unmarshal(v, &ct) })
	return ct, err
}

// upgradeContactIndexes rewrites the contact indexes of stores written
// before the record pattern, whose values were the 8-byte contact id, to
// hold the contact's key, as every index does now.
func upgradeContactIndexes(txn *badger.Txn) error {
	type fix struct{ key, value []byte }
	var fixes []fix
	for _, p := range []string{prefixContactNick, prefixContactAddr} {
		err := scanPrefix(txn, []byte(p), func(k, v []byte) error {
			if len(v) == 8 {
				fixes = append(fixes, fix{bytes.Clone(k), append([]byte(prefixContact), v...)})
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, f := range fixes {
		if err := txn.Set(f.key, f.value); err != nil {
			return err
		}
	}
	return nil
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/phpchat/phpchat-node/config"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/control"
)

// contactsUsage is the synopsis of the contacts command.
const contactsUsage = "usage: phpchat-node contacts [list|add ADDRESS NICKNAME|remove ID] [--json]"

func contactsCommand() *cli.Command {
	jsonFlag := &cli.BoolFlag{Name: "json", Usage: "print JSON"}
	return &cli.Command{
		Name:      "contacts",
		Usage:     "list and edit the address book",
		UsageText: contactsUsage[len("usage: "):],
		Flags:     []cli.Flag{jsonFlag},
		// "contacts" alone lists.
		Action: listContacts,
		Subcommands: []*cli.Command{
			{
				Name: "list", Usage: "list the contacts",
				Flags:  []cli.Flag{jsonFlag},
				Action: listContacts,
			},
			{
				Name: "add", Usage: "add a contact", ArgsUsage: "ADDRESS NICKNAME",
				Flags:  []cli.Flag{jsonFlag},
				Action: addContact,
			},
			{
				Name: "remove", Usage: "remove a contact", ArgsUsage: "ID",
				Flags:  []cli.Flag{jsonFlag},
				Action: removeContact,
			},
		},
	}
}

// argsAndJSON returns a command's arguments and whether it should print
// JSON. urfave/cli stops parsing flags at the first argument, so a --json
// written after the arguments ("contacts add ADDRESS NICK --json") is
// taken here.
func argsAndJSON(c *cli.Context) ([]string, bool, error) {
	asJSON := c.Bool("json")
	var args []string
	for _, a := range c.Args().Slice() {
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "json" {
			args = append(args, a)
			continue
		}
		asJSON = true
		if hasValue {
			v, err := strconv.ParseBool(value)
			if err != nil {
				return nil, false, fmt.Errorf("invalid value %q for flag -json: %w", value, err)
			}
			asJSON = v
		}
	}
	return args, asJSON, nil
}

func listContacts(c *cli.Context) error {
	args, asJSON, err := argsAndJSON(c)
	if err != nil || len(args) != 0 {
		return cli.Exit(contactsUsage, exitSettings)
	}
	var list []store.Contact
	err = withContacts(c, func(ctx context.Context, b contactBook) (err error) {
		list, err = b.list(ctx)
		return err
	})
	if err != nil {
		return cli.Exit(fmt.Sprintf("contacts: %v", err), exitFailure)
	}
	if list == nil {
		list = []store.Contact{}
	}
	if asJSON {
		return json.NewEncoder(c.App.Writer).Encode(list)
	}
	printContacts(c.App.Writer, list)
	return nil
}

func addContact(c *cli.Context) error {
	args, asJSON, err := argsAndJSON(c)
	if err != nil || len(args) != 2 {
		return cli.Exit("usage: phpchat-node contacts add ADDRESS NICKNAME [--json]", exitSettings)
	}
	// The node checks them too; checked here, a mistake is a usage error.
	if _, err := identity.ParseAddress(args[0]); err != nil {
		return cli.Exit(fmt.Sprintf("contacts add: %v", err), exitSettings)
	}
	if err := config.CheckNickname(args[1]); err != nil {
		return cli.Exit(fmt.Sprintf("contacts add: %v", err), exitSettings)
	}
	var ct store.Contact
	err = withContacts(c, func(ctx context.Context, b contactBook) (err error) {
		ct, err = b.add(ctx, control.ContactAdd{Address: args[0], Nickname: args[1]})
		return err
	})
	if err != nil {
		return cli.Exit(fmt.Sprintf("contacts add: %v", err), exitFailure)
	}
	if asJSON {
		return json.NewEncoder(c.App.Writer).Encode(ct)
	}
	fmt.Fprintf(c.App.Writer, "added %d %s %s\n", ct.ID, ct.Nickname, ct.Address)
	return nil
}

const removeUsage = "usage: phpchat-node contacts remove ID [--json] (ID: a number from contacts list)"

func removeContact(c *cli.Context) error {
	args, asJSON, err := argsAndJSON(c)
	if err != nil || len(args) != 1 {
		return cli.Exit(removeUsage, exitSettings)
	}
	id, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil {
		return cli.Exit(removeUsage, exitSettings)
	}
	err = withContacts(c, func(ctx context.Context, b contactBook) error { return b.remove(ctx, id) })
	if err != nil {
		return cli.Exit(fmt.Sprintf("contacts remove: %v", err), exitFailure)
	}
	if asJSON {
		return json.NewEncoder(c.App.Writer).Encode(struct {
			Removed uint64 `json:"removed"`
		}{id})
	}
	fmt.Fprintf(c.App.Writer, "removed %d\n", id)
	return nil
}

func printContacts(w io.Writer, list []store.Contact) {
	if len(list) == 0 {
		fmt.Fprintln(w, "The address book is empty.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNICKNAME\tADDRESS\tADDED")
	for _, ct := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", ct.ID, ct.Nickname, ct.Address, ct.Added.Local().Format(time.DateTime))
	}
	tw.Flush()
}

// contactBook is the address book, on the running node or in the store.
type contactBook interface {
	list(context.Context) ([]store.Contact, error)
	add(context.Context, control.ContactAdd) (store.Contact, error)
	remove(context.Context, uint64) error
}

// withContacts runs f on the running node's address book, or, when no
// node runs, on the data directory's store (holding the node's lock, so
// that no node starts meanwhile).
func withContacts(c *cli.Context, f func(context.Context, contactBook) error) error {
	l, err := layout(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	defer cancel()
	cl, err := control.Dial(ctx, l.ControlSocket())
	if err == nil {
		defer cl.Close()
		return f(ctx, remoteBook{cl})
	}
	db, unlock, err := openStore(l)
	if err != nil {
		return err
	}
	defer unlock()
	defer db.Close()
	return f(ctx, localBook{db.Contacts()})
}

// openStore opens the store of a data directory on which no node runs.
// Only `run` makes a node: a directory without a node key, such as a
// mistyped --data-dir, is refused and left as it is.
func openStore(l config.Layout) (*store.DB, func(), error) {
	if _, err := os.Stat(l.Key()); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, errNoNode(l)
	} else if err != nil {
		return nil, nil, err
	}
	lock, err := l.Lock()
	if errors.Is(err, config.ErrLocked) {
		return nil, nil, fmt.Errorf("%w, but its control socket does not answer", err)
	}
	if err != nil {
		return nil, nil, err
	}
	db, err := store.Open(l.Store(), slog.New(slog.DiscardHandler))
	if err != nil {
		lock.Unlock()
		return nil, nil, err
	}
	return db, func() { lock.Unlock() }, nil
}

type remoteBook struct{ cl *control.Client }

func (r remoteBook) list(ctx context.Context) ([]store.Contact, error) {
	var out []store.Contact
	err := r.cl.Call(ctx, "contacts.list", nil, &out, nil)
	return out, err
}

func (r remoteBook) add(ctx context.Context, req control.ContactAdd) (store.Contact, error) {
	var out store.Contact
	err := r.cl.Call(ctx, "contacts.add", req, &out, nil)
	return out, err
}

func (r remoteBook) remove(ctx context.Context, id uint64) error {
	return r.cl.Call(ctx, "contacts.remove", control.ContactRemove{ID: id}, nil, nil)
}

type localBook struct{ b *store.Contacts }

func (l localBook) list(context.Context) ([]store.Contact, error) { return l.b.List() }

func (l localBook) add(_ context.Context, req control.ContactAdd) (store.Contact, error) {
	return control.AddContact(l.b, req)
}

func (l localBook) remove(_ context.Context, id uint64) error { return l.b.Remove(id) }

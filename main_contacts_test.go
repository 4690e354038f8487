package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/phpchat/phpchat-node/node/identity"
)

// --json may follow the arguments of every contacts command, and each
// then prints JSON.
func TestContactsJSONAfterArguments(t *testing.T) {
	dataDir := t.TempDir() // no node runs: the store is used
	if _, _, err := identity.LoadOrCreate(filepath.Join(dataDir, "node.key")); err != nil {
		t.Fatal(err) // a node's data dir: contacts makes none
	}
	run := func(args ...string) (string, error) {
		t.Helper()
		out, errOut, code := runCLI(t, append([]string{"--data-dir", dataDir, "contacts"}, args...)...)
		if code != 0 {
			return out, fmt.Errorf("exit status %d: %s", code, errOut)
		}
		return out, nil
	}
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	addr := id.Address.String()

	out, err := run("add", addr, "alice", "--json")
	var ct struct {
		ID       uint64 `json:"id"`
		Address  string `json:"address"`
		Nickname string `json:"nickname"`
	}
	if err != nil || json.Unmarshal([]byte(out), &ct) != nil || ct.ID == 0 || ct.Address != addr || ct.Nickname != "alice" {
		t.Fatalf("contacts add ADDRESS NICK --json: %v, %q", err, out)
	}
	for _, args := range [][]string{{"--json"}, {"list", "--json"}, {"list", "-json=true"}} {
		out, err := run(args...)
		var list []map[string]any
		if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0]["nickname"] != "alice" {
			t.Fatalf("contacts %s: %v, %q", strings.Join(args, " "), err, out)
		}
	}
	if out, err := run("list", "--json=false"); err != nil || !strings.Contains(out, "NICKNAME") {
		t.Fatalf("contacts list --json=false: %v, %q", err, out)
	}
	if out, err := run("list", "extra"); err == nil {
		t.Fatalf("contacts list with an argument: %q, want a usage error", out)
	}

	out, err = run("remove", strconv.FormatUint(ct.ID, 10), "--json")
	var rm struct {
		Removed uint64 `json:"removed"`
	}
	if err != nil || json.Unmarshal([]byte(out), &rm) != nil || rm.Removed != ct.ID {
		t.Fatalf("contacts remove ID --json: %v, %q", err, out)
	}
	if out, err := run("--json"); err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("contacts --json after remove: %v, %q", err, out)
	}
}

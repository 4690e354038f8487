package config

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/phpchat/phpchat-node/config/atomicfile"
	"go.yaml.in/yaml/v3"
)

// File is the Source of a settings.yml file: a YAML mapping of setting keys
// to scalar values.
type File struct {
	Path   string
	values map[string]string
	lines  map[string]int
}

// MaxFileSize is the largest settings file read.
const MaxFileSize = 1 << 20

// ReadFile reads and checks a settings file. A missing file is an empty
// one. Unknown keys, values that are not scalars and unreadable YAML are
// refused with an error naming the file, the line and the key.
func ReadFile(path string) (*File, error) {
	f := &File{Path: path, values: map[string]string{}, lines: map[string]int{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read settings: %w", err)
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("read settings %s: file is %d bytes, at most %d", path, len(b), MaxFileSize)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("read settings %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return f, nil // empty, or only comments
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("read settings %s: line %d: want a mapping of setting keys to values", path, m.Line)
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if _, ok := Lookup(k.Value); !ok {
			return nil, fmt.Errorf("read settings %s: line %d: unknown key %q", path, k.Line, k.Value)
		}
		if _, dup := f.values[k.Value]; dup {
			return nil, fmt.Errorf("read settings %s: line %d: key %q given twice", path, k.Line, k.Value)
		}
		d, _ := Lookup(k.Value)
		if d.List && v.Kind == yaml.SequenceNode {
			var items []string
			for _, it := range v.Content {
				if it.Kind != yaml.ScalarNode || strings.Contains(it.Value, ",") {
					return nil, fmt.Errorf("read settings %s: line %d: key %q wants a list of single values", path, it.Line, k.Value)
				}
				items = append(items, it.Value)
			}
			f.values[k.Value] = strings.Join(items, ",")
			f.lines[k.Value] = k.Line
			continue
		}
		if v.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("read settings %s: line %d: key %q wants a single value", path, v.Line, k.Value)
		}
		if v.Tag == "!!null" {
			continue // "key:" with no value leaves the default
		}
		f.values[k.Value] = v.Value
		f.lines[k.Value] = k.Line
	}
	return f, nil
}

// Value implements Source.
func (f *File) Value(key string) (string, string, bool) {
	v, ok := f.values[key]
	return v, fmt.Sprintf("%s line %d", f.Path, f.lines[key]), ok
}

// WriteDefaultFile writes a settings file with every setting at its default,
// each under a comment that says what it means, and a random nickname. It
// refuses to overwrite an existing file, with an error wrapping
// fs.ErrExist. The file appears whole or not at all (atomicfile.CreateFile).
func WriteDefaultFile(path string) error {
	var b bytes.Buffer
	b.WriteString("# phpchat-node settings. Each key is also a flag (--key) and an environment\n")
	b.WriteString("# variable (PHPCHAT_KEY); a flag wins over the environment, which wins over\n")
	b.WriteString("# this file. Restart the node after editing.\n")
	for _, d := range Table {
		v := d.Default
		if d.Key == "nickname" {
			v = randomNickname()
		}
		def := d.Default
		if d.List && def == "" {
			def = "none"
		}
		fmt.Fprintf(&b, "\n# %s.\n# Default %s; flag --%s; environment %s.\n", d.Usage, def, d.Key, d.Env())
		node := yaml.Node{Kind: yaml.ScalarNode, Value: v}
		if d.List {
			node = yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, e := range SplitList(v) {
				node.Content = append(node.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: e})
			}
		}
		out, err := yaml.Marshal(&node)
		if err != nil {
			return fmt.Errorf("write settings: %w", err)
		}
		fmt.Fprintf(&b, "%s: %s", d.Key, out)
	}
	if err := atomicfile.CreateFile(path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write settings: %w", err)
	}
	return nil
}

func randomNickname() string {
	var b [2]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return DefaultNickname + "_" + strings.ToLower(hex.EncodeToString(b[:]))
}

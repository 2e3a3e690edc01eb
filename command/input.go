package command

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// checkInput refuses a value read from a ConfigMap, a kong.conf or the
// environment that could change the structure of the Caddyfile it is
// written into: invalid UTF-8 and control characters (a newline ends a
// comment and starts a directive; a carriage return, form feed or NUL is
// read differently by editors, terminals and Caddy's lexer). A tab is white
// space and allowed. "{$" is refused too (see below). Everything else reaches the output as a comment
// (quoted with %q where it is a value) or as a token that a parser has
// checked first (addresses, ports, durations, header names), so braces
// and quotes in it cannot open a block.
func checkInput(where, key, value string) error {
	if !utf8.ValidString(value) {
		return fmt.Errorf("%s: %s is not valid UTF-8: refused, so that nothing in it can change the generated Caddyfile", where, key)
	}
	// Caddy replaces {$VAR} before it reads a Caddyfile's tokens, in
	// comments too: an unclosed one swallows the text up to the next "}".
	if i := strings.Index(value, "{$"); i >= 0 {
		return fmt.Errorf("%s: %s has '{$' at byte %d, which Caddy reads as an environment variable anywhere in a Caddyfile, comments included: refused, so that nothing in it can change the generated Caddyfile", where, key, i)
	}
	for i, r := range value {
		if r != '\t' && (unicode.IsControl(r) || r == '\u2028' || r == '\u2029') {
			return fmt.Errorf("%s: %s has the control character %U at byte %d: refused, so that nothing in it can change the generated Caddyfile", where, key, r, i)
		}
	}
	return nil
}

// configMap is the part of a ConfigMap manifest that matters here.
type configMap struct {
	Kind      string
	Name      string
	Namespace string
	Data      map[string]string
}

// readConfigMap reads a ConfigMap manifest through yaml.v3's node tree.
// Decoding a mapping into a Go map checks for duplicate keys pair by pair,
// which is quadratic (100,000 keys took 75 s); here one map does it in
// linear time. Every name, key and value is checked with checkInput.
func readConfigMap(manifest []byte, fileName string) (*configMap, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(manifest, &doc); err != nil {
		return nil, fmt.Errorf("%s: not a ConfigMap manifest: %v", fileName, err)
	}
	notManifest := fmt.Errorf("%s: not a ConfigMap manifest: want a YAML mapping with kind, metadata and data", fileName)
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, notManifest
	}
	root := resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		return nil, notManifest
	}
	cm := &configMap{Data: map[string]string{}}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, value := resolve(root.Content[i]), resolve(root.Content[i+1])
		switch key.Value {
		case "kind":
			if value.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("%s: kind must be a string", fileName)
			}
			cm.Kind = value.Value
		case "metadata":
			if value.Kind != yaml.MappingNode {
				return nil, fmt.Errorf("%s: metadata must be a mapping", fileName)
			}
			for j := 0; j+1 < len(value.Content); j += 2 {
				mk, mv := resolve(value.Content[j]), resolve(value.Content[j+1])
				switch mk.Value {
				case "name", "namespace":
					if mv.Kind != yaml.ScalarNode {
						return nil, fmt.Errorf("%s: metadata.%s must be a string", fileName, mk.Value)
					}
					if err := checkInput(fileName, "metadata."+mk.Value, mv.Value); err != nil {
						return nil, err
					}
					if mk.Value == "name" {
						cm.Name = mv.Value
					} else {
						cm.Namespace = mv.Value
					}
				}
			}
		case "data":
			if value.Kind == yaml.ScalarNode && value.Tag == "!!null" {
				continue
			}
			if value.Kind != yaml.MappingNode {
				return nil, fmt.Errorf("%s: data must be a mapping of strings", fileName)
			}
			for j := 0; j+1 < len(value.Content); j += 2 {
				dk, dv := resolve(value.Content[j]), resolve(value.Content[j+1])
				if dk.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("%s: data has a key that is not a string (line %d)", fileName, dk.Line)
				}
				if err := checkInput(fileName, fmt.Sprintf("data key %q", dk.Value), dk.Value); err != nil {
					return nil, err
				}
				if dv.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("%s: data.%s must be a string (line %d)", fileName, dk.Value, dv.Line)
				}
				if err := checkInput(fileName, "data."+dk.Value, dv.Value); err != nil {
					return nil, err
				}
				if _, dup := cm.Data[dk.Value]; dup {
					return nil, fmt.Errorf("%s: data.%s is given twice (line %d)", fileName, dk.Value, dk.Line)
				}
				cm.Data[dk.Value] = dv.Value
			}
		}
	}
	return cm, nil
}

// resolve follows a YAML alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

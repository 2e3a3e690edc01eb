package command

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// helmValues are a chart's values as Helm computes them for a release:
// the chart's defaults, then each -f file in order, then each --set, later
// ones overriding earlier (maps merged key by key, anything else
// replaced).
type helmValues struct {
	values map[string]any
	from   []string // the files and --set flags, for the header
}

// readHelmValues reads and merges values files and --set flags over the
// given chart defaults (a YAML document). Every key and string is checked
// with checkInput before anything reads it.
func readHelmValues(defaults string, files, sets []string) (*helmValues, error) {
	hv := &helmValues{values: map[string]any{}}
	if err := yaml.Unmarshal([]byte(defaults), &hv.values); err != nil {
		return nil, fmt.Errorf("the chart's defaults: %v", err)
	}
	for _, file := range files {
		if err := checkInput("--helm-values", "the file name", file); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		var v map[string]any
		if err := yaml.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("%s: not a Helm values file: %v", file, err)
		}
		if err := checkValues(file, "", v); err != nil {
			return nil, err
		}
		mergeValues(hv.values, v)
		hv.from = append(hv.from, file)
	}
	for _, set := range sets {
		if err := checkInput("--set", "the value", set); err != nil {
			return nil, err
		}
		if err := applySet(hv.values, set); err != nil {
			return nil, err
		}
		hv.from = append(hv.from, "--set "+set)
	}
	return hv, nil
}

// checkValues checks every key and string value of a values tree.
func checkValues(file, path string, v any) error {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			p := joinPath(path, k)
			if err := checkInput(file, fmt.Sprintf("key %q", p), k); err != nil {
				return err
			}
			if err := checkValues(file, p, e); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range v {
			if err := checkValues(file, fmt.Sprintf("%s[%d]", path, i), e); err != nil {
				return err
			}
		}
	case string:
		return checkInput(file, path, v)
	}
	return nil
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// mergeValues merges src into dst as Helm merges values files: maps key
// by key, anything else (lists included) replaced; a null removes the key.
func mergeValues(dst, src map[string]any) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeValues(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

// applySet applies one --set flag as Helm's strvals parser reads it:
// comma-separated name=value pairs, dotted names, name[N] list indexes,
// "\," and "\." escapes; true, false, null and integers are typed, as
// --set types them (--set-string is not offered).
func applySet(values map[string]any, set string) error {
	for _, pair := range splitEscaped(set, ',') {
		name, value, ok := cutEscaped(pair, '=')
		if !ok || name == "" {
			return fmt.Errorf("--set %s: want key=value (such as controller.service.externalTrafficPolicy=Local)", set)
		}
		if err := setPath(values, splitEscaped(name, '.'), typedValue(value)); err != nil {
			return fmt.Errorf("--set %s: %v", set, err)
		}
	}
	return nil
}

// splitEscaped splits s at sep, except where sep is escaped with '\'.
func splitEscaped(s string, sep byte) []string {
	var parts []string
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && (s[i+1] == sep || s[i+1] == '\\'):
			b.WriteByte(s[i+1])
			i++
		case s[i] == sep:
			parts = append(parts, b.String())
			b.Reset()
		default:
			b.WriteByte(s[i])
		}
	}
	return append(parts, b.String())
}

// cutEscaped cuts s at the first unescaped sep, keeping escapes of other
// separators for the next split.
func cutEscaped(s string, sep byte) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func typedValue(v string) any {
	switch v {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && (v == "0" || v[0] != '0') {
		return int(n)
	}
	return v
}

// setPath sets values[path...] = v, making maps and lists on the way.
func setPath(values map[string]any, path []string, v any) error {
	m := values
	for i, key := range path {
		last := i == len(path)-1
		name, index, isList, err := listIndex(key)
		if err != nil {
			return err
		}
		if !isList {
			if last {
				if v == nil {
					delete(m, name)
				} else {
					m[name] = v
				}
				return nil
			}
			next, ok := m[name].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[name] = next
			}
			m = next
			continue
		}
		list, _ := m[name].([]any)
		for len(list) <= index {
			list = append(list, nil)
		}
		m[name] = list
		if last {
			list[index] = v
			return nil
		}
		next, ok := list[index].(map[string]any)
		if !ok {
			next = map[string]any{}
			list[index] = next
		}
		m = next
	}
	return nil
}

// listIndex reads "name[N]".
func listIndex(key string) (name string, index int, isList bool, err error) {
	open := strings.IndexByte(key, '[')
	if open < 0 || !strings.HasSuffix(key, "]") {
		return key, 0, false, nil
	}
	n, err := strconv.Atoi(key[open+1 : len(key)-1])
	if err != nil || n < 0 || n > 1000 {
		return "", 0, false, fmt.Errorf("'%s': a list index is a number from 0 to 1000", key)
	}
	return key[:open], n, true, nil
}

// get returns the value at a dotted path, or nil.
func (hv *helmValues) get(path string) any {
	var v any = hv.values
	for _, key := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[key]
	}
	return v
}

// str returns the value at path as Helm's templates print it ("" for none).
func (hv *helmValues) str(path string) string {
	return scalarText(hv.get(path))
}

func scalarText(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case bool, int, int64, float64:
		return fmt.Sprint(v)
	}
	return ""
}

// boolean returns the value at path as a template's "if" reads it.
func (hv *helmValues) boolean(path string) bool {
	switch v := hv.get(path).(type) {
	case bool:
		return v
	case string:
		return v != ""
	case int:
		return v != 0
	case nil:
		return false
	}
	return true
}

// port returns the value at path as a port number.
func (hv *helmValues) port(path string) (int, error) {
	v := hv.get(path)
	var n int
	switch v := v.(type) {
	case int:
		n = v
	case float64:
		n = int(v)
	case string:
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			return 0, fmt.Errorf("%s must be a port number, got '%s'", path, v)
		}
	default:
		return 0, fmt.Errorf("%s must be a port number, got %v", path, v)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%s must be a port number from 1 to 65535, got %d", path, n)
	}
	return n, nil
}

// strings returns a list of strings at path.
func (hv *helmValues) list(path string) []string {
	l, _ := hv.get(path).([]any)
	var out []string
	for _, e := range l {
		out = append(out, scalarText(e))
	}
	return out
}

// stringMap returns a map of strings at path (annotations, a config).
func (hv *helmValues) stringMap(path string) map[string]string {
	m, _ := hv.get(path).(map[string]any)
	out := map[string]string{}
	for k, v := range m {
		out[k] = scalarText(v)
	}
	return out
}

package caddyfile_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-realip/realip/internal/configtest"
)

// exampleEnv holds the values a documented snippet's environment variables
// take in TestDocumentedSnippets. A snippet that names a variable missing
// here fails the test, so every variable the docs use has a known example.
var exampleEnv = map[string]string{
	"KONG_TRUSTED_IPS":       "10.0.0.0/8,192.168.0.0/16",
	"KONG_REAL_IP_HEADER":    "X-Forwarded-For",
	"KONG_REAL_IP_RECURSIVE": "on",
	"CLOUDFLARE_IPS":         "173.245.48.0/20,103.21.244.0/22,2400:cb00::/32",
}

// snippet is one fenced caddyfile or json block of a Markdown file.
type snippet struct {
	file     string
	line     int
	lang     string // caddyfile or json
	fragment string // "", or what the block is a part of: site, global, handler, server
	body     string
}

// snippets returns every ```caddyfile and ```json block of a Markdown file.
// A block that is not a whole config says what it is part of in its info
// string: "caddyfile fragment=site" (lines of a site block), "caddyfile
// fragment=global" (global options), "json fragment=handler" (one handler
// object), "json fragment=server" (members of a server object); "json
// fragment=log" is a log line, which must only be one JSON object.
func snippets(t *testing.T, file string) []snippet {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []snippet
	var cur *snippet
	var body []string
	for i, line := range strings.Split(string(data), "\n") {
		if cur == nil {
			info, ok := strings.CutPrefix(line, "```")
			if !ok || info == "" {
				continue
			}
			words := strings.Fields(info)
			s := snippet{file: filepath.Base(file), line: i + 1, lang: words[0]}
			for _, w := range words[1:] {
				if f, ok := strings.CutPrefix(w, "fragment="); ok {
					s.fragment = f
				} else {
					t.Errorf("%s:%d: unknown word %q in the info string", s.file, s.line, w)
				}
			}
			cur, body = &s, nil
			continue
		}
		if line == "```" {
			if cur.lang == "caddyfile" || cur.lang == "json" {
				cur.body = strings.Join(body, "\n") + "\n"
				out = append(out, *cur)
			}
			cur = nil
			continue
		}
		body = append(body, line)
	}
	if cur != nil {
		t.Errorf("%s: a fenced block opened at line %d is never closed", filepath.Base(file), cur.line)
	}
	return out
}

var envVar = regexp.MustCompile(`\{\$([A-Za-z0-9_]+)(:[^}]*)?\}`)

// wholeConfig turns a snippet into a complete Caddyfile or JSON config.
func wholeConfig(s snippet) (string, error) {
	switch s.lang + "/" + s.fragment {
	case "caddyfile/":
		return s.body, nil
	case "caddyfile/site":
		return ":8080 {\n" + indent(s.body) + "}\n", nil
	case "caddyfile/global":
		return "{\n" + indent(s.body) + "}\n\n:8080 {\n\trespond ok\n}\n", nil
	case "json/":
		return s.body, nil
	case "json/handler":
		return `{"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:8080"],"routes":[{"handle":[` + s.body + `]}]}}}}}`, nil
	case "json/server":
		return `{"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:8080"],` + s.body + `}}}}}`, nil
	}
	return "", fmt.Errorf("unknown kind of snippet %s fragment=%s", s.lang, s.fragment)
}

// publishedURL finds the list URLs of published sources in a Caddyfile.
var publishedURL = regexp.MustCompile(`((?:published|url)\s+)(https://\S+)`)

// listFile finds the list files of published sources in a Caddyfile.
var listFile = regexp.MustCompile(`(\bfile\s+)/etc/caddy/\S+`)

// localLists points published sources at a local server that serves the
// lists of testdata/ipsource (an AWS list for AWS's URL, a Google list for
// Google's, Cloudflare's text for any other), and files under /etc/caddy at
// Cloudflare's list, so the docs' examples load without the internet.
func localLists(t *testing.T, cfg string) string {
	// A list file named in the docs is Cloudflare's IPv4 list here.
	cfg = listFile.ReplaceAllString(cfg, "${1}../testdata/ipsource/cloudflare-ips-v4.txt")
	if !publishedURL.MatchString(cfg) {
		return cfg
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		file := "cloudflare-ips-v4.txt"
		switch {
		case strings.Contains(r.URL.Path, "amazonaws"):
			file = "aws-ip-ranges.json"
		case strings.Contains(r.URL.Path, "gstatic"):
			file = "google-cloud.json"
		case strings.HasSuffix(r.URL.Path, "v6"):
			file = "cloudflare-ips-v6.txt"
		}
		http.ServeFile(w, r, filepath.Join("../testdata/ipsource", file))
	}))
	t.Cleanup(srv.Close)
	return publishedURL.ReplaceAllStringFunc(cfg, func(m string) string {
		parts := publishedURL.FindStringSubmatch(m)
		return parts[1] + srv.URL + "/" + strings.TrimPrefix(parts[2], "https://")
	})
}

// indent indents every non-empty line by one tab, as caddy fmt would inside
// the block the fragment is wrapped in.
func indent(body string) string {
	lines := strings.Split(body, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = "\t" + l
		}
	}
	return strings.Join(lines, "\n")
}

// TestDocumentedSnippets adapts every Caddyfile snippet of the README,
// CONTRIBUTING.md and every docs/ page and loads it, and loads every JSON snippet, with the
// environment variables the snippet names set to example values; so the
// docs cannot show a config that does not work.
func TestDocumentedSnippets(t *testing.T) {
	var all []snippet
	pages, _ := filepath.Glob("../docs/*.md")
	for _, f := range append([]string{"../README.md", "../CONTRIBUTING.md"}, pages...) {
		all = append(all, snippets(t, f)...)
	}
	if len(all) < 12 {
		t.Fatalf("only %d snippets found", len(all))
	}
	for _, s := range all {
		t.Run(fmt.Sprintf("%s:%d", s.file, s.line), func(t *testing.T) {
			for _, m := range envVar.FindAllStringSubmatch(s.body, -1) {
				v, ok := exampleEnv[m[1]]
				if !ok {
					t.Fatalf("the snippet names {$%s}: give it an example value in exampleEnv", m[1])
				}
				t.Setenv(m[1], v)
			}
			if s.lang == "json" && s.fragment == "log" {
				// A log line, not a config: it must be one JSON object.
				var line map[string]any
				if err := json.Unmarshal([]byte(s.body), &line); err != nil || line["msg"] == nil {
					t.Errorf("not a log line: %v\n%s", err, s.body)
				}
				return
			}
			cfg, err := wholeConfig(s)
			if err != nil {
				t.Fatal(err)
			}
			cfg = localLists(t, cfg)
			js := []byte(cfg)
			if s.lang == "json" && s.fragment == "" {
				var top map[string]json.RawMessage
				if err := json.Unmarshal(js, &top); err != nil || top["apps"] == nil {
					t.Fatalf("a whole JSON config needs \"apps\" (mark a part with fragment=...): %v", err)
				}
			}
			if s.lang == "caddyfile" {
				var warnings []caddyconfig.Warning
				js, warnings, err = adapt(t, []byte(cfg))
				if err != nil {
					t.Fatalf("adapt: %v\n%s", err, cfg)
				}
				for _, w := range warnings {
					t.Errorf("adapt warning: %s; caddy fmt gives:\n%s", w, caddyfile.Format([]byte(cfg)))
				}
			}
			if err := configtest.Validate(t, js); err != nil {
				t.Errorf("load: %v\n%s", err, cfg)
			}
		})
	}
}

// TestExamples loads every runnable example and checks what the README
// promises of them: they listen on loopback only, and no two share an
// admin address (Caddy binds it with SO_REUSEPORT, so two processes on one
// admin address would split POST /load between them).
func TestExamples(t *testing.T) {
	files, _ := filepath.Glob("../examples/*Caddyfile")
	if len(files) < 2 {
		t.Fatalf("only %d examples", len(files))
	}
	admins := map[string]string{}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			body, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			js, warnings, err := adapt(t, body)
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			for _, w := range warnings {
				t.Errorf("adapt warning: %s", w)
			}
			if err := configtest.Validate(t, js); err != nil {
				t.Fatalf("load: %v", err)
			}
			var cfg struct {
				Admin struct {
					Listen string `json:"listen"`
				} `json:"admin"`
				Apps struct {
					HTTP caddyhttp.App `json:"http"`
				} `json:"apps"`
			}
			if err := json.Unmarshal(js, &cfg); err != nil {
				t.Fatal(err)
			}
			admin := cfg.Admin.Listen
			if admin == "" {
				admin = caddy.DefaultAdminListen
			}
			if other, ok := admins[admin]; ok {
				t.Errorf("admin address %s is also %s's", admin, other)
			}
			admins[admin] = filepath.Base(file)
			if host, _, _ := net.SplitHostPort(admin); host != "localhost" && !net.ParseIP(host).IsLoopback() {
				t.Errorf("admin address %s is not loopback", admin)
			}
			if len(cfg.Apps.HTTP.Servers) == 0 {
				t.Fatal("no servers")
			}
			for name, srv := range cfg.Apps.HTTP.Servers {
				for _, l := range srv.Listen {
					host, _, err := net.SplitHostPort(l)
					if err != nil || !net.ParseIP(host).IsLoopback() {
						t.Errorf("server %s listens on %s: bind the examples to loopback", name, l)
					}
				}
				if slices.Contains(srv.Listen, "") {
					t.Errorf("server %s has an empty listen address", name)
				}
			}
		})
	}
}

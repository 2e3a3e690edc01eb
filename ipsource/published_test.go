package ipsource

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/caddyserver/certmagic"

	"github.com/caddy-realip/realip/internal/configtest"
)

const awsSample = `{
  "syncToken": "1700000000", "createDate": "2026-11-30-00-00-00",
  "prefixes": [
    {"ip_prefix": "3.5.140.0/22", "region": "ap-northeast-2", "service": "AMAZON", "network_border_group": "ap-northeast-2"},
    {"ip_prefix": "13.32.0.0/15", "region": "GLOBAL", "service": "CLOUDFRONT", "network_border_group": "GLOBAL"},
    {"ip_prefix": "130.176.0.0/18", "region": "GLOBAL", "service": "CLOUDFRONT_ORIGIN_FACING", "network_border_group": "GLOBAL"},
    {"ip_prefix": "52.94.76.0/22", "region": "us-west-2", "service": "AMAZON", "network_border_group": "us-west-2"}
  ],
  "ipv6_prefixes": [
    {"ipv6_prefix": "2600:9000:3000::/36", "region": "GLOBAL", "service": "CLOUDFRONT_ORIGIN_FACING", "network_border_group": "GLOBAL"},
    {"ipv6_prefix": "2a05:d07a:a000::/40", "region": "eu-south-1", "service": "AMAZON", "network_border_group": "eu-south-1"}
  ]
}`

const googleSample = `{
  "syncToken": "1700000000", "creationTime": "2026-11-30T00:00:00",
  "prefixes": [
    {"ipv4Prefix": "34.1.208.0/20", "service": "Google Cloud", "scope": "africa-south1"},
    {"ipv6Prefix": "2600:1900:8000::/44", "service": "Google Cloud", "scope": "us-east1"},
    {"ipv4Prefix": "34.23.0.0/16", "service": "Google Cloud", "scope": "us-east1"}
  ]
}`

const googSample = `{"syncToken": "1", "prefixes": [{"ipv4Prefix": "8.8.4.0/24"}, {"ipv6Prefix": "2001:4860::/32"}]}`

const cloudflareSample = "173.245.48.0/20\n103.21.244.0/22\n\n# IPv6\n2400:cb00::/32\n198.51.100.7\n"

func strs(ps []netip.Prefix) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return strings.Join(out, " ")
}

func TestParse(t *testing.T) {
	cases := []struct {
		name, body, format string
		services, regions  []string
		want, err          string
	}{
		{"aws, all", awsSample, "", nil, nil, "3.5.140.0/22 13.32.0.0/15 130.176.0.0/18 52.94.76.0/22 2600:9000:3000::/36 2a05:d07a:a000::/40", ""},
		{"aws, CloudFront origin-facing", awsSample, "aws", []string{"cloudfront_origin_facing"}, nil, "130.176.0.0/18 2600:9000:3000::/36", ""},
		{"aws, region", awsSample, "", []string{"AMAZON"}, []string{"us-west-2", "eu-south-1"}, "52.94.76.0/22 2a05:d07a:a000::/40", ""},
		{"aws, nothing matches", awsSample, "", []string{"EC2"}, []string{"mars-1"}, "", "no range in the aws list matches"},
		{"google cloud.json, a scope", googleSample, "", nil, []string{"us-east1"}, "2600:1900:8000::/44 34.23.0.0/16", ""},
		{"goog.json", googSample, "", nil, nil, "8.8.4.0/24 2001:4860::/32", ""},
		{"cloudflare text", cloudflareSample, "", nil, nil, "173.245.48.0/20 103.21.244.0/22 2400:cb00::/32 198.51.100.7/32", ""},
		{"text with a bad line", "10.0.0.0/8\nnot-an-address\n", "", nil, nil, "", "'not-an-address' is not an address or CIDR"},
		{"empty", "\n# nothing\n", "", nil, nil, "", "the list is empty"},
		{"unknown JSON", `{"ranges": ["10.0.0.0/8"]}`, "", nil, nil, "", "unknown list format"},
		{"broken JSON", `{"prefixes": [`, "aws", nil, nil, "", "aws list"},
		{"an HTML error page", "<html>503</html>", "", nil, nil, "", "is not an address or CIDR"},
	}
	for _, c := range cases {
		got, err := Parse([]byte(c.body), c.format, c.services, c.regions)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil || strs(got) != c.want {
			t.Errorf("%s: %q %v, want %q", c.name, strs(got), err, c.want)
		}
	}
}

// listServer serves a list that the test changes, breaks and stops.
type listServer struct {
	mu     sync.Mutex
	status int
	body   string
	hits   int
	srv    *httptest.Server
}

func newListServer(t *testing.T, body string) *listServer {
	ls := &listServer{status: 200, body: body}
	ls.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ls.mu.Lock()
		defer ls.mu.Unlock()
		ls.hits++
		w.WriteHeader(ls.status)
		fmt.Fprint(w, ls.body)
	}))
	t.Cleanup(ls.srv.Close)
	return ls
}

func (ls *listServer) set(status int, body string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.status, ls.body = status, body
}

func (ls *listServer) requests() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.hits
}

func provision(t *testing.T, p *Published, storage certmagic.Storage) error {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	p.storage = storage
	return p.Provision(ctx)
}

// waitFor polls until the source serves want, for up to a few intervals.
func waitFor(t *testing.T, p *Published, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := strs(p.GetIPRanges(nil))
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the source serves %q, want %q", within, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPublishedServesChangesBreaksAndStops(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	ls := newListServer(t, "198.51.100.0/24\n")
	p := &Published{URL: ls.srv.URL, Interval: caddy.Duration(time.Second)}
	if err := provision(t, p, storage); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p, "198.51.100.0/24", 0)

	ls.set(200, "203.0.113.0/24\n2001:db8::/32\n")
	waitFor(t, p, "203.0.113.0/24 2001:db8::/32", 3*time.Second)

	// Broken downloads never replace the last good list.
	for _, broken := range []struct {
		status int
		body   string
	}{{500, "oops"}, {200, ""}, {200, "<html>maintenance</html>"}, {200, "# nothing today\n"}} {
		ls.set(broken.status, broken.body)
		before := ls.requests()
		for ls.requests() < before+2 {
			time.Sleep(50 * time.Millisecond)
		}
		waitFor(t, p, "203.0.113.0/24 2001:db8::/32", 0)
	}
	ls.srv.Close() // the server stops answering
	time.Sleep(1500 * time.Millisecond)
	waitFor(t, p, "203.0.113.0/24 2001:db8::/32", 0)

	// A new replica with the same storage starts from the stored list
	// while the server is down.
	q := &Published{URL: ls.srv.URL, Interval: caddy.Duration(time.Second)}
	if err := provision(t, q, storage); err != nil {
		t.Fatalf("with the list stored: %v", err)
	}
	waitFor(t, q, "203.0.113.0/24 2001:db8::/32", 0)

	// Neither a download nor a stored list: the config does not load.
	r := &Published{URL: ls.srv.URL + "/other", Interval: caddy.Duration(time.Second)}
	if err := provision(t, r, storage); err == nil || !strings.Contains(err.Error(), "no list is stored yet") {
		t.Errorf("nothing to trust: %v", err)
	}
}

func TestPublishedFileAndOptions(t *testing.T) {
	dir := t.TempDir()
	storage := &certmagic.FileStorage{Path: dir}
	file := dir + "/aws.json"
	if err := osWriteFile(file, awsSample); err != nil {
		t.Fatal(err)
	}
	p := &Published{File: file, Services: []string{"CLOUDFRONT_ORIGIN_FACING"}}
	if err := provision(t, p, storage); err != nil {
		t.Fatal(err)
	}
	if got := strs(p.GetIPRanges(nil)); got != "130.176.0.0/18 2600:9000:3000::/36" {
		t.Errorf("file: %q", got)
	}
	if time.Duration(p.Interval) != time.Hour {
		t.Errorf("default interval %v", time.Duration(p.Interval))
	}
	for _, bad := range []*Published{{}, {URL: "https://a", File: "b"}, {URL: "ftp://a"}, {File: file, Format: "csv"}, {File: file, Interval: caddy.Duration(time.Millisecond)}} {
		if err := provision(t, bad, storage); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
	if !slices.Equal(p.Services, []string{"CLOUDFRONT_ORIGIN_FACING"}) {
		t.Error("options changed")
	}
}

func osWriteFile(name, data string) error { return os.WriteFile(name, []byte(data), 0o644) }

// Caddy's own trusted_proxies takes the source too.
func TestPublishedAsCaddyTrustedProxies(t *testing.T) {
	cfg := `{"apps":{"http":{"servers":{"s":{
		"listen":["127.0.0.1:0"],"trusted_proxies":{"source":"published","file":"../testdata/ipsource/cloudflare-ips-v4.txt"},
		"routes":[{"handle":[{"handler":"static_response","body":"ok"}]}]}}}}}`
	if err := configtest.Validate(t, []byte(cfg)); err != nil {
		t.Fatalf("trusted_proxies with the published source: %v", err)
	}
}

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
	"sync/atomic"
	"syscall"
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
		{"text with inline comments", "10.0.0.0/8  # the VPC\n192.0.2.1\t# the balancer\n  # indented\n", "lines", nil, nil, "10.0.0.0/8 192.0.2.1/32", ""},
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

// poisoned are lists that would trust every client of a family, each
// written another way.
var poisoned = []struct{ name, body string }{
	{"0.0.0.0/0", "0.0.0.0/0\n"},
	{"::/0", "::/0\n"},
	{"two halves", "0.0.0.0/1\n128.0.0.0/1\n"},
	{"IPv4-mapped", "::ffff:0.0.0.0/96\n"},
	{"mapped half and IPv4 half", "::ffff:0.0.0.0/97\n128.0.0.0/1\n"},
	{"an IPv6 range holding IPv4", "::/64\n"},
	{"NAT64", "64:ff9b::/96\n"},
	{"IPv6 halves", "2400:cb00::/32\n::/1\n8000::/1\n"},
	{"aws with 0.0.0.0/0", `{"prefixes":[{"ip_prefix":"0.0.0.0/0","region":"GLOBAL","service":"AMAZON"}]}`},
}

// Every poisoned list is refused, at start and on refresh; the last good
// list stays and the refusal is counted.
func TestPublishedRefusesPoisonedLists(t *testing.T) {
	for _, c := range poisoned {
		body := c.body
		if _, err := Parse([]byte(body), "", nil, nil); err != nil {
			t.Fatalf("%s: the test list does not parse: %v", c.name, err)
		}
		// At start, with nothing stored: the config does not load.
		ls := newListServer(t, body)
		p := &Published{URL: ls.srv.URL, Interval: caddy.Duration(time.Second)}
		err := provision(t, p, &certmagic.FileStorage{Path: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), "refused: the list covers every") {
			t.Errorf("%s at start: %v", c.name, err)
		}
		// On refresh: the last good list stays.
		ls.set(200, "192.0.2.0/24\n")
		q := &Published{URL: ls.srv.URL, Interval: caddy.Duration(time.Second)}
		if err := provision(t, q, &certmagic.FileStorage{Path: t.TempDir()}); err != nil {
			t.Fatal(err)
		}
		ls.set(200, body)
		before := ls.requests()
		for ls.requests() < before+2 {
			time.Sleep(50 * time.Millisecond)
		}
		waitFor(t, q, "192.0.2.0/24", 0)
	}
}

func TestPublishedMaxRanges(t *testing.T) {
	var b strings.Builder
	for i := range 300 {
		fmt.Fprintf(&b, "10.%d.%d.0/24\n", i/256, i%256)
	}
	ls := newListServer(t, b.String())
	p := &Published{URL: ls.srv.URL, MaxRanges: 299}
	err := provision(t, p, &certmagic.FileStorage{Path: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "the list has 300 ranges, more than max_ranges 299") {
		t.Errorf("300 ranges, max 299: %v", err)
	}
	p = &Published{URL: ls.srv.URL, MaxRanges: 300}
	if err := provision(t, p, &certmagic.FileStorage{Path: t.TempDir()}); err != nil {
		t.Errorf("300 ranges, max 300: %v", err)
	}
	if p := (&Published{URL: ls.srv.URL}); provision(t, p, &certmagic.FileStorage{Path: t.TempDir()}) != nil || p.MaxRanges != 100_000 {
		t.Errorf("default max_ranges %d", p.MaxRanges)
	}
}

// A stored copy is checked like a download: a poisoned one is never used.
func TestPublishedRefusesPoisonedStoredList(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	ls := newListServer(t, "192.0.2.0/24\n")
	p := &Published{URL: ls.srv.URL}
	if err := provision(t, p, storage); err != nil {
		t.Fatal(err)
	}
	keys, err := storage.List(context.Background(), "real_ip/published", false)
	if err != nil || len(keys) != 1 {
		t.Fatalf("stored: %v %v", keys, err)
	}
	if err := storage.Store(context.Background(), keys[0], []byte(`{"source":"x","fetched":"2026-01-01T00:00:00Z","ranges":["0.0.0.0/1","128.0.0.0/1"]}`)); err != nil {
		t.Fatal(err)
	}
	ls.srv.Close()
	q := &Published{URL: ls.srv.URL}
	err = provision(t, q, storage)
	if err == nil || !strings.Contains(err.Error(), "refused: the list covers every IPv4 address") {
		t.Errorf("poisoned stored list, server down: %v", err)
	}
}

// A redirect to another host or scheme is refused; one on the same host is
// followed.
func TestPublishedRedirects(t *testing.T) {
	other := newListServer(t, "0.0.0.0/0\n") // what a hijacked redirect would serve
	var target string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/same":
			http.Redirect(w, r, "/list", http.StatusFound)
		case "/list":
			fmt.Fprint(w, "192.0.2.0/24\n")
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		default:
			http.Redirect(w, r, target, http.StatusFound)
		}
	}))
	t.Cleanup(srv.Close)
	p := &Published{URL: srv.URL + "/same"}
	if err := provision(t, p, &certmagic.FileStorage{Path: t.TempDir()}); err != nil {
		t.Fatalf("same-host redirect: %v", err)
	}
	waitFor(t, p, "192.0.2.0/24", 0)
	tlsSrv := httptest.NewTLSServer(srv.Config.Handler)
	t.Cleanup(tlsSrv.Close)
	for _, c := range []struct{ from, to, want string }{
		{srv.URL + "/away", other.srv.URL + "/list", "a list may redirect only to the same scheme and host"},
		{srv.URL + "/away", strings.Replace(other.srv.URL, "127.0.0.1", "localhost", 1), "a list may redirect only to the same scheme and host"},
		{tlsSrv.URL + "/away", srv.URL + "/list", "a list may redirect only to the same scheme and host"},
		{srv.URL + "/loop", "", "stopped after 10 redirects"},
	} {
		target = c.to
		q := &Published{URL: c.from, transport: tlsSrv.Client().Transport}
		if err := provision(t, q, &certmagic.FileStorage{Path: t.TempDir()}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s → %s: %v", c.from, c.to, err)
		}
	}
	if other.requests() != 0 {
		t.Errorf("the other host was asked %d times", other.requests())
	}
}

// A server that never answers holds a load for the timeout only, and a
// stored list means no wait at all.
func TestPublishedTimeoutAndBackgroundDownload(t *testing.T) {
	release := make(chan struct{})
	var hang atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		fmt.Fprint(w, "192.0.2.0/24\n")
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	p := &Published{URL: srv.URL + "/a", Timeout: caddy.Duration(300 * time.Millisecond)}
	if err := provision(t, p, storage); err != nil {
		t.Fatal(err)
	}
	hang.Store(true)

	// Stored: the load does not wait on the hanging server.
	start := time.Now()
	q := &Published{URL: srv.URL + "/a", Timeout: caddy.Duration(time.Minute)}
	if err := provision(t, q, storage); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited > 20*time.Second {
		t.Errorf("with a stored list, the load waited %v", waited)
	}
	waitFor(t, q, "192.0.2.0/24", 0)

	// Not stored: the load gives up after the timeout, and says so.
	start = time.Now()
	r := &Published{URL: srv.URL + "/b", Timeout: caddy.Duration(300 * time.Millisecond)}
	err := provision(t, r, storage)
	if err == nil || !strings.Contains(err.Error(), "no list within the timeout of 300ms") || !strings.Contains(err.Error(), "no list is stored yet") {
		t.Errorf("hanging server, nothing stored: %v", err)
	}
	if waited := time.Since(start); waited > 20*time.Second {
		t.Errorf("the load waited %v for a 300ms timeout", waited)
	}
}

// A file source reads regular files only, up to the size cap.
func TestPublishedFileMustBeRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := dir + "/fifo"
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := dir + "/big"
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(maxListSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, c := range []struct{ file, want string }{
		{fifo, "is not a regular file"},
		{"/dev/zero", "is not a regular file"},
		{dir, "is not a regular file"},
		{big, "is larger than 67108864 bytes"},
		{dir + "/missing", "no such file"},
	} {
		done := make(chan error, 1)
		go func() { done <- provision(t, &Published{File: c.file}, &certmagic.FileStorage{Path: t.TempDir()}) }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: %v, want %q", c.file, err, c.want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: the load hangs", c.file)
		}
	}
}

func TestSourceLabelHasNoQuery(t *testing.T) {
	p := &Published{URL: "https://user:secret@lists.example.com/v1/ranges.txt?key=s3cret#x"}
	if got := p.label(); got != "published:lists.example.com/v1/ranges.txt" {
		t.Errorf("label %q", got)
	}
	if got := p.where(); strings.Contains(got, "s3cret") || strings.Contains(got, "secret@") {
		t.Errorf("where %q", got)
	}
	if got := (&Published{File: "/etc/caddy/cf.txt"}).label(); got != "published:/etc/caddy/cf.txt" {
		t.Errorf("file label %q", got)
	}
}

package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// randomRanges returns n random prefixes (three quarters IPv4 of lengths
// 8-32, a quarter IPv6 of lengths 16-64), none of which holds any of the
// addresses in avoid.
func randomRanges(n int, seed uint64, avoid ...netip.Addr) []netip.Prefix {
	r := rand.New(rand.NewPCG(seed, seed))
	out := make([]netip.Prefix, 0, n)
	for len(out) < n {
		var p netip.Prefix
		if r.IntN(4) > 0 {
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}), 8+r.IntN(25)).Masked()
		} else {
			var b [16]byte
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			p = netip.PrefixFrom(netip.AddrFrom16(b), 16+r.IntN(49)).Masked()
		}
		if slices.ContainsFunc(avoid, p.Contains) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// wrkRate runs wrk against addr for d with a request carrying the header
// and returns requests per second.
func wrkRate(b *testing.B, addr, header string, d time.Duration) float64 {
	script := filepath.Join(b.TempDir(), "req.lua")
	lua := fmt.Sprintf("wrk.headers[%q] = %q\n", strings.SplitN(header, ": ", 2)[0], strings.SplitN(header, ": ", 2)[1])
	if err := os.WriteFile(script, []byte(lua), 0o644); err != nil {
		b.Fatal(err)
	}
	out, err := exec.Command("wrk", "-t1", "-c16", fmt.Sprintf("-d%ds", int(d.Seconds())), "-s", script, "http://"+addr+"/").CombinedOutput()
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		b.Fatalf("wrk output: %s", out)
	}
	if regexp.MustCompile(`Non-2xx or 3xx responses`).Match(out) {
		b.Fatalf("wrk saw errors: %s", out)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// BenchmarkLoadLists measures, with wrk against the built binary, requests
// per second with a 5-entry X-Forwarded-For from a trusted peer through:
// no client-IP handling; Caddy's trusted_proxies (+ client_ip_headers,
// trusted_proxies_strict) and the real_ip handler with 3 ranges; both with
// 100,000 random ranges more (mixed families and lengths); and real_ip
// with an AWS-sized list (9,000 ranges) through the published source.
// Rounds interleave the variants; the medians are reported as requests per
// second and as ratios to no client-IP handling.
//
//	go test ./e2e -run '^$' -bench LoadLists -benchtime 1x
func BenchmarkLoadLists(b *testing.B) {
	if _, err := exec.LookPath("wrk"); err != nil {
		b.Fatal("wrk is needed: apt-get install -y wrk")
	}
	c := startCaddy(b)
	ports := freePorts(b, 6)
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	avoid := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("203.0.113.7")}
	base := []string{"127.0.0.1/32", "10.0.0.0/8", "172.16.0.0/12"}
	big := slices.Clone(base)
	for _, p := range randomRanges(100000, 1, avoid...) {
		big = append(big, p.String())
	}
	// An AWS-sized ip-ranges.json.
	var aws struct {
		Prefixes     []map[string]string `json:"prefixes"`
		IPv6Prefixes []map[string]string `json:"ipv6_prefixes"`
	}
	for i, p := range randomRanges(9000, 2, avoid...) {
		entry := map[string]string{"region": []string{"us-east-1", "eu-west-1", "GLOBAL"}[i%3], "service": []string{"AMAZON", "EC2", "CLOUDFRONT_ORIGIN_FACING"}[i%3]}
		if p.Addr().Is4() {
			entry["ip_prefix"] = p.String()
			aws.Prefixes = append(aws.Prefixes, entry)
		} else {
			entry["ipv6_prefix"] = p.String()
			aws.IPv6Prefixes = append(aws.IPv6Prefixes, entry)
		}
	}
	awsFile := filepath.Join(b.TempDir(), "ip-ranges.json")
	data, _ := json.Marshal(aws)
	if err := os.WriteFile(awsFile, data, 0o644); err != nil {
		b.Fatal(err)
	}
	list := func(ranges []string) string { js, _ := json.Marshal(ranges); return string(js) }
	respond := `{"handler":"static_response","body":"{http.vars.client_ip}"}`
	builtin := func(ranges []string) string {
		return fmt.Sprintf(`"trusted_proxies":{"source":"static","ranges":%s},"client_ip_headers":["X-Forwarded-For"],"trusted_proxies_strict":1,"routes":[{"handle":[%s]}]`, list(ranges), respond)
	}
	realIP := func(ranges []string, sources string) string {
		return fmt.Sprintf(`"routes":[{"handle":[{"handler":"real_ip","trusted_ips":%s%s,"real_ip_header":"X-Forwarded-For","real_ip_recursive":true},%s]}]`, list(ranges), sources, respond)
	}
	c.loadJSON(fmt.Sprintf(`{"http":{"servers":{
		"none":{"listen":[%q],"routes":[{"handle":[%s]}]},
		"builtin":{"listen":[%q],%s},
		"real_ip":{"listen":[%q],%s},
		"builtin_100k":{"listen":[%q],%s},
		"real_ip_100k":{"listen":[%q],%s},
		"real_ip_aws":{"listen":[%q],%s}}}}`,
		addr(0), respond, addr(1), builtin(base), addr(2), realIP(base, ""),
		addr(3), builtin(big), addr(4), realIP(big, ""),
		addr(5), realIP(base, fmt.Sprintf(`,"trusted_ips_sources":[{"source":"published","file":%q}]`, awsFile))))
	names := []string{"none", "caddy_trusted_proxies", "real_ip", "caddy_trusted_proxies_100k", "real_ip_100k", "real_ip_published_aws_9k"}
	header := "X-Forwarded-For: 203.0.113.7, 198.51.100.1, 10.1.1.1, 172.16.5.5, 10.2.2.2"
	for i := range names {
		want := "198.51.100.1"
		if i == 0 {
			want = "127.0.0.1"
		}
		if body, _ := getFrom(b, "127.0.0.1", addr(i), []string{header}); body != want {
			b.Fatalf("%s answers %q, want %q", names[i], body, want)
		}
	}
	const rounds = 5
	rates := make([][]float64, len(names))
	for r := 0; r < rounds; r++ {
		for k := range names {
			i := (k + r) % len(names) // a different order each round
			rates[i] = append(rates[i], wrkRate(b, addr(i), header, 3*time.Second))
		}
	}
	median := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	none := median(rates[0])
	for i, name := range names {
		m := median(rates[i])
		b.Logf("%-28s %8.0f req/s (median of %d), %.3f of no client-IP handling", name, m, rounds, m/none)
		b.ReportMetric(m, name+"-req/s")
		b.ReportMetric(m/none, name+"-ratio")
	}
}

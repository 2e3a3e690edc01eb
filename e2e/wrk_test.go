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
	"runtime"
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

// wrkRun is what one wrk run measured.
type wrkRun struct {
	rate       float64 // requests per second
	cpuPerReq  float64 // Caddy's CPU time per request, in µs
	requests   float64
	cpuSeconds float64
}

// What runWrk reads in wrk's output.
var (
	wrkRate   = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkCount  = regexp.MustCompile(`(\d+) requests in`)
	wrkErrors = regexp.MustCompile(`Non-2xx or 3xx responses`)
)

// runWrk runs wrk against addr for d with a request carrying the header
// (none when empty). pin, when not empty, is the command that puts wrk on
// its own CPU; pid is Caddy's, whose CPU time the run's requests are
// charged with.
func runWrk(b *testing.B, pin []string, pid int, addr, header string, d time.Duration) wrkRun {
	script := filepath.Join(b.TempDir(), "req.lua")
	lua := ""
	if name, value, ok := strings.Cut(header, ": "); ok {
		lua = fmt.Sprintf("wrk.headers[%q] = %q\n", name, value)
	}
	if err := os.WriteFile(script, []byte(lua), 0o644); err != nil {
		b.Fatal(err)
	}
	args := append(slices.Clone(pin), "wrk", "-t1", "-c16", fmt.Sprintf("-d%ds", int(d.Seconds())), "-s", script, "http://"+addr+"/")
	cpuBefore := cpuTime(b, pid)
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	cpu := cpuTime(b, pid) - cpuBefore
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	rate := wrkRate.FindSubmatch(out)
	count := wrkCount.FindSubmatch(out)
	if rate == nil || count == nil {
		b.Fatalf("wrk output: %s", out)
	}
	if wrkErrors.Match(out) {
		b.Fatalf("wrk saw errors: %s", out)
	}
	var run wrkRun
	run.rate, _ = strconv.ParseFloat(string(rate[1]), 64)
	run.requests, _ = strconv.ParseFloat(string(count[1]), 64)
	run.cpuSeconds = cpu.Seconds()
	run.cpuPerReq = cpu.Seconds() * 1e6 / run.requests
	return run
}

// cpuTime is the time all of a process's threads have spent on a CPU, from
// the scheduler's own count (/proc/<pid>/task/*/schedstat, in ns): time
// the machine's hypervisor gave to others is not in it, so a variant's
// cost per request is steadier than its requests per second.
func cpuTime(b *testing.B, pid int) time.Duration {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		b.Fatalf("no schedstat for pid %d: %v", pid, err)
	}
	var total time.Duration
	for _, f := range tasks {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // a thread that ended
		}
		ns, _ := strconv.ParseInt(strings.Fields(string(data))[0], 10, 64)
		total += time.Duration(ns)
	}
	return total
}

// cpuPins returns the commands that put Caddy and wrk on CPUs of their
// own, so that the two do not take turns on one core and each variant's
// rate is the rate of one busy Caddy core; empty on a one-CPU machine or
// without taskset.
func cpuPins() (caddy, wrk []string) {
	if runtime.NumCPU() < 2 {
		return nil, nil
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return nil, nil
	}
	return []string{"taskset", "-c", "1"}, []string{"taskset", "-c", "0"}
}

// BenchmarkLoadLists measures, with wrk against the built binary, requests
// per second through: no client-IP handling; a handler that does nothing
// (Caddy's vars with no vars: what any handler costs); Caddy's
// trusted_proxies (+ client_ip_headers, trusted_proxies_strict) and the
// real_ip handler with 3 ranges; both with 100,000 random ranges more
// (mixed families and lengths); and real_ip with an AWS-sized list (9,000
// ranges) through the published source. Requests come from a trusted peer
// with a 5-entry X-Forwarded-For, then with a 1-entry one, answered by a
// do-nothing respond; then, with the 5-entry one, passed by reverse_proxy
// to a server in the same process that answers at once. Caddy and wrk
// each have a CPU (taskset); rounds interleave the variants; the medians
// are reported as requests per second and as ratios to no client-IP
// handling and to Caddy's trusted_proxies.
//
//	go test ./e2e -run '^$' -bench LoadLists -benchtime 1x -v
func BenchmarkLoadLists(b *testing.B) {
	if _, err := exec.LookPath("wrk"); err != nil {
		b.Fatal("wrk is needed: apt-get install -y wrk")
	}
	caddyPin, wrkPin := cpuPins()
	if caddyPin == nil {
		b.Log("one CPU or no taskset: Caddy and wrk share the CPUs, and the figures are noisier")
	}
	c := startCaddyWith(b, caddyPin...)
	ports := freePorts(b, 8)
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
	// load serves every variant with a terminal handler: a do-nothing
	// respond, or a reverse_proxy to a server that answers at once.
	load := func(terminal string) {
		builtin := func(ranges []string) string {
			return fmt.Sprintf(`"trusted_proxies":{"source":"static","ranges":%s},"client_ip_headers":["X-Forwarded-For"],"trusted_proxies_strict":1,"routes":[{"handle":[%s]}]`, list(ranges), terminal)
		}
		realIP := func(ranges []string, sources string) string {
			return fmt.Sprintf(`"routes":[{"handle":[{"handler":"real_ip","trusted_ips":%s%s,"real_ip_header":"X-Forwarded-For","real_ip_recursive":true},%s]}]`, list(ranges), sources, terminal)
		}
		c.loadJSON(fmt.Sprintf(`{"http":{"servers":{
			"none":{"listen":[%q],"routes":[{"handle":[%s]}]},
			"builtin":{"listen":[%q],%s},
			"real_ip":{"listen":[%q],%s},
			"builtin_100k":{"listen":[%q],%s},
			"real_ip_100k":{"listen":[%q],%s},
			"real_ip_aws":{"listen":[%q],%s},
			"noop":{"listen":[%q],"routes":[{"handle":[{"handler":"vars"},%s]}]},
			"upstream":{"listen":[%q],"routes":[{"handle":[{"handler":"static_response","body":"{http.request.header.X-Forwarded-For}"}]}]}}}}`,
			addr(0), terminal, addr(1), builtin(base), addr(2), realIP(base, ""),
			addr(3), builtin(big), addr(4), realIP(big, ""),
			addr(5), realIP(base, fmt.Sprintf(`,"trusted_ips_sources":[{"source":"published","file":%q}]`, awsFile)),
			addr(6), terminal, addr(7)))
	}
	names := []string{"none", "caddy_trusted_proxies", "real_ip", "caddy_trusted_proxies_100k", "real_ip_100k", "real_ip_published_aws_9k", "do_nothing_handler"}
	const builtinIndex = 1
	respond := `{"handler":"static_response","body":"{http.vars.client_ip}"}`
	proxy := fmt.Sprintf(`{"handler":"reverse_proxy","upstreams":[{"dial":%q}]}`, addr(7))
	const xff5 = "X-Forwarded-For: 203.0.113.7, 198.51.100.1, 10.1.1.1, 172.16.5.5, 10.2.2.2"
	// respondAnswer is what respond answers: the peer without client-IP
	// handling, else the client.
	respondAnswer := func(client string) func(variant string) string {
		return func(v string) string {
			if v == "none" || v == "do_nothing_handler" {
				return "127.0.0.1"
			}
			return client
		}
	}
	for _, scenario := range []struct {
		name, terminal, header string
		answer                 func(variant string) string // what the variant answers
	}{
		{"respond, 5-entry X-Forwarded-For", respond, xff5, respondAnswer("198.51.100.1")},
		{"respond, 1-entry X-Forwarded-For", respond, "X-Forwarded-For: 203.0.113.7", respondAnswer("203.0.113.7")},
		// Behind reverse_proxy the upstream sees X-Forwarded-For: Caddy
		// replaces an untrusted peer's and appends the request's
		// RemoteAddr to a trusted one's; only real_ip changes RemoteAddr.
		{"reverse_proxy, 5-entry X-Forwarded-For", proxy, xff5, func(v string) string {
			switch v {
			case "none", "do_nothing_handler":
				return "127.0.0.1"
			case "caddy_trusted_proxies", "caddy_trusted_proxies_100k":
				return strings.TrimPrefix(xff5, "X-Forwarded-For: ") + ", 127.0.0.1"
			}
			return strings.TrimPrefix(xff5, "X-Forwarded-For: ") + ", 198.51.100.1"
		}},
	} {
		load(scenario.terminal)
		for i := range names {
			if body, _ := getFrom(b, "127.0.0.1", addr(i), []string{scenario.header}); body != scenario.answer(names[i]) {
				b.Fatalf("%s: %s answers %q, want %q", scenario.name, names[i], body, scenario.answer(names[i]))
			}
		}
		const rounds = 7
		runs := make([][]wrkRun, len(names))
		for r := 0; r < rounds; r++ {
			for k := range names {
				i := (k + r) % len(names) // a different order each round
				runs[i] = append(runs[i], runWrk(b, wrkPin, c.cmd.Process.Pid, addr(i), scenario.header, 3*time.Second))
			}
		}
		median := func(runs []wrkRun, f func(wrkRun) float64) float64 {
			v := make([]float64, len(runs))
			for i, r := range runs {
				v[i] = f(r)
			}
			slices.Sort(v)
			return v[len(v)/2]
		}
		rate := func(r wrkRun) float64 { return r.rate }
		cpu := func(r wrkRun) float64 { return r.cpuPerReq }
		none, builtin := median(runs[0], rate), median(runs[builtinIndex], rate)
		noneCPU, builtinCPU := median(runs[0], cpu), median(runs[builtinIndex], cpu)
		for i, name := range names {
			m, mc := median(runs[i], rate), median(runs[i], cpu)
			b.Logf("%s: %-28s %8.0f req/s, %.3f of none, %.3f of Caddy's; CPU %6.2f µs/req, %.3f of none's requests per CPU second, %.3f of Caddy's (medians of %d)",
				scenario.name, name, m, m/none, m/builtin, mc, noneCPU/mc, builtinCPU/mc, rounds)
			key := strings.NewReplacer(", ", "-", " ", "_").Replace(scenario.name) + "-" + name
			b.ReportMetric(noneCPU/mc, key+"-cpu-ratio")
			b.ReportMetric(m/none, key+"-ratio")
		}
	}
}

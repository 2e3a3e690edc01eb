package e2e

import (
	"crypto/tls"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"
)

// The cluster data paths of Kong's "preserve the client IP" guide, rebuilt
// on one machine with documentation addresses:
//
//	client 203.0.113.7 ── 203.0.113.1  lb  198.51.100.1 ── 198.51.100.2  node  192.0.2.1 ── 192.0.2.10  pod
//	                       HAProxy (the balancers)          nftables (kube-proxy)             Caddy + echo upstream
//
// The Service's external address is 198.51.100.10 (routed by lb to the
// node, DNATed there to the pod); the node's NodePort is 198.51.100.2:30080.
const (
	topoClient    = "203.0.113.7"
	topoLBPublic  = "203.0.113.1"
	topoLBInside  = "198.51.100.1"
	topoNode      = "198.51.100.2"
	topoNodePods  = "192.0.2.1"
	topoPod       = "192.0.2.10"
	topoServiceIP = "198.51.100.10"
	topoForged    = "192.0.2.66" // what a forging client claims to be
)

// kubeProxyRules is what kube-proxy programs on a node for a LoadBalancer
// Service (port 80 → pod:8100) and a NodePort (30080 → pod:8080, the NLB's
// instance targets, which always reach the pod through a node).
// externalTrafficPolicy: Cluster masquerades the Service's traffic, Local
// does not.
const kubeProxyRules = `
table ip kubeproxy {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr {{.ServiceIP}} tcp dport 80 dnat to {{.Pod}}:8100
		ip daddr {{.Node}} tcp dport 30080 dnat to {{.Pod}}:8080
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip daddr {{.Pod}} tcp dport 8080 ct status dnat masquerade
		{{if .Cluster}}ip daddr {{.Pod}} tcp dport 8100 ct status dnat masquerade{{end}}
	}
}
`

// haproxyConfig is every balancer of the scenarios in one HAProxy.
const haproxyConfig = `
global
	stats socket {{.Dir}}/haproxy.sock mode 600 level admin
defaults
	timeout connect 5s
	timeout client 30s
	timeout server 30s
	default-server inter 300ms fall 2 rise 1

# AWS NLB with proxy protocol v2, IP targets, with a unique ID TLV.
frontend nlb_v2
	mode tcp
	bind {{.LBPublic}}:80
	unique-id-format %[uuid()]
	default_backend pod_v2
backend pod_v2
	mode tcp
	option httpchk
	http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host health.check
	server pod {{.Pod}}:8080 send-proxy-v2 proxy-v2-options unique-id check check-send-proxy

# A balancer sending proxy protocol v1.
frontend nlb_v1
	mode tcp
	bind {{.LBPublic}}:81
	default_backend pod_v1
backend pod_v1
	mode tcp
	option httpchk
	http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host health.check
	server pod {{.Pod}}:8080 send-proxy check check-send-proxy

# NLB instance targets: through the node's NodePort, masqueraded there.
frontend nlb_instance
	mode tcp
	bind {{.LBPublic}}:82
	default_backend node_port
backend node_port
	mode tcp
	option httpchk
	http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host health.check
	server node {{.Node}}:30080 send-proxy-v2 check check-send-proxy

# NLB in front of HTTPS: PROXY v2, then the TLS handshake, to the pod.
frontend nlb_tls
	mode tcp
	bind {{.LBPublic}}:443
	default_backend pod_tls
backend pod_tls
	mode tcp
	server pod {{.Pod}}:8443 send-proxy-v2 check check-send-proxy

# An L7 balancer (ALB, GKE Ingress): X-Forwarded-For.
frontend alb
	mode http
	bind {{.LBPublic}}:8080
	option forwardfor
	default_backend pod_xff
backend pod_xff
	mode http
	option httpchk
	http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host health.check
	server pod {{.Pod}}:8081 check

# Two tiers: an L7 balancer in front of an L4 PROXY balancer.
frontend edge
	mode http
	bind {{.LBPublic}}:8090
	option forwardfor
	default_backend tier_l4
backend tier_l4
	mode http
	server l4 {{.LBInside}}:8091 source {{.LBPublic}}
frontend l4
	mode tcp
	bind {{.LBInside}}:8091
	bind {{.LBPublic}}:8092
	default_backend pod_tier
backend pod_tier
	mode tcp
	server pod {{.Pod}}:8082 send-proxy-v2
`

// caddyTopologyConfig is the pod's Caddyfile: each server answers through
// the echo upstream (which reports what reached it), logs each request and
// marks the response when the client_ip matcher sees the real client.
const caddyTopologyConfig = `{
	admin off
	local_certs
	skip_install_trust
	storage file_system {{.Dir}}/caddy-data
	servers :8080 {
		listener_wrappers {
			real_ip 198.51.100.0/24 192.0.2.1 # the VPC (IP targets) and the node (instance targets)
		}
	}
	servers :8443 {
		listener_wrappers {
			real_ip 198.51.100.0/24
			tls
		}
		protocols h1 h2
	}
	servers :8082 {
		listener_wrappers {
			real_ip 198.51.100.0/24
		}
	}
}

(observe) {
	log
	@real_client client_ip {{.Client}}
	header @real_client X-Client-Matched yes
	header X-Caddy-Client {client_ip}
}

# L4 balancers with the PROXY protocol.
http://:8080 {
	real_ip 198.51.100.0/24 192.0.2.1 {
		real_ip_header proxy_protocol
	}
	import observe
	respond /healthz 200
	reverse_proxy 127.0.0.1:9000 {
		header_up X-PP-Unique-Id {http.real_ip.proxy_protocol.unique_id}
	}
}

https://app.example:8443 {
	tls internal
	real_ip 198.51.100.0/24 {
		real_ip_header proxy_protocol
	}
	import observe
	reverse_proxy 127.0.0.1:9000
}

# An L7 balancer: X-Forwarded-For, and Kong's upstream headers as the
# README shows them.
http://:8081 {
	real_ip 198.51.100.0/24 {
		real_ip_header X-Forwarded-For
		real_ip_recursive on
	}
	import observe
	respond /healthz 200
{{.KongBlock}}
}

# Two tiers: X-Forwarded-For believed from the L7 tier, which is the PROXY
# source the L4 tier reports.
http://:8082 {
	real_ip {{.LBPublic}} {
		real_ip_header X-Forwarded-For
		real_ip_recursive on
	}
	import observe
	reverse_proxy 127.0.0.1:9000
}

# The Service's target port behind an L4 passthrough balancer
# (externalTrafficPolicy Local or Cluster): nothing to configure.
http://:8100 {
	import observe
	reverse_proxy 127.0.0.1:9000
}

# Kubelet probes: no balancer, no PROXY header, no wrapper.
http://:8085 {
	respond /healthz 200
}
`

type topology struct {
	t                      *testing.T
	lab                    *netnsLab
	dir                    string
	client, lb, node, pod  string
	caddyLogs              *lockedBuffer
	ServiceIP, Node, Pod   string
	LBPublic, LBInside     string
	Client, Dir, KongBlock string
	Cluster                bool
}

func render(t *testing.T, text string, data any) string {
	t.Helper()
	var b strings.Builder
	if err := template.Must(template.New("").Parse(text)).Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// setExternalTrafficPolicy programs the node's nftables as kube-proxy does
// for the policy.
func (tp *topology) setExternalTrafficPolicy(cluster bool) {
	tp.t.Helper()
	tp.Cluster = cluster
	file := filepath.Join(tp.dir, "kube-proxy.nft")
	rules := "flush ruleset\n" + render(tp.t, kubeProxyRules, tp)
	if err := os.WriteFile(file, []byte(rules), 0o644); err != nil {
		tp.t.Fatal(err)
	}
	tp.lab.in(tp.node, "nft", "-f", file)
}

func newTopology(t *testing.T) *topology {
	requireNetns(t)
	lab := newNetnsLab(t)
	tp := &topology{t: t, lab: lab, dir: t.TempDir(),
		ServiceIP: topoServiceIP, Node: topoNode, Pod: topoPod, LBPublic: topoLBPublic, LBInside: topoLBInside, Client: topoClient}
	tp.Dir = tp.dir
	// The README's block, indented into the site.
	for _, line := range strings.Split(strings.TrimRight(readmeBlock(t, "# Kong's upstream headers"), "\n"), "\n") {
		tp.KongBlock += "\t" + strings.ReplaceAll(line, "app:8080", "127.0.0.1:9000") + "\n"
	}

	tp.client = lab.ns("client", false)
	tp.lb = lab.ns("lb", true)
	tp.node = lab.ns("node", true)
	tp.pod = lab.ns("pod", false)
	lab.link(tp.client, topoClient+"/24", tp.lb, topoLBPublic+"/24")
	lab.link(tp.lb, topoLBInside+"/24", tp.node, topoNode+"/24")
	lab.link(tp.node, topoNodePods+"/24", tp.pod, topoPod+"/24")
	lab.in(tp.client, "ip", "route", "add", "default", "via", topoLBPublic)
	lab.in(tp.lb, "ip", "route", "add", "192.0.2.0/24", "via", topoNode)
	lab.in(tp.lb, "ip", "route", "add", topoServiceIP+"/32", "via", topoNode)
	lab.in(tp.node, "ip", "route", "add", "default", "via", topoLBInside)
	lab.in(tp.pod, "ip", "route", "add", "default", "via", topoNodePods)
	tp.setExternalTrafficPolicy(true)

	// The echo upstream, in the pod beside Caddy: it answers with the
	// request headers it received, as JSON.
	var echo net.Listener
	if err := inNetns(tp.pod, func() error {
		var err error
		echo, err = net.Listen("tcp", "127.0.0.1:9000")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(r.Header)
	})}
	go func() { _ = srv.Serve(echo) }()
	t.Cleanup(func() { _ = srv.Close() })

	// Caddy in the pod.
	caddyfile := filepath.Join(tp.dir, "Caddyfile")
	if err := os.WriteFile(caddyfile, []byte(render(t, caddyTopologyConfig, tp)), 0o644); err != nil {
		t.Fatal(err)
	}
	tp.caddyLogs = lab.start(tp.pod, []string{"HOME=" + tp.dir, "XDG_DATA_HOME=" + tp.dir, "XDG_CONFIG_HOME=" + tp.dir},
		caddyBin, "run", "--config", caddyfile, "--adapter", "caddyfile")
	// Ready when the kubelet's probe gets its answer.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		conn, err := dialIn(tp.node, topoPod+":8085")
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy did not come up in the pod: %v\n%s", err, tp.caddyLogs.String())
		}
	}

	// The balancers.
	haproxyCfg := filepath.Join(tp.dir, "haproxy.cfg")
	if err := os.WriteFile(haproxyCfg, []byte(render(t, haproxyConfig, tp)), 0o644); err != nil {
		t.Fatal(err)
	}
	lab.start(tp.lb, nil, "haproxy", "-db", "-f", haproxyCfg)
	return tp
}

// request sends a raw HTTP request (after prefix, which may hold PROXY
// headers) from the client namespace to addr, with a unique X-Test-Id so
// that the access log line can be found.
func (tp *topology) request(addr, id, prefix string, headers ...string) reply {
	tp.t.Helper()
	var b strings.Builder
	b.WriteString(prefix)
	fmt.Fprintf(&b, "GET /%s HTTP/1.1\r\nHost: shop.example\r\nX-Test-Id: %s\r\nConnection: close\r\n", id, id)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return sendRaw(tp.t, tp.client, addr, b.String())
}

// loggedClient returns the client_ip of the access log line of request id.
// It waits up to wait for the line to be written.
func (tp *topology) loggedClient(id string, wait time.Duration) (string, bool) {
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, line := range strings.Split(tp.caddyLogs.String(), "\n") {
			var entry struct {
				Logger  string `json:"logger"`
				Request struct {
					ClientIP string              `json:"client_ip"`
					Headers  map[string][]string `json:"headers"`
				} `json:"request"`
			}
			if json.Unmarshal([]byte(line), &entry) != nil || !strings.HasPrefix(entry.Logger, "http.log.access") {
				continue
			}
			if ids := entry.Request.Headers["X-Test-Id"]; len(ids) == 1 && ids[0] == id {
				return entry.Request.ClientIP, true
			}
		}
	}
	return "", false
}

// expectClient asserts what Caddy decided for request id: the client the
// access log shows, whether the client_ip matcher saw the real client, and
// the last X-Forwarded-For entry reverse_proxy sent the echo upstream.
func (tp *topology) expectClient(id string, r reply, want string) map[string][]string {
	tp.t.Helper()
	if r.closed || r.status != 200 {
		tp.t.Errorf("%s: %+v", id, r)
		return nil
	}
	if got := r.header.Get("X-Caddy-Client"); got != want {
		tp.t.Errorf("%s: {client_ip} %q, want %q", id, got, want)
	}
	if matched := r.header.Get("X-Client-Matched") == "yes"; matched != (want == topoClient) {
		tp.t.Errorf("%s: client_ip matcher for %s matched=%v, want %v", id, topoClient, matched, want == topoClient)
	}
	logged, ok := tp.loggedClient(id, 5*time.Second)
	if !ok || logged != want {
		tp.t.Errorf("%s: access log client_ip %q (found %v), want %q", id, logged, ok, want)
	}
	var upstream map[string][]string
	if err := json.Unmarshal([]byte(r.body), &upstream); err != nil {
		tp.t.Errorf("%s: upstream answer %q: %v", id, r.body, err)
		return nil
	}
	xff := http.Header(upstream).Values("X-Forwarded-For")
	if len(xff) == 0 {
		tp.t.Errorf("%s: no X-Forwarded-For upstream", id)
		return upstream
	}
	tp.t.Logf("%s: Caddy saw %s (logged %s); upstream X-Forwarded-For %q, X-Real-IP %q", id, r.header.Get("X-Caddy-Client"), logged, xff, http.Header(upstream).Get("X-Real-Ip"))
	entries := strings.Split(xff[len(xff)-1], ",")
	if last := strings.TrimSpace(entries[len(entries)-1]); last != want && http.Header(upstream).Get("X-Real-Ip") != want {
		tp.t.Errorf("%s: upstream X-Forwarded-For %q does not end with %s", id, xff, want)
	}
	return upstream
}

// expectRefused asserts that a request carrying a forgery got no answer
// from the upstream and was not logged with the forged address.
func (tp *topology) expectRefused(id string, r reply) {
	tp.t.Helper()
	if !r.closed && r.status == 200 {
		tp.t.Errorf("%s: a forged request was served: %+v", id, r)
	}
	tp.t.Logf("%s: refused (closed %v, status %d)", id, r.closed, r.status)
	if logged, ok := tp.loggedClient(id, time.Second); ok && logged == topoForged {
		tp.t.Errorf("%s: logged with the forged address", id)
	}
}

// haproxyServerStates returns "backend/server" → status from HAProxy's
// stats socket.
func (tp *topology) haproxyServerStates() map[string]string {
	tp.t.Helper()
	conn, err := net.Dial("unix", filepath.Join(tp.dir, "haproxy.sock"))
	if err != nil {
		tp.t.Fatalf("haproxy stats socket: %v", err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "show stat\n")
	data, _ := io.ReadAll(conn)
	rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(data), "# "))).ReadAll()
	if err != nil || len(rows) < 2 {
		tp.t.Fatalf("haproxy stats: %v %q", err, data)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	states := map[string]string{}
	for _, row := range rows[1:] {
		if len(row) > col["status"] && row[col["svname"]] != "FRONTEND" && row[col["svname"]] != "BACKEND" {
			states[row[col["pxname"]]+"/"+row[col["svname"]]] = row[col["status"]]
		}
	}
	return states
}

// TestTopologyKubernetes runs every path of Kong's guide over the rebuilt
// data path. Each scenario asserts the client Caddy logs, matches and
// forwards upstream.
func TestTopologyKubernetes(t *testing.T) {
	tp := newTopology(t)
	service := topoServiceIP + ":80"
	nlbV2, nlbV1, nlbInstance := topoLBPublic+":80", topoLBPublic+":81", topoLBPublic+":82"
	alb, edge, tierDirect := topoLBPublic+":8080", topoLBPublic+":8090", topoLBPublic+":8092"
	forgedPP := fmt.Sprintf("PROXY TCP4 %s 203.0.113.1 1234 80\r\n", topoForged)
	forgedXFF := "X-Forwarded-For: " + topoForged

	t.Run("externalTrafficPolicy Cluster hides the client", func(t *testing.T) {
		tp.t = t
		tp.setExternalTrafficPolicy(true)
		tp.expectClient("etp-cluster", tp.request(service, "etp-cluster", ""), topoNodePods)
	})
	t.Run("externalTrafficPolicy Local keeps it", func(t *testing.T) {
		tp.t = t
		tp.setExternalTrafficPolicy(false)
		tp.expectClient("etp-local", tp.request(service, "etp-local", ""), topoClient)
		tp.expectClient("etp-local-forged-xff", tp.request(service, "etp-local-forged-xff", "", forgedXFF), topoClient)
		tp.expectRefused("etp-local-forged-pp", tp.request(service, "etp-local-forged-pp", forgedPP))
	})
	t.Run("PROXY v2 (NLB, IP targets)", func(t *testing.T) {
		tp.t = t
		up := tp.expectClient("nlb-v2", tp.request(nlbV2, "nlb-v2", ""), topoClient)
		if id := http.Header(up).Get("X-Pp-Unique-Id"); len(id) < 32 {
			t.Errorf("unique_id TLV from HAProxy: %q", id)
		}
		tp.expectClient("nlb-v2-forged-xff", tp.request(nlbV2, "nlb-v2-forged-xff", "", forgedXFF), topoClient)
		tp.expectRefused("nlb-v2-forged-pp", tp.request(nlbV2, "nlb-v2-forged-pp", forgedPP))
	})
	t.Run("PROXY v1", func(t *testing.T) {
		tp.t = t
		tp.expectClient("nlb-v1", tp.request(nlbV1, "nlb-v1", ""), topoClient)
		tp.expectRefused("nlb-v1-forged-pp", tp.request(nlbV1, "nlb-v1-forged-pp", forgedPP))
	})
	t.Run("PROXY v2 through the node's masquerade (NLB instance targets)", func(t *testing.T) {
		tp.t = t
		tp.expectClient("nlb-instance", tp.request(nlbInstance, "nlb-instance", ""), topoClient)
	})
	t.Run("PROXY v2 then TLS", func(t *testing.T) {
		tp.t = t
		for _, h2 := range []bool{false, true} {
			tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "app.example"}, ForceAttemptHTTP2: h2}
			if !h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			client := httpClientIn(tp.client, topoLBPublic+":443", tr)
			id := fmt.Sprintf("nlb-tls-h2-%v", h2)
			resp, body := getWhileIssuing(t, client, newGet("https://app.example/"+id, "X-Test-Id: "+id))
			tr.CloseIdleConnections()
			if wantProto := map[bool]int{false: 1, true: 2}[h2]; resp.ProtoMajor != wantProto {
				t.Errorf("%s: %s", id, resp.Proto)
			}
			tp.expectClient(id, reply{status: resp.StatusCode, header: resp.Header, body: string(body)}, topoClient)
		}
	})
	t.Run("L7 X-Forwarded-For, recursive on, Kong's upstream headers", func(t *testing.T) {
		tp.t = t
		up := http.Header(tp.expectClient("alb", tp.request(alb, "alb", ""), topoClient))
		want := map[string]string{"X-Real-Ip": topoClient, "X-Forwarded-For": topoClient + ", " + topoLBInside,
			"X-Forwarded-Proto": "http", "X-Forwarded-Host": "shop.example", "X-Forwarded-Port": "8081", "X-Forwarded-Path": "/alb"}
		for k, v := range want {
			if up.Get(k) != v {
				t.Errorf("Kong's %s upstream: %q, want %q", k, up.Get(k), v)
			}
		}
		up = http.Header(tp.expectClient("alb-forged-xff", tp.request(alb, "alb-forged-xff", "", forgedXFF), topoClient))
		if got, want := up.Get("X-Forwarded-For"), topoForged+", "+topoClient+", "+topoLBInside; got != want {
			t.Errorf("Kong's X-Forwarded-For keeps what the client wrote (as the README warns): %q, want %q", got, want)
		}
		tp.expectRefused("alb-forged-pp", tp.request(alb, "alb-forged-pp", forgedPP))
	})
	t.Run("two tiers: L7 in front of L4 PROXY", func(t *testing.T) {
		tp.t = t
		tp.expectClient("tiers", tp.request(edge, "tiers", ""), topoClient)
		tp.expectClient("tiers-forged-xff", tp.request(edge, "tiers-forged-xff", "", forgedXFF), topoClient)
		tp.expectRefused("tiers-forged-pp", tp.request(edge, "tiers-forged-pp", forgedPP))
		tp.expectRefused("tiers-bypass-forged-pp", tp.request(tierDirect, "tiers-bypass-forged-pp", forgedPP))
		// Around the L7 tier, straight to the L4 one: the PROXY source is
		// the client itself, not trusted, so its X-Forwarded-For is not
		// believed (nginx would believe it: it judges the L4 balancer).
		tp.expectClient("tiers-bypass-forged-xff", tp.request(tierDirect, "tiers-bypass-forged-xff", "", forgedXFF), topoClient)
	})
	t.Run("health checks and probes", func(t *testing.T) {
		tp.t = t
		want := []string{"pod_v2/pod", "pod_v1/pod", "node_port/node", "pod_tls/pod", "pod_xff/pod"}
		var states map[string]string
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			states = tp.haproxyServerStates()
			up := 0
			for _, s := range want {
				if states[s] == "UP" {
					up++
				}
			}
			if up == len(want) {
				break
			}
		}
		for _, s := range want {
			if states[s] != "UP" {
				t.Errorf("HAProxy health check (check-send-proxy) of %s: %q", s, states[s])
			}
		}
		// The kubelet probes from the node, without a header.
		if r := sendRaw(t, tp.node, topoPod+":8085", "GET /healthz HTTP/1.1\r\nHost: "+topoPod+"\r\nConnection: close\r\n\r\n"); r.status != 200 {
			t.Errorf("kubelet probe: %+v", r)
		}
	})
}

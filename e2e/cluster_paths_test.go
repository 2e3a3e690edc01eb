package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"
)

// clusterPodConfig is the pods' Caddyfile for the seed's paths: each server
// answers through the echo upstream (which reports what reached it), logs
// each request and marks the response when the client_ip matcher sees the
// real client. Ports: 8080 PROXY (NLB IP and instance targets), 8443 PROXY
// then TLS, 8081 X-Forwarded-For (L7), 8082 the two-tier path, 8100 a
// passthrough balancer's target, 8085 the kubelet's probes.
const clusterPodConfig = `{
	admin off
	local_certs
	skip_install_trust
	servers :8080 {
		listener_wrappers {
			real_ip {{.VPC}} # the VPC: the NLB's addresses (IP targets) and the nodes' (instance targets)
		}
	}
	servers :8443 {
		listener_wrappers {
			real_ip {{.VPC}}
			tls
		}
		protocols h1 h2
	}
	servers :8082 {
		listener_wrappers {
			real_ip {{.VPC}}
		}
	}
}

(observe) {
	log
	@real_client client_ip {{.Client}}
	header @real_client X-Client-Matched yes
	header X-Caddy-Client {client_ip}
	header X-Caddy-Pod {env.POD_NAME}
}

http://:8080 {
	real_ip {{.VPC}} {
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
	real_ip {{.VPC}} {
		real_ip_header proxy_protocol
	}
	import observe
	reverse_proxy 127.0.0.1:9000
}

http://:8081 {
	real_ip {{.VPC}} {
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
	real_ip {{.CloudPublic}} {
		real_ip_header X-Forwarded-For
		real_ip_recursive on
	}
	import observe
	reverse_proxy 127.0.0.1:9000
}

# A passthrough balancer's target (externalTrafficPolicy Local or
# Cluster): nothing to configure.
http://:8100 {
	import observe
	reverse_proxy 127.0.0.1:9000
}

# Kubelet probes: no balancer, no PROXY header, no wrapper.
http://:8085 {
	respond /healthz 200
}
`

// clusterHAProxyConfig is the cloud's HAProxy: the NLB-like PROXY senders
// (IP targets straight to the pod, instance targets to both nodes' node
// ports) and the L7 balancers.
const clusterHAProxyConfig = `
global
	stats socket {{.Dir}}/haproxy.sock mode 600 level admin
defaults
	timeout connect 3s
	timeout client 30s
	timeout server 30s
	default-server inter 300ms fall 2 rise 1

frontend nlb_v2
	mode tcp
	bind {{.CloudPublic}}:80
	unique-id-format %[uuid()]
	default_backend pod_v2
backend pod_v2
	mode tcp
	option httpchk
	http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host health.check
	server pod {{.PodA}}:8080 send-proxy-v2 proxy-v2-options unique-id check check-send-proxy

frontend nlb_v1
	mode tcp
	bind {{.CloudPublic}}:81
	default_backend pod_v1
backend pod_v1
	mode tcp
	server pod {{.PodA}}:8080 send-proxy check check-send-proxy

frontend nlb_instance
	mode tcp
	bind {{.CloudPublic}}:82
	default_backend node_ports
backend node_ports
	mode tcp
	balance roundrobin
	option httpchk
	http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host health.check
{{range .Nodes}}	server {{.Name}} {{.IP}}:30080 send-proxy-v2 check check-send-proxy
{{end}}
frontend nlb_tls
	mode tcp
	bind {{.CloudPublic}}:443
	default_backend pod_tls
backend pod_tls
	mode tcp
	server pod {{.PodA}}:8443 send-proxy-v2 check check-send-proxy

frontend nlb_instance_tls
	mode tcp
	bind {{.CloudPublic}}:444
	default_backend node_ports_tls
backend node_ports_tls
	mode tcp
{{range .Nodes}}	server {{.Name}} {{.IP}}:30443 send-proxy-v2
{{end}}
frontend alb
	mode http
	bind {{.CloudPublic}}:8080
	option forwardfor
	default_backend pod_xff
backend pod_xff
	mode http
	option httpchk
	http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host health.check
	server pod {{.PodA}}:8081 check

frontend edge
	mode http
	bind {{.CloudPublic}}:8090
	option forwardfor
	default_backend tier_l4
backend tier_l4
	mode http
	server l4 {{.Cloud}}:8091 source {{.CloudPublic}}
frontend l4
	mode tcp
	bind {{.Cloud}}:8091
	bind {{.CloudPublic}}:8092
	default_backend pod_tier
backend pod_tier
	mode tcp
	server pod {{.PodA}}:8082 send-proxy-v2
`

type nodeView struct{ Name, IP string }

// clusterTemplateData fills the two templates.
func (c *cluster) templateData(kongBlock string) map[string]any {
	var nodes []nodeView
	for _, n := range c.nodes {
		nodes = append(nodes, nodeView{n.name, n.ip})
	}
	return map[string]any{"VPC": clVPC, "Client": clClient, "CloudPublic": clCloudPub, "Cloud": clCloud,
		"PodA": c.pods[0].ip, "Nodes": nodes, "Dir": c.dir, "KongBlock": kongBlock}
}

func render(t *testing.T, text string, data any) string {
	t.Helper()
	var b strings.Builder
	if err := template.Must(template.New("").Parse(text)).Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// request sends a raw HTTP request (after prefix, which may hold PROXY
// headers) from the client to addr, with a unique X-Test-Id so that the
// access log line can be found.
func (c *cluster) request(addr, id, prefix string, headers ...string) reply {
	c.t.Helper()
	return sendRaw(c.t, c.client, addr, rawGet(id, prefix, headers...))
}

func rawGet(id, prefix string, headers ...string) string {
	var b strings.Builder
	b.WriteString(prefix)
	fmt.Fprintf(&b, "GET /%s HTTP/1.1\r\nHost: shop.example\r\nX-Test-Id: %s\r\nConnection: close\r\n", id, id)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// tryRequest is request that reports a failure instead of failing the
// test: for the moments a balancer is changing its mind.
func (c *cluster) tryRequest(addr, id string, timeout time.Duration) (reply, error) {
	conn, err := dialIn(c.client, addr)
	if err != nil {
		return reply{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(conn, rawGet(id, "")); err != nil {
		return reply{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return reply{}, err
	}
	body, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(body)}, nil
}

// loggedClient returns the client_ip of the access log line of request
// id in any pod, waiting up to wait for it.
func (c *cluster) loggedClient(id string, wait time.Duration) (string, bool) {
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, p := range c.pods {
			if p.caddy == nil {
				continue
			}
			for _, line := range strings.Split(p.caddy.String(), "\n") {
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
	}
	return "", false
}

// expectClient asserts what Caddy decided for request id: the client the
// response and the access log show, whether the client_ip matcher saw the
// real client, and what reverse_proxy sent the echo upstream.
func (c *cluster) expectClient(id string, r reply, want ...string) http.Header {
	c.t.Helper()
	if r.closed || r.status != 200 {
		c.t.Errorf("%s: %+v", id, r)
		return nil
	}
	got := r.header.Get("X-Caddy-Client")
	if !slices.Contains(want, got) {
		c.t.Errorf("%s: {client_ip} %q, want one of %q", id, got, want)
	}
	if matched := r.header.Get("X-Client-Matched") == "yes"; matched != (got == clClient) {
		c.t.Errorf("%s: client_ip matcher for %s matched=%v with client %s", id, clClient, matched, got)
	}
	logged, ok := c.loggedClient(id, 5*time.Second)
	if !ok || logged != got {
		c.t.Errorf("%s: access log client_ip %q (found %v), want %q", id, logged, ok, got)
	}
	var upstream map[string][]string
	if err := json.Unmarshal([]byte(r.body), &upstream); err != nil {
		c.t.Errorf("%s: upstream answer %q: %v", id, r.body, err)
		return nil
	}
	up := http.Header(upstream)
	xff := up.Values("X-Forwarded-For")
	if len(xff) == 0 {
		c.t.Errorf("%s: no X-Forwarded-For upstream", id)
		return up
	}
	c.t.Logf("%s: %s saw %s (logged %s); upstream X-Forwarded-For %q, X-Real-IP %q", id, r.header.Get("X-Caddy-Pod"), got, logged, xff, up.Get("X-Real-Ip"))
	entries := strings.Split(xff[len(xff)-1], ",")
	if last := strings.TrimSpace(entries[len(entries)-1]); last != got && up.Get("X-Real-Ip") != got {
		c.t.Errorf("%s: upstream X-Forwarded-For %q does not end with %s", id, xff, got)
	}
	return up
}

// expectRefused asserts that a request carrying a forgery got no answer
// from the upstream and was not logged with the forged address.
func (c *cluster) expectRefused(id string, r reply) {
	c.t.Helper()
	if !r.closed && r.status == 200 {
		c.t.Errorf("%s: a forged request was served: %+v", id, r)
	}
	if logged, ok := c.loggedClient(id, time.Second); ok && logged == clForged {
		c.t.Errorf("%s: logged with the forged address", id)
	}
}

// haproxyServerStates returns "backend/server" → status from HAProxy's
// stats socket.
func (c *cluster) haproxyServerStates() map[string]string {
	c.t.Helper()
	conn, err := net.Dial("unix", filepath.Join(c.dir, "haproxy.sock"))
	if err != nil {
		c.t.Fatalf("haproxy stats socket: %v", err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "show stat\n")
	data, _ := io.ReadAll(conn)
	rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(data), "# "))).ReadAll()
	if err != nil || len(rows) < 2 {
		c.t.Fatalf("haproxy stats: %v %q", err, data)
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

// TestCluster runs the seed's paths on the test cluster, once with
// kube-proxy in nftables mode and once in iptables mode.
func TestCluster(t *testing.T) {
	for _, mode := range []string{"nftables", "iptables"} {
		t.Run(mode, func(t *testing.T) { testClusterPaths(t, mode) })
	}
}

func testClusterPaths(t *testing.T, mode string) {
	c := newCluster(t, mode)
	var kongBlock string
	for _, line := range strings.Split(strings.TrimRight(readmeBlock(t, "# Kong's upstream headers"), "\n"), "\n") {
		kongBlock += "\t" + strings.ReplaceAll(line, "app:8080", "127.0.0.1:9000") + "\n"
	}
	data := c.templateData(kongBlock)
	for _, p := range c.pods {
		c.startEcho(p)
		c.startPodCaddy(p, render(t, clusterPodConfig, data), 8085)
	}
	podA, podB := c.pods[0], c.pods[1]

	// What the test plays of the control plane: the Services, and the
	// EndpointSlices the EndpointSlice controller would write for a
	// Deployment whose one pod runs on node1.
	local := c.createService("web-local", "LoadBalancer", "Local", clLocalVIP, []servicePort{{Name: "http", Port: 80, TargetPort: 8100}})
	c.createService("web-cluster", "LoadBalancer", "Cluster", clClusterIP, []servicePort{{Name: "http", Port: 80, TargetPort: 8100}})
	c.createService("web-instance", "NodePort", "Cluster", "", []servicePort{
		{Name: "proxy", Port: 80, TargetPort: 8080, NodePort: 30080}, {Name: "proxy-tls", Port: 443, TargetPort: 8443, NodePort: 30443}})
	c.setEndpoints("default", "web-local", map[string]int{"http": 8100}, podEndpoint{podA, true})
	c.setEndpoints("default", "web-cluster", map[string]int{"http": 8100}, podEndpoint{podA, true})
	c.setEndpoints("default", "web-instance", map[string]int{"proxy": 8080, "proxy-tls": 8443}, podEndpoint{podA, true})
	hcPortField, ok := local["spec"].(map[string]any)["healthCheckNodePort"].(float64)
	if !ok {
		t.Fatalf("web-local has no healthCheckNodePort (Kubernetes allocates one only with externalTrafficPolicy: Local): %v", local["spec"])
	}
	hcPort := int(hcPortField)

	forgedPP := fmt.Sprintf("PROXY TCP4 %s %s 1234 80\r\n", clForged, clCloudPub)
	forgedXFF := "X-Forwarded-For: " + clForged
	nlbV2, nlbV1, nlbInstance := clCloudPub+":80", clCloudPub+":81", clCloudPub+":82"
	alb, edge, tierDirect := clCloudPub+":8080", clCloudPub+":8090", clCloudPub+":8092"
	node1, node2 := c.nodes[0], c.nodes[1]

	// The cloud: HAProxy, and the passthrough balancer polling the
	// health-check node port every second.
	haproxyCfg := filepath.Join(c.dir, "haproxy.cfg")
	if err := os.WriteFile(haproxyCfg, []byte(render(t, clusterHAProxyConfig, data)), 0o644); err != nil {
		t.Fatal(err)
	}
	c.lab.start(c.cloud, nil, "haproxy", "-db", "-f", haproxyCfg)
	const interval = time.Second
	c.passthrough(clLocalVIP, hcPort, "/", interval)
	// Ready when HAProxy listens and kube-proxy on both nodes has taken the
	// Services: the node ports answer, and so does the Cluster balancer
	// address through each node.
	for _, addr := range []string{nlbV2, alb, edge} {
		c.waitConnect(c.client, addr)
	}
	for _, n := range c.nodes {
		c.waitConnect(c.cloud, n.ip+":30080")
		c.route(clClusterIP, []string{n.ip})
		c.waitConnect(c.client, clClusterIP+":80")
	}

	t.Run("externalTrafficPolicy Local", func(t *testing.T) {
		c.use(t)
		// kube-proxy's health server: 200 where a local endpoint is, 503
		// elsewhere (how a cloud balancer picks nodes).
		// kube-proxy takes the EndpointSlice a moment after it is written.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if status, _ := c.httpGet(c.cloud, fmt.Sprintf("%s:%d", node1.ip, hcPort), "/"); status == 200 {
				break
			}
		}
		for _, n := range c.nodes {
			status, body := c.httpGet(c.cloud, fmt.Sprintf("%s:%d", n.ip, hcPort), "/")
			wantStatus, wantCount := 200, `"localEndpoints": 1`
			if n == node2 {
				wantStatus, wantCount = 503, `"localEndpoints": 0`
			}
			if status != wantStatus || !strings.Contains(body, wantCount) {
				t.Errorf("health-check node port %d on %s: %d %s, want %d with %s", hcPort, n.name, status, body, wantStatus, wantCount)
			}
		}
		waitHealthy(t, c, clLocalVIP, []string{node1.ip}, 10*interval)
		addr := clLocalVIP + ":80"
		for i := range 6 {
			id := fmt.Sprintf("etp-local-%d", i)
			r := c.request(addr, id, "")
			c.expectClient(id, r, clClient)
			if pod := r.header.Get("X-Caddy-Pod"); pod != podA.name {
				t.Errorf("%s: served by %s", id, pod)
			}
		}
		c.expectClient("etp-local-forged-xff", c.request(addr, "etp-local-forged-xff", "", forgedXFF), clClient)
		c.expectRefused("etp-local-forged-pp", c.request(addr, "etp-local-forged-pp", forgedPP))

		// The pod moves to node2: kube-proxy's health answers follow, the
		// balancer follows them, and no request is misjudged meanwhile.
		moved := time.Now()
		c.setEndpoints("default", "web-local", map[string]int{"http": 8100}, podEndpoint{podB, true})
		var firstOnB time.Duration
		served, failed := 0, 0
		for i := 0; time.Since(moved) < 20*interval; i++ {
			id := fmt.Sprintf("etp-move-%d", i)
			r, err := c.tryRequest(addr, id, interval/2)
			if err != nil {
				failed++
				time.Sleep(50 * time.Millisecond)
				continue
			}
			served++
			if got := r.header.Get("X-Caddy-Client"); got != clClient {
				t.Errorf("%s during the move: client %q (pod %s)", id, got, r.header.Get("X-Caddy-Pod"))
			}
			if r.header.Get("X-Caddy-Pod") == podB.name {
				firstOnB = time.Since(moved)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if firstOnB == 0 {
			t.Fatalf("traffic never moved to %s (balancer sends to %v)", podB.name, c.healthyNodes(clLocalVIP))
		}
		waitHealthy(t, c, clLocalVIP, []string{node2.ip}, 10*interval)
		t.Logf("the pod moved: first request on %s after %v (health checks every %v, fall 2 rise 2); %d served meanwhile, %d failed, none misjudged",
			podB.name, firstOnB.Round(10*time.Millisecond), interval, served, failed)
		for i := range 4 {
			id := fmt.Sprintf("etp-local-after-%d", i)
			r := c.request(addr, id, "")
			c.expectClient(id, r, clClient)
			if pod := r.header.Get("X-Caddy-Pod"); pod != podB.name {
				t.Errorf("%s: served by %s after the move", id, pod)
			}
		}
		status, _ := c.httpGet(c.cloud, fmt.Sprintf("%s:%d", node1.ip, hcPort), "/")
		if status != 503 {
			t.Errorf("node1's health-check node port after the move: %d, want 503", status)
		}
	})

	t.Run("externalTrafficPolicy Cluster", func(t *testing.T) {
		c.use(t)
		addr := clClusterIP + ":80"
		// The balancer sends to each node in turn; the pod (on node1) sees
		// the address of the node that masqueraded the connection.
		for _, n := range c.nodes {
			c.route(clClusterIP, []string{n.ip})
			id := "etp-cluster-via-" + n.name
			c.expectClient(id, c.request(addr, id, ""), n.ip, n.podGateway)
		}
	})

	t.Run("NLB PROXY v2, IP targets", func(t *testing.T) {
		c.use(t)
		up := c.expectClient("nlb-v2", c.request(nlbV2, "nlb-v2", ""), clClient)
		if id := up.Get("X-Pp-Unique-Id"); len(id) < 32 {
			t.Errorf("unique_id TLV from HAProxy: %q", id)
		}
		c.expectClient("nlb-v2-forged-xff", c.request(nlbV2, "nlb-v2-forged-xff", "", forgedXFF), clClient)
		c.expectRefused("nlb-v2-forged-pp", c.request(nlbV2, "nlb-v2-forged-pp", forgedPP))
		c.expectClient("nlb-v1", c.request(nlbV1, "nlb-v1", ""), clClient)
		c.expectRefused("nlb-v1-forged-pp", c.request(nlbV1, "nlb-v1-forged-pp", forgedPP))
	})

	t.Run("NLB PROXY v2, instance targets through the node port", func(t *testing.T) {
		c.use(t)
		// Round robin over both nodes: through node1 (the pod's) and
		// through node2, masqueraded by kube-proxy either way.
		for i := range 4 {
			id := fmt.Sprintf("nlb-instance-%d", i)
			c.expectClient(id, c.request(nlbInstance, id, ""), clClient)
		}
		c.expectRefused("nlb-instance-forged-pp", c.request(nlbInstance, "nlb-instance-forged-pp", forgedPP))
		// A client that reaches a node port itself (no balancer) is not
		// trusted: kube-proxy masquerades it to a node address, which the
		// wrapper trusts, but the client's own PROXY header is all it has.
		// The README's advice: keep node ports closed to the outside.
	})

	t.Run("PROXY v2 then TLS, h1 and h2", func(t *testing.T) {
		c.use(t)
		for _, target := range []string{clCloudPub + ":443", clCloudPub + ":444"} {
			for _, h2 := range []bool{false, true} {
				tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "app.example"}, ForceAttemptHTTP2: h2}
				if !h2 {
					tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
				}
				client := httpClientIn(c.client, target, tr)
				id := uniqueID(fmt.Sprintf("nlb-tls-h2-%v", h2))
				resp, body := getWhileIssuing(t, client, newGet("https://app.example/"+id, "X-Test-Id: "+id))
				tr.CloseIdleConnections()
				if wantProto := map[bool]int{false: 1, true: 2}[h2]; resp.ProtoMajor != wantProto {
					t.Errorf("%s via %s: %s", id, target, resp.Proto)
				}
				c.expectClient(id, reply{status: resp.StatusCode, header: resp.Header, body: string(body)}, clClient)
			}
		}
	})

	t.Run("L7 X-Forwarded-For and two tiers", func(t *testing.T) {
		c.use(t)
		up := c.expectClient("alb", c.request(alb, "alb", ""), clClient)
		want := map[string]string{"X-Real-Ip": clClient, "X-Forwarded-For": clClient + ", " + clCloud,
			"X-Forwarded-Proto": "http", "X-Forwarded-Host": "shop.example", "X-Forwarded-Port": "8081", "X-Forwarded-Path": "/alb"}
		for k, v := range want {
			if up.Get(k) != v {
				t.Errorf("Kong's %s upstream: %q, want %q", k, up.Get(k), v)
			}
		}
		up = c.expectClient("alb-forged-xff", c.request(alb, "alb-forged-xff", "", forgedXFF), clClient)
		if got, want := up.Get("X-Forwarded-For"), clForged+", "+clClient+", "+clCloud; got != want {
			t.Errorf("Kong's X-Forwarded-For keeps what the client wrote (as the README warns): %q, want %q", got, want)
		}
		c.expectRefused("alb-forged-pp", c.request(alb, "alb-forged-pp", forgedPP))
		c.expectClient("tiers", c.request(edge, "tiers", ""), clClient)
		c.expectClient("tiers-forged-xff", c.request(edge, "tiers-forged-xff", "", forgedXFF), clClient)
		c.expectRefused("tiers-forged-pp", c.request(edge, "tiers-forged-pp", forgedPP))
		c.expectRefused("tiers-bypass-forged-pp", c.request(tierDirect, "tiers-bypass-forged-pp", forgedPP))
		// Around the L7 tier: the PROXY source is the client itself, not
		// trusted, so its X-Forwarded-For is not believed.
		c.expectClient("tiers-bypass-forged-xff", c.request(tierDirect, "tiers-bypass-forged-xff", "", forgedXFF), clClient)
	})

	t.Run("health checks and probes", func(t *testing.T) {
		c.use(t)
		want := []string{"pod_v2/pod", "pod_v1/pod", "node_ports/node1", "node_ports/node2", "pod_tls/pod", "pod_xff/pod"}
		var states map[string]string
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			states = c.haproxyServerStates()
			if !slices.ContainsFunc(want, func(s string) bool { return states[s] != "UP" }) {
				break
			}
		}
		for _, s := range want {
			if states[s] != "UP" {
				t.Errorf("HAProxy health check (PROXY v2 LOCAL, check-send-proxy) of %s: %q", s, states[s])
			}
		}
		for _, p := range c.pods {
			if r := sendRaw(t, p.node.ns, p.ip+":8085", "GET /healthz HTTP/1.1\r\nHost: "+p.ip+"\r\nConnection: close\r\n\r\n"); r.status != 200 {
				t.Errorf("kubelet probe of %s: %+v", p.name, r)
			}
			// The same probe on a wrapper's port gets no answer: why the
			// probe port has no wrapper.
			if r := sendRaw(t, p.node.ns, p.ip+":8080", "GET /healthz HTTP/1.1\r\nHost: "+p.ip+"\r\nConnection: close\r\n\r\n"); !r.closed {
				t.Errorf("a probe without a PROXY header on the wrapper's port: %+v", r)
			}
		}
	})
	// The examples next: their Services take node ports of their own.
	c.use(t)
	for _, name := range []string{"web-local", "web-cluster", "web-instance"} {
		c.api.do("DELETE", "/api/v1/namespaces/default/services/"+name, nil, 200)
	}
	t.Run("examples", func(t *testing.T) { testClusterExamples(t, c) })
	c.use(t)
	t.Run("imports", func(t *testing.T) { testClusterImports(t, c) })
}

// waitConnect waits until a connection from namespace ns to addr is
// accepted.
func (c *cluster) waitConnect(ns, addr string) {
	c.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		conn, err := dialIn(ns, addr)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s from %s: %v", addr, ns, err)
		}
	}
}

// waitHealthy waits until the passthrough balancer for vip sends to
// exactly the given nodes.
func waitHealthy(t *testing.T, c *cluster, vip string, want []string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
		if got := c.healthyNodes(vip); slices.Equal(got, want) {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("the balancer for %s sends to %v, want %v", vip, got, want)
		}
	}
}

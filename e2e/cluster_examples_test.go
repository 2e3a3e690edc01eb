package e2e

import (
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
	"gopkg.in/yaml.v3"
)

// The Kubernetes examples, applied for real to the test apiserver and run
// through kube-proxy: each example's pods are played by the built Caddy
// with the Caddyfile read back from the example's own ConfigMap (the
// Deployment's volume), on both nodes (replicas: 2); the test writes the
// EndpointSlice the controller would; and the cloud namespace does what the
// Service's annotations (or the Ingress) ask of a cloud balancer.
var clusterExamples = []string{
	"etp-local", "eks-nlb-ip", "eks-nlb-instance", "l7-x-forwarded-for",
	"aws-privatelink-endpoints", "aks-private-link", "cloudflare",
}

// The end user behind the Cloudflare edge (the client namespace plays the
// edge there).
const clCloudflareUser = "192.0.2.44"

// manifestDocs reads an example's manifest, one object per document.
func manifestDocs(t *testing.T, example string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "examples", "kubernetes", example, "caddy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err == io.EOF {
			return docs
		} else if err != nil {
			t.Fatalf("%s: %v", example, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// collection is an object's REST collection in namespace ns.
func collection(obj map[string]any, ns string) string {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	plural := strings.ToLower(kind) + "s"
	if strings.HasSuffix(kind, "s") {
		plural = strings.ToLower(kind) + "es"
	}
	prefix := "/apis/" + apiVersion
	if apiVersion == "v1" {
		prefix = "/api/v1"
	}
	return fmt.Sprintf("%s/namespaces/%s/%s", prefix, ns, plural)
}

// exampleCaddyfileForCluster makes the example's Caddyfile run in the test
// cluster, changing only what names the user's own environment: the
// upstream (app:8080 → the pod's echo), the VPC or node subnet (→ the test's
// VPC), Cloudflare's ranges (→ the test's edge), and Caddy's internal CA
// for the example's public name (no ACME here). Each change must apply.
func exampleCaddyfileForCluster(t *testing.T, example, cf string) string {
	t.Helper()
	must := func(old, new string) {
		if !strings.Contains(cf, old) {
			t.Fatalf("%s: the Caddyfile no longer has %q; update the test's substitutions", example, old)
		}
		cf = strings.ReplaceAll(cf, old, new)
	}
	must("app:8080", "127.0.0.1:9000")
	switch example {
	case "eks-nlb-ip", "eks-nlb-instance", "aws-privatelink-endpoints", "l7-x-forwarded-for":
		must("10.0.0.0/16", clVPC)
	case "aks-private-link":
		must("10.224.0.0/16", clVPC)
	case "cloudflare":
		lines := regexp.MustCompile(`(?m)^\s*trusted_ips .*\n`)
		n := 0
		cf = lines.ReplaceAllStringFunc(cf, func(string) string {
			n++
			if n == 1 {
				return "\t\ttrusted_ips 203.0.113.0/25 # the test's Cloudflare edge\n"
			}
			return ""
		})
		if n == 0 {
			t.Fatalf("%s: no trusted_ips lines", example)
		}
	}
	global := "\tadmin off\n\tlocal_certs\n\tskip_install_trust\n"
	if strings.HasPrefix(cf, "{\n") {
		return "{\n" + global + cf[2:]
	}
	return "{\n" + global + "}\n\n" + cf
}

// relay is a cloud balancer that sends the PROXY protocol v2 with TLVs
// HAProxy cannot write (AWS's VPC endpoint ID, Azure's Private Link ID):
// it accepts on listen (in the cloud namespace) and relays each connection
// to the next target in turn, after a header naming the client.
func (c *cluster) relay(listen string, targets []string, tlvs []proxyproto.TLV) {
	c.t.Helper()
	var ln net.Listener
	if err := inNetns(c.cloud, func() error {
		var err error
		ln, err = net.Listen("tcp", listen)
		return err
	}); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { ln.Close() })
	var next atomic.Uint32
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				target := targets[int(next.Add(1))%len(targets)]
				out, err := dialIn(c.cloud, target)
				if err != nil {
					return
				}
				defer out.Close()
				h := proxyproto.HeaderProxyFromAddrs(2, in.RemoteAddr(), in.LocalAddr())
				if err := h.SetTLVs(tlvs); err != nil {
					return
				}
				if _, err := h.WriteTo(out); err != nil {
					return
				}
				go func() { _, _ = io.Copy(out, in); out.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(in, out)
			}()
		}
	}()
}

// exampleService is what the test needs of an example's Service.
type exampleService struct {
	ports       []servicePort // TargetPort resolved to the container's port
	annotations map[string]any
	typ, policy string
	healthPort  int
}

func (c *cluster) readExampleService(ns string, containerPorts map[string]int) exampleService {
	c.t.Helper()
	svc := c.api.do("GET", "/api/v1/namespaces/"+ns+"/services/caddy", nil, 200)
	spec := svc["spec"].(map[string]any)
	es := exampleService{typ: spec["type"].(string)}
	es.annotations, _ = svc["metadata"].(map[string]any)["annotations"].(map[string]any)
	es.policy, _ = spec["externalTrafficPolicy"].(string)
	if hp, ok := spec["healthCheckNodePort"].(float64); ok {
		es.healthPort = int(hp)
	}
	for _, p := range spec["ports"].([]any) {
		p := p.(map[string]any)
		sp := servicePort{Name: p["name"].(string), Port: int(p["port"].(float64))}
		switch tp := p["targetPort"].(type) {
		case string:
			sp.TargetPort = containerPorts[tp]
		case float64:
			sp.TargetPort = int(tp)
		}
		if sp.TargetPort == 0 {
			c.t.Fatalf("%s: Service port %s targets %v, which no container port names", ns, sp.Name, p["targetPort"])
		}
		if np, ok := p["nodePort"].(float64); ok {
			sp.NodePort = int(np)
		}
		es.ports = append(es.ports, sp)
	}
	return es
}

func (es exampleService) port(name string) servicePort {
	for _, p := range es.ports {
		if p.Name == name {
			return p
		}
	}
	return servicePort{}
}

func testClusterExamples(t *testing.T, c *cluster) {
	for i, example := range clusterExamples {
		t.Run(example, func(t *testing.T) {
			c.use(t)
			vip := c.deployManifest("ex-"+example, manifestDocs(t, example), 210+i, 0, func(cf string) string {
				return exampleCaddyfileForCluster(t, example, cf)
			})
			c.checkExample(example, vip)
		})
	}
}

// deployManifest applies a manifest's objects to namespace ns for real,
// plays its Deployment's two pods (one per node) with the built Caddy
// running the Caddyfile read back from its ConfigMap (as the container's
// runAsUser when it is not 0; transform adapts the Caddyfile to the test's
// network), writes the Service's EndpointSlice, and does what the Service's
// annotations (or an Ingress) ask of the cloud. It returns the balancer's
// address: 203.0.113.<vipHost>.
func (c *cluster) deployManifest(ns string, docs []map[string]any, vipHost, _ int, transform func(string) string) string {
	t := c.t
	c.api.create("/api/v1/namespaces", map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}})
	containerPorts := map[string]int{}
	hasIngress := false
	uid := 0
	probePath := "/healthz"
	for _, doc := range docs {
		c.api.create(collection(doc, ns), doc)
		switch doc["kind"] {
		case "Deployment":
			tmpl := doc["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
			for _, ctr := range tmpl["containers"].([]any) {
				ctr := ctr.(map[string]any)
				for _, p := range ctr["ports"].([]any) {
					p := p.(map[string]any)
					containerPorts[p["name"].(string)] = p["containerPort"].(int)
				}
				if sc, ok := ctr["securityContext"].(map[string]any); ok {
					uid, _ = sc["runAsUser"].(int)
				}
				if rp, ok := ctr["readinessProbe"].(map[string]any); ok {
					probePath, _ = rp["httpGet"].(map[string]any)["path"].(string)
				}
			}
		case "Ingress":
			hasIngress = true
		}
	}
	// The pods: the ConfigMap as the volume would mount it.
	cm := c.api.do("GET", "/api/v1/namespaces/"+ns+"/configmaps/caddy", nil, 200)
	caddyfile := transform(cm["data"].(map[string]any)["Caddyfile"].(string))
	for _, p := range c.pods {
		c.startPodCaddyAs(p, caddyfile, containerPorts["probe"], probePath, uid)
	}
	svc := c.readExampleService(ns, containerPorts)
	slicePorts := map[string]int{}
	for _, p := range svc.ports {
		slicePorts[p.Name] = p.TargetPort
	}
	c.setEndpoints(ns, "caddy", slicePorts, podEndpoint{c.pods[0], true}, podEndpoint{c.pods[1], true})

	vip := fmt.Sprintf("203.0.113.%d", vipHost)
	if svc.typ == "LoadBalancer" {
		c.setLoadBalancerIP(ns, "caddy", vip)
	}
	podTargets := func(port int) []string {
		return []string{fmt.Sprintf("%s:%d", c.pods[0].ip, port), fmt.Sprintf("%s:%d", c.pods[1].ip, port)}
	}
	nodeTargets := func(port int) []string {
		return []string{fmt.Sprintf("%s:%d", c.nodes[0].ip, port), fmt.Sprintf("%s:%d", c.nodes[1].ip, port)}
	}
	ownAddress := func() {
		c.lab.in(c.cloud, "ip", "addr", "add", vip+"/32", "dev", "lo")
	}
	a := svc.annotations
	switch {
	case hasIngress || svc.typ == "ClusterIP":
		// An ALB with IP targets (an Ingress, or a ClusterIP Service an
		// Ingress elsewhere points at), checking the probe port.
		ownAddress()
		httpPort := svc.ports[0]
		if p := svc.port("http"); p.Name != "" {
			httpPort = p
		}
		c.startHAProxy(ns, fmt.Sprintf(`
frontend alb
	mode http
	bind %s:80
	option forwardfor
	default_backend pods
backend pods
	mode http
	option httpchk GET /healthz
%s`, vip, haproxyServers(podTargets(httpPort.TargetPort), fmt.Sprintf("check port %d", containerPorts["probe"]))))
	case a["service.beta.kubernetes.io/aws-load-balancer-proxy-protocol"] == "*" && ns == "ex-aws-privatelink-endpoints":
		ownAddress()
		c.relay(vip+":80", podTargets(svc.port("http").TargetPort), []proxyproto.TLV{
			{Type: tlvparse.PP2_TYPE_AWS, Value: append([]byte{0x01}, "vpce-0fedcba9876543210"...)}})
		c.relay(vip+":81", podTargets(svc.port("http").TargetPort), []proxyproto.TLV{
			{Type: tlvparse.PP2_TYPE_AWS, Value: append([]byte{0x01}, "vpce-0aaaaaaaaaaaaaaaa"...)}})
	case a["service.beta.kubernetes.io/aws-load-balancer-proxy-protocol"] == "*":
		// An NLB with the PROXY protocol v2: IP targets reach the pods,
		// instance targets the node ports. Its health checks: HTTP with
		// a PROXY v2 LOCAL header first where the annotations ask for
		// HTTP, else TCP (which sends no header).
		ownAddress()
		targets := podTargets
		portOf := func(p servicePort) int { return p.TargetPort }
		if a["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"] == "instance" {
			targets, portOf = nodeTargets, func(p servicePort) int { return p.NodePort }
		}
		var cfg strings.Builder
		for _, p := range svc.ports {
			fmt.Fprintf(&cfg, "frontend %s\n\tmode tcp\n\tbind %s:%d\n\tdefault_backend %s\n", p.Name, vip, p.Port, p.Name)
			if hcPort, ok := a["service.beta.kubernetes.io/aws-load-balancer-healthcheck-port"]; ok {
				fmt.Fprintf(&cfg, "backend %s\n\tmode tcp\n\toption httpchk\n\thttp-check send meth GET uri %v ver HTTP/1.1 hdr Host health.check\n%s",
					p.Name, a["service.beta.kubernetes.io/aws-load-balancer-healthcheck-path"], haproxyServers(targets(portOf(p)), fmt.Sprintf("send-proxy-v2 check check-send-proxy port %v", hcPort)))
			} else {
				fmt.Fprintf(&cfg, "backend %s\n\tmode tcp\n%s", p.Name, haproxyServers(targets(portOf(p)), "send-proxy-v2 check"))
			}
		}
		c.startHAProxy(ns, cfg.String())
	case a["service.beta.kubernetes.io/azure-pls-proxy-protocol"] == "true":
		// Azure's Private Link Service: PROXY v2 with the link ID,
		// through the internal balancer to the node ports
		// (externalTrafficPolicy: Cluster).
		ownAddress()
		id := make([]byte, 5)
		id[0] = 0x01
		binary.LittleEndian.PutUint32(id[1:], 0x2a0b0c0d)
		c.relay(vip+":80", nodeTargets(svc.port("http").NodePort), []proxyproto.TLV{{Type: 0xEE, Value: id}})
	default:
		// A passthrough balancer: the health-check node port with
		// Local, kube-proxy's own health with Cluster.
		port, path := svc.healthPort, "/"
		if svc.policy != "Local" {
			port, path = 10256, "/healthz"
		}
		stop := c.passthrough(vip, port, path, 500*time.Millisecond)
		t.Cleanup(stop)
		waitHealthy(t, c, vip, []string{c.nodes[0].ip, c.nodes[1].ip}, 10*time.Second)
	}
	return vip
}

// haproxyServers writes a backend's server lines.
func haproxyServers(targets []string, options string) string {
	var b strings.Builder
	for i, t := range targets {
		fmt.Fprintf(&b, "\tserver t%d %s %s\n", i, t, options)
	}
	return b.String()
}

// startHAProxy runs one HAProxy in the cloud namespace for the test.
func (c *cluster) startHAProxy(name, body string) {
	c.t.Helper()
	cfg := "defaults\n\ttimeout connect 3s\n\ttimeout client 30s\n\ttimeout server 30s\n\tdefault-server inter 300ms fall 2 rise 1\n" + body
	path := filepath.Join(c.dir, "haproxy-"+name+".cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		c.t.Fatal(err)
	}
	_, stop := c.lab.startStoppable(c.cloud, nil, "haproxy", "-db", "-f", path)
	c.t.Cleanup(stop)
}

// exampleGet sends a request from the client namespace to addr (a URL's
// host is kept for Host and SNI) and returns the upstream's headers and
// the response.
func (c *cluster) exampleGet(url, addr, id string, headers ...string) (*http.Response, http.Header) {
	c.t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true, ForceAttemptHTTP2: true}
	client := httpClientIn(c.client, addr, tr)
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, body := getWhileIssuing(c.t, client, newGet(url+"/"+id, append([]string{"X-Test-Id: " + id}, headers...)...))
	var up map[string][]string
	_ = json.Unmarshal(body, &up)
	return resp, http.Header(up)
}

// expectUpstream asserts that request id reached the upstream with client
// as its X-Forwarded-For and was logged with it.
func (c *cluster) expectUpstream(id string, resp *http.Response, up http.Header, client string) {
	c.t.Helper()
	if resp.StatusCode != 200 {
		c.t.Errorf("%s: %s", id, resp.Status)
		return
	}
	xff := up.Get("X-Forwarded-For")
	if entries := strings.Split(xff, ","); strings.TrimSpace(entries[len(entries)-1]) != client {
		c.t.Errorf("%s: upstream X-Forwarded-For %q, want it to end with %s", id, xff, client)
	}
	if logged, ok := c.loggedClient(id, 5*time.Second); !ok || logged != client {
		c.t.Errorf("%s: access log client_ip %q (found %v), want %s", id, logged, ok, client)
	}
	c.t.Logf("%s: %s, upstream X-Forwarded-For %q (pod %s)", id, resp.Proto, xff, up.Get("X-Echo-Pod"))
}

// checkExample sends what each example's users send and asserts what
// Caddy and the upstream saw.
func (c *cluster) checkExample(example, vip string) {
	t := c.t
	forged := "X-Forwarded-For: " + clForged
	pods := map[string]bool{}
	// At least four requests, and more (up to 30) until both pods have
	// answered: a passthrough balancer hashes connections over the nodes.
	more := func(i int) bool { return i < 4 || len(pods) < 2 && i < 30 }
	switch example {
	case "etp-local", "eks-nlb-ip", "eks-nlb-instance":
		for i := 0; more(i); i++ {
			id := uniqueID(example)
			resp, up := c.exampleGet("https://app.example.com", vip+":443", id, forged)
			c.expectUpstream(id, resp, up, clClient)
			pods[up.Get("X-Echo-Pod")] = true
			if i == 0 && resp.ProtoMajor != 2 {
				t.Errorf("%s: %s, want HTTP/2", id, resp.Proto)
			}
		}
		if example != "etp-local" {
			// HTTP redirects to HTTPS; the NLB's health checks are up.
			resp, _ := c.exampleGet("http://app.example.com", vip+":80", uniqueID(example))
			if resp.StatusCode != 308 {
				t.Errorf("http://app.example.com: %s, want 308", resp.Status)
			}
		}
	case "l7-x-forwarded-for", "aks-private-link":
		for i := 0; more(i); i++ {
			id := uniqueID(example)
			resp, up := c.exampleGet("http://app.example.com", vip+":80", id, forged)
			c.expectUpstream(id, resp, up, clClient)
			pods[up.Get("X-Echo-Pod")] = true
			if example == "aks-private-link" && up.Get("X-Private-Link-Id") != strconv.Itoa(0x2a0b0c0d) {
				t.Errorf("%s: X-Private-Link-Id %q, want %d", id, up.Get("X-Private-Link-Id"), 0x2a0b0c0d)
			}
		}
	case "aws-privatelink-endpoints":
		for i := 0; more(i); i++ {
			id := uniqueID(example)
			resp, up := c.exampleGet("http://app.example.com", vip+":80", id, forged)
			c.expectUpstream(id, resp, up, clClient)
			pods[up.Get("X-Echo-Pod")] = true
		}
		resp, _ := c.exampleGet("http://app.example.com", vip+":81", uniqueID(example))
		if resp.StatusCode != 403 {
			t.Errorf("a foreign VPC endpoint: %s, want 403", resp.Status)
		}
	case "cloudflare":
		for i := 0; more(i); i++ {
			id := uniqueID(example)
			resp, up := c.exampleGet("https://app.example.com", vip+":443", id, "CF-Connecting-IP: "+clCloudflareUser)
			c.expectUpstream(id, resp, up, clCloudflareUser)
			pods[up.Get("X-Echo-Pod")] = true
		}
	default:
		t.Fatalf("no check for example %s", example)
	}
	if len(pods) != 2 {
		t.Errorf("requests reached the pods %v, want both (replicas: 2, one per node)", pods)
	}
}

// testClusterImports runs the imports' --output-dir manifests on the test
// cluster: Kong's chart values for an NLB with PROXY v2 and ingress-nginx's
// for a passthrough balancer with externalTrafficPolicy Local, each
// applied for real, its Caddyfile run as the Deployment's non-root user.
func testClusterImports(t *testing.T, c *cluster) {
	cases := []struct {
		name  string
		args  []string
		check func(t *testing.T, vip string)
	}{
		{"kong-nlb-proxy-protocol", []string{"real-ip", "import", "kong", "--helm-values", "../testdata/import/kong-helm/aws-nlb-proxy-protocol.yaml",
			"--set", "env.trusted_ips=" + clVPC}, func(t *testing.T, vip string) {
			for _, tc := range []struct{ url, addr, port, proto string }{
				{"http://shop.example", vip + ":80", "80", "http"},
				{"https://shop.example", vip + ":443", "443", "https"},
			} {
				id := uniqueID("kong-nlb")
				resp, up := c.exampleGet(tc.url, tc.addr, id, "X-Forwarded-For: "+clForged)
				// Kong's X-Forwarded-For: what the client sent, then the
				// connection's own peer (the NLB), as the README warns.
				if resp.StatusCode != 200 || up.Get("X-Real-Ip") != clClient || up.Get("X-Forwarded-For") != clForged+", "+clCloud ||
					up.Get("X-Forwarded-Port") != tc.port || up.Get("X-Forwarded-Proto") != tc.proto {
					t.Errorf("%s via %s: %s, upstream %v (want X-Real-IP %s, X-Forwarded-For %s, %s, X-Forwarded-Port %s from port_maps, %s)",
						id, tc.addr, resp.Status, up, clClient, clForged, clCloud, tc.port, tc.proto)
				}
				t.Logf("%s via %s (%s): upstream X-Real-IP %q, X-Forwarded-For %q, X-Forwarded-Port %q, X-Forwarded-Proto %q (pod %s)",
					id, tc.addr, resp.Proto, up.Get("X-Real-Ip"), up.Get("X-Forwarded-For"), up.Get("X-Forwarded-Port"), up.Get("X-Forwarded-Proto"), up.Get("X-Echo-Pod"))
			}
		}},
		{"ingress-nginx-nlb-proxy-protocol", []string{"real-ip", "import", "ingress-nginx", "--helm-values", "../testdata/import/ingress-nginx-helm/aws-nlb-proxy-protocol.yaml",
			"--set", "controller.config.proxy-real-ip-cidr=" + clVPC}, func(t *testing.T, vip string) {
			// Ports 80 and 443 as the controller's, bound by a non-root
			// Caddy through the manifest's ip_unprivileged_port_start.
			for _, tc := range []struct{ url, addr, proto string }{
				{"http://shop.example", vip + ":80", "http"},
				{"https://shop.example", vip + ":443", "https"},
			} {
				id := uniqueID("ingress-nlb")
				resp, up := c.exampleGet(tc.url, tc.addr, id, "X-Forwarded-For: "+clForged)
				if resp.StatusCode != 200 || up.Get("X-Real-Ip") != clClient || up.Get("X-Forwarded-For") != clClient || up.Get("X-Forwarded-Proto") != tc.proto {
					t.Errorf("%s via %s: %s, upstream %v (want X-Real-IP and X-Forwarded-For %s, %s)", id, tc.addr, resp.Status, up, clClient, tc.proto)
				}
				t.Logf("%s via %s (%s): upstream X-Real-IP %q, X-Forwarded-For %q, X-Forwarded-Proto %q (pod %s)",
					id, tc.addr, resp.Proto, up.Get("X-Real-Ip"), up.Get("X-Forwarded-For"), up.Get("X-Forwarded-Proto"), up.Get("X-Echo-Pod"))
			}
		}},
		{"kong-alb", []string{"real-ip", "import", "kong", "--helm-values", "../testdata/import/kong-helm/alb.yaml", "--set", "env.trusted_ips=" + clVPC},
			func(t *testing.T, vip string) {
				id := uniqueID("kong-alb")
				resp, up := c.exampleGet("http://shop.example", vip+":80", id, "X-Forwarded-For: "+clForged)
				if resp.StatusCode != 200 || up.Get("X-Real-Ip") != clClient || up.Get("X-Forwarded-Port") != "80" {
					t.Errorf("%s: %s, upstream %v (want X-Real-IP %s, X-Forwarded-Port 80)", id, resp.Status, up, clClient)
				}
				t.Logf("%s via %s:80: upstream X-Real-IP %q, X-Forwarded-For %q, X-Forwarded-Port %q (pod %s)", id, vip, up.Get("X-Real-Ip"), up.Get("X-Forwarded-For"), up.Get("X-Forwarded-Port"), up.Get("X-Echo-Pod"))
			}},
		{"kong-gke", []string{"real-ip", "import", "kong", "--helm-values", "../testdata/import/kong-helm/gke.yaml"},
			func(t *testing.T, vip string) {
				id := uniqueID("kong-gke")
				resp, up := c.exampleGet("https://shop.example", vip+":443", id, "X-Forwarded-For: "+clForged)
				if resp.StatusCode != 200 || up.Get("X-Forwarded-For") != clClient {
					t.Errorf("%s: %s, upstream %v (want X-Forwarded-For %s)", id, resp.Status, up, clClient)
				}
				t.Logf("%s via %s:443 (%s): upstream X-Forwarded-For %q (pod %s)", id, vip, resp.Proto, up.Get("X-Forwarded-For"), up.Get("X-Echo-Pod"))
			}},
		{"ingress-nginx-etp-local", []string{"real-ip", "import", "ingress-nginx", "--helm-values", "../testdata/import/ingress-nginx-helm/etp-local.yaml"},
			func(t *testing.T, vip string) {
				pods := map[string]bool{}
				for i := 0; i < 4 || len(pods) < 2 && i < 30; i++ {
					id := uniqueID("ingress-etp-local")
					resp, up := c.exampleGet("http://shop.example", vip+":80", id, "X-Forwarded-For: "+clForged)
					if resp.StatusCode != 200 || up.Get("X-Real-Ip") != clClient || up.Get("X-Forwarded-For") != clClient {
						t.Errorf("%s: %s, upstream %v (want %s)", id, resp.Status, up, clClient)
					}
					pods[up.Get("X-Echo-Pod")] = true
					if i == 0 {
						t.Logf("%s via %s:80: upstream X-Real-IP %q, X-Forwarded-For %q (pod %s)", id, vip, up.Get("X-Real-Ip"), up.Get("X-Forwarded-For"), up.Get("X-Echo-Pod"))
					}
				}
				if len(pods) != 2 {
					t.Errorf("requests reached the pods %v, want both", pods)
				}
			}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.use(t)
			dir := t.TempDir()
			caddyCommand(t, nil, append(tc.args, "--upstream", "http://127.0.0.1:9000", "--output-dir", dir)...)
			data, err := os.ReadFile(filepath.Join(dir, "caddy.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			var docs []map[string]any
			dec := yaml.NewDecoder(strings.NewReader(string(data)))
			for {
				var doc map[string]any
				if err := dec.Decode(&doc); err == io.EOF {
					break
				} else if err != nil {
					t.Fatal(err)
				}
				if doc != nil {
					docs = append(docs, doc)
				}
			}
			// What kubectl apply --dry-run=server checks: the apiserver
			// takes every object without creating it.
			for _, doc := range docs {
				c.api.do("POST", collection(doc, "default")+"?dryRun=All", doc, 201)
			}
			vip := c.deployManifest("imp-"+tc.name, docs, 230+i, 0, func(cf string) string { return cf })
			tc.check(t, vip)
		})
	}
}

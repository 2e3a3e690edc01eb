package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// A test cluster of real Kubernetes parts on one machine: Debian's etcd and
// a kube-apiserver in a control-plane namespace, two nodes each running a
// real kube-proxy, one pod per node, and a "cloud" in front with the
// balancers. Documentation addresses only:
//
//	client 203.0.113.7/25 ── 203.0.113.1  cloud  198.51.100.1 ─┬─ 198.51.100.5   control plane (etcd, kube-apiserver)
//	                       (HAProxy, the passthrough           ├─ 198.51.100.11  node1 (kube-proxy) ── .65 │ .70  pod-a
//	                        balancer, PROXY relays)            └─ 198.51.100.12  node2 (kube-proxy) ── .97 │ .100 pod-b
//
// 198.51.100.0/25 plays the VPC: nodes, balancers and pods (as AWS's VPC CNI
// gives pods VPC addresses, routed by the cloud to their node). Services'
// cluster IPs are 198.51.100.128/25; the balancers' public addresses are
// 203.0.113.128/25, routed by the cloud.
const (
	clClient    = "203.0.113.7"
	clCloudPub  = "203.0.113.1"
	clCloud     = "198.51.100.1"
	clControl   = "198.51.100.5"
	clVPC       = "198.51.100.0/25"
	clServices  = "198.51.100.128/25"
	clForged    = "192.0.2.66" // what a forging client claims to be
	clLocalVIP  = "203.0.113.200"
	clClusterIP = "203.0.113.201"
	apiToken    = "realip-test-token"
)

type clusterNode struct {
	name, ns, ip string
	podGateway   string // the node's address on its pods' link
	podCIDR      string
}

type clusterPod struct {
	name, ns, ip string
	node         *clusterNode
	caddy        *lockedBuffer
	stopCaddy    func()
}

type cluster struct {
	t                  *testing.T
	lab                *netnsLab
	dir                string
	mode               string // kube-proxy's: nftables or iptables
	cp, cloud, client  string
	nodes              []*clusterNode
	pods               []*clusterPod
	api                *kubeAPI
	kubeProxyLogs      []*lockedBuffer
	passthroughMu      sync.Mutex
	passthroughHealthy map[string][]string // VIP → nodes the balancer sends to
}

var (
	kubeBinOnce sync.Once
	kubeBinDir  string
	kubeBinErr  error
)

// kubeBinaries builds (once per machine, cached by version) kube-apiserver
// and kube-proxy with e2e/kube/build.sh, or takes them from REALIP_KUBE_BIN.
func kubeBinaries(t *testing.T) string {
	t.Helper()
	kubeBinOnce.Do(func() {
		if dir := os.Getenv("REALIP_KUBE_BIN"); dir != "" {
			kubeBinDir = dir
			return
		}
		out, err := exec.Command("./kube/build.sh").Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				err = fmt.Errorf("%v\n%s", err, ee.Stderr)
			}
			kubeBinErr = fmt.Errorf("e2e/kube/build.sh: %w", err)
			return
		}
		kubeBinDir = strings.TrimSpace(string(out))
	})
	if kubeBinErr != nil {
		t.Fatal(kubeBinErr)
	}
	return kubeBinDir
}

// requireCluster stops a test that needs what the cluster runs on: under
// CI=true a missing part is a failure, elsewhere a skip that says how.
func requireCluster(t *testing.T) {
	t.Helper()
	requireNetns(t)
	var missing []string
	for _, tool := range []string{"etcd", "iptables", "iptables-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("the cluster tests need %s: run ./test.sh as root (it installs Debian's etcd-server and iptables), "+
		"or as root: apt-get install -y etcd-server iptables haproxy nftables && go test ./e2e -run Cluster", strings.Join(missing, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// newCluster builds the namespaces and links, starts etcd, kube-apiserver
// and one kube-proxy per node in the given mode, and registers the nodes
// as their kubelets would. Everything is removed when t ends.
func newCluster(t *testing.T, mode string) *cluster {
	requireCluster(t)
	bin := kubeBinaries(t)
	lab := newNetnsLab(t)
	c := &cluster{t: t, lab: lab, dir: t.TempDir(), mode: mode, passthroughHealthy: map[string][]string{}}

	c.client = lab.ns("client", false)
	c.cloud = lab.ns("cloud", true)
	c.cp = lab.ns("cp", false)
	lab.link(c.client, clClient+"/25", c.cloud, clCloudPub+"/25")
	lab.in(c.client, "ip", "route", "add", "default", "via", clCloudPub)
	// The VPC: a bridge in the cloud namespace joins the control plane and
	// the nodes.
	lab.in(c.cloud, "ip", "link", "add", "vpc", "type", "bridge")
	lab.in(c.cloud, "ip", "addr", "add", clCloud+"/26", "dev", "vpc")
	lab.in(c.cloud, "ip", "link", "set", "vpc", "up")
	// Equal-cost routes to several nodes are chosen per connection.
	lab.in(c.cloud, "sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1")
	c.bridgeLink(c.cp, clControl+"/26")
	lab.in(c.cp, "ip", "route", "add", "default", "via", clCloud)

	for i, spec := range []struct{ ip, gw, pod, cidr string }{
		{"198.51.100.11", "198.51.100.65", "198.51.100.70", "198.51.100.64/27"},
		{"198.51.100.12", "198.51.100.97", "198.51.100.100", "198.51.100.96/27"},
	} {
		n := &clusterNode{name: fmt.Sprintf("node%d", i+1), ip: spec.ip, podGateway: spec.gw, podCIDR: spec.cidr}
		n.ns = lab.ns(n.name, true)
		c.bridgeLink(n.ns, n.ip+"/26")
		lab.in(n.ns, "ip", "route", "add", "default", "via", clCloud)
		// The cloud routes each node's pod range to it (VPC routes).
		lab.in(c.cloud, "ip", "route", "add", n.podCIDR, "via", n.ip)
		p := &clusterPod{name: []string{"pod-a", "pod-b"}[i], ip: spec.pod, node: n}
		p.ns = lab.ns(p.name, false)
		lab.link(n.ns, n.podGateway+"/27", p.ns, p.ip+"/27")
		lab.in(p.ns, "ip", "route", "add", "default", "via", n.podGateway)
		c.nodes = append(c.nodes, n)
		c.pods = append(c.pods, p)
	}
	// Node to node, pod range by pod range (the cluster network).
	lab.in(c.nodes[0].ns, "ip", "route", "add", c.nodes[1].podCIDR, "via", c.nodes[1].ip)
	lab.in(c.nodes[1].ns, "ip", "route", "add", c.nodes[0].podCIDR, "via", c.nodes[0].ip)
	for _, ns := range []string{c.cloud, c.nodes[0].ns, c.nodes[1].ns} {
		// Replies to the passthrough balancer's clients leave a node by
		// another path than a strict reverse-path filter expects.
		lab.in(ns, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
	}

	c.startControlPlane(bin)
	for _, n := range c.nodes {
		c.registerNode(n)
	}
	for _, n := range c.nodes {
		c.startKubeProxy(bin, n)
	}
	return c
}

// bridgeLink joins namespace ns to the cloud's VPC bridge.
func (c *cluster) bridgeLink(ns, addr string) {
	c.t.Helper()
	lab := c.lab
	lab.links++
	a := fmt.Sprintf("%sa%d", lab.prefix, lab.links)
	b := fmt.Sprintf("%sb%d", lab.prefix, lab.links)
	lab.run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
	lab.run("ip", "link", "set", a, "netns", ns)
	lab.run("ip", "link", "set", b, "netns", c.cloud)
	lab.in(ns, "ip", "addr", "add", addr, "dev", a)
	lab.in(ns, "ip", "link", "set", a, "up")
	lab.in(c.cloud, "ip", "link", "set", b, "master", "vpc", "up")
}

// startControlPlane starts etcd and kube-apiserver in the control-plane
// namespace and waits until the apiserver is ready.
func (c *cluster) startControlPlane(bin string) {
	t := c.t
	etcdDir := filepath.Join(c.dir, "etcd")
	c.lab.start(c.cp, nil, "etcd", "--data-dir", etcdDir, "--name", "cp",
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "cp=http://127.0.0.1:2380")

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	write := func(name string, data []byte) string {
		path := filepath.Join(c.dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	saKey := write("sa.key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	saPub := write("sa.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	tokens := write("tokens.csv", []byte(apiToken+",admin,admin-uid,system:masters\n"))
	c.lab.start(c.cp, nil, filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers", "http://127.0.0.1:2379",
		"--bind-address", clControl, "--advertise-address", clControl, "--secure-port", "6443",
		"--cert-dir", filepath.Join(c.dir, "apiserver-certs"),
		"--token-auth-file", tokens, "--authorization-mode", "AlwaysAllow",
		"--service-cluster-ip-range", clServices,
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", saPub, "--service-account-signing-key-file", saKey,
		// No controller manages the kubernetes Service's endpoints here.
		"--endpoint-reconciler-type", "none")

	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	c.api = &kubeAPI{t: t, client: httpClientIn(c.cp, clControl+":6443", tr), base: "https://" + clControl + ":6443"}
	t.Cleanup(tr.CloseIdleConnections)
	var last string
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		status, body, err := c.api.try("GET", "/readyz", nil)
		if err == nil && status == 200 {
			break
		}
		last = fmt.Sprintf("%d %s %v", status, body, err)
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready after 120 s: %s", last)
		}
	}
	// The default ServiceAccount namespace objects are made by a controller
	// that does not run here; the "default" namespace exists.
}

// registerNode writes the Node object as the node's kubelet would.
func (c *cluster) registerNode(n *clusterNode) {
	c.api.create("/api/v1/nodes", map[string]any{
		"apiVersion": "v1", "kind": "Node",
		"metadata": map[string]any{"name": n.name, "labels": map[string]any{"kubernetes.io/hostname": n.name}},
		"spec":     map[string]any{"podCIDR": n.podCIDR, "podCIDRs": []string{n.podCIDR}},
		"status": map[string]any{
			"addresses":  []map[string]string{{"type": "InternalIP", "address": n.ip}, {"type": "Hostname", "address": n.name}},
			"conditions": []map[string]string{{"type": "Ready", "status": "True", "reason": "KubeletReady"}},
		},
	})
}

// startKubeProxy runs kube-proxy on the node and waits for its health
// server (which answers once it has programmed its rules).
func (c *cluster) startKubeProxy(bin string, n *clusterNode) {
	t := c.t
	kubeconfig := filepath.Join(c.dir, "kubeconfig-"+n.name)
	config := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://%s:6443
    insecure-skip-tls-verify: true
users:
- name: test
  user:
    token: %s
contexts:
- name: test
  context:
    cluster: test
    user: test
current-context: test
`, clControl, apiToken)
	if err := os.WriteFile(kubeconfig, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := c.lab.start(n.ns, nil, filepath.Join(bin, "kube-proxy"),
		"--kubeconfig", kubeconfig, "--proxy-mode", c.mode, "--hostname-override", n.name,
		"--healthz-bind-address", "0.0.0.0:10256", "--metrics-bind-address", "127.0.0.1:10249",
		// Leave the machine-wide conntrack settings alone.
		"--conntrack-max-per-core", "0", "--conntrack-tcp-timeout-established", "0", "--conntrack-tcp-timeout-close-wait", "0",
		"--v", "2")
	c.kubeProxyLogs = append(c.kubeProxyLogs, logs)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if status, _ := c.httpGet(c.cloud, n.ip+":10256", "/healthz"); status == 200 {
			c.expectKubeProxyRules(n)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-proxy on %s not healthy after 60 s:\n%s", n.name, logs.String())
		}
	}
}

// expectKubeProxyRules checks that kube-proxy programmed the node in the
// mode asked for (the rules are read here, never written).
func (c *cluster) expectKubeProxyRules(n *clusterNode) {
	c.t.Helper()
	args, want := []string{"nft", "list", "table", "ip", "kube-proxy"}, "chain services"
	if c.mode == "iptables" {
		args, want = []string{"iptables-save", "-t", "nat"}, ":KUBE-SERVICES"
	}
	// Its health server answers before its first sync has written them.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, err := exec.Command("ip", append([]string{"netns", "exec", n.ns}, args...)...).CombinedOutput()
		if err == nil && strings.Contains(string(out), want) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("kube-proxy (%s mode) on %s: no %q in %s after 30 s: %v\n%s", c.mode, n.name, want, strings.Join(args, " "), err, out)
		}
	}
}

// httpGet makes one GET from namespace ns to addr and returns the status
// (0 when nothing answered) and body.
func (c *cluster) httpGet(ns, addr, path string) (int, string) {
	client := httpClientIn(ns, addr, &http.Transport{DisableKeepAlives: true})
	client.Timeout = 2 * time.Second
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// startPodCaddy runs the built Caddy in a pod with the given Caddyfile, and
// the echo upstream on 127.0.0.1:9000 (which answers with the request
// headers it received, as JSON); it waits for the probe port probe.
func (c *cluster) startPodCaddy(p *clusterPod, caddyfile string, probe int) {
	c.startPodCaddyAs(p, caddyfile, probe, "/healthz", 0)
}

// startPodCaddyAs is startPodCaddy as user uid (0: root), waiting for the
// probe at probePath.
func (c *cluster) startPodCaddyAs(p *clusterPod, caddyfile string, probe int, probePath string, uid int) {
	t := c.t
	if p.stopCaddy != nil {
		p.stopCaddy()
	}
	// A fresh folder per run, as a new pod's emptyDir volumes are.
	dir, err := os.MkdirTemp(c.dir, p.name+"-")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "Caddyfile") // the ConfigMap, mounted as a file
	if err := os.WriteFile(path, []byte(caddyfile), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir, "POD_NAME=" + p.name}
	args := []string{caddyBin, "run", "--config", path, "--adapter", "caddyfile"}
	if uid != 0 {
		// The Deployment's runAsUser: the pod's own files are its, the
		// rest read-only to it.
		for _, d := range []string{filepath.Dir(c.dir), c.dir, filepath.Dir(caddyBin)} {
			_ = os.Chmod(d, 0o755)
		}
		if err := os.Chown(dir, uid, uid); err != nil {
			t.Fatal(err)
		}
		// Below 1024 as the manifest's sysctl allows.
		c.lab.in(p.ns, "sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=0")
		args = append([]string{"setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", uid), "--clear-groups", "--"}, args...)
	}
	p.caddy, p.stopCaddy = c.lab.startStoppable(p.ns, env, args...)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if status, _ := c.httpGet(p.node.ns, fmt.Sprintf("%s:%d", p.ip, probe), probePath); status == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy did not come up in %s:\n%s", p.name, p.caddy.String())
		}
	}
}

// startEcho starts the upstream each pod's Caddy proxies to.
func (c *cluster) startEcho(p *clusterPod) {
	var echo net.Listener
	if err := inNetns(p.ns, func() error {
		var err error
		echo, err = net.Listen("tcp", "127.0.0.1:9000")
		return err
	}); err != nil {
		c.t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		h.Set("X-Echo-Pod", p.name)
		_ = json.NewEncoder(w).Encode(h)
	})}
	go func() { _ = srv.Serve(echo) }()
	c.t.Cleanup(func() { _ = srv.Close() })
}

// startStoppable is start with a function that stops the process early.
func (lab *netnsLab) startStoppable(ns string, env []string, args ...string) (*lockedBuffer, func()) {
	lab.t.Helper()
	out := &lockedBuffer{}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		lab.t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if strings.Contains(out.String(), "WARNING: DATA RACE") {
				lab.t.Errorf("the race detector reported a data race in %s", args[0])
			}
		})
	}
	lab.t.Cleanup(func() {
		stop()
		if lab.t.Failed() {
			lab.t.Logf("%s output (%s):\n%s", args[0], ns, out.String())
		}
	})
	return out, stop
}

// kubeAPI is a client of the test apiserver's REST API, with the admin
// token. Objects are plain JSON: no Kubernetes module enters the plugin's
// module graph.
type kubeAPI struct {
	t      *testing.T
	client *http.Client
	base   string
}

func (a *kubeAPI) try(method, path string, obj any) (int, []byte, error) {
	var body io.Reader
	if obj != nil {
		data, err := json.Marshal(obj)
		if err != nil {
			return 0, nil, err
		}
		body = bytes.NewReader(data)
	}
	req, _ := http.NewRequestWithContext(context.Background(), method, a.base+path, body)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data, nil
}

// do fails the test unless the API answers with one of the wanted
// statuses, and returns the object it answered with.
func (a *kubeAPI) do(method, path string, obj any, want ...int) map[string]any {
	a.t.Helper()
	status, data, err := a.try(method, path, obj)
	if err != nil || !slices.Contains(want, status) {
		a.t.Fatalf("%s %s: %d %v\n%s", method, path, status, err, data)
	}
	var out map[string]any
	_ = json.Unmarshal(data, &out)
	return out
}

func (a *kubeAPI) create(path string, obj any) map[string]any {
	a.t.Helper()
	return a.do("POST", path, obj, 201)
}

// apply creates the object, or replaces it (with its resourceVersion) when
// it exists.
func (a *kubeAPI) apply(collection, name string, obj map[string]any) map[string]any {
	a.t.Helper()
	status, data, err := a.try("GET", collection+"/"+name, nil)
	if err == nil && status == 200 {
		var old map[string]any
		_ = json.Unmarshal(data, &old)
		obj["metadata"].(map[string]any)["resourceVersion"] = old["metadata"].(map[string]any)["resourceVersion"]
		return a.do("PUT", collection+"/"+name, obj, 200)
	}
	return a.create(collection, obj)
}

// servicePort is a Service port as the tests declare it.
type servicePort struct {
	Name       string
	Port       int
	TargetPort int
	NodePort   int
}

// createService writes a Service and, for a LoadBalancer, its status with
// the balancer's address (as the cloud controller does). It returns the
// Service as the apiserver completed it (node ports, health-check port).
func (c *cluster) createService(name, typ, policy, vip string, ports []servicePort) map[string]any {
	c.t.Helper()
	var sp []map[string]any
	for _, p := range ports {
		port := map[string]any{"name": p.Name, "port": p.Port, "targetPort": p.TargetPort, "protocol": "TCP"}
		if p.NodePort != 0 {
			port["nodePort"] = p.NodePort
		}
		sp = append(sp, port)
	}
	spec := map[string]any{"type": typ, "ports": sp, "selector": map[string]any{"app": name}}
	if policy != "" {
		spec["externalTrafficPolicy"] = policy
	}
	svc := c.api.create("/api/v1/namespaces/default/services", map[string]any{
		"apiVersion": "v1", "kind": "Service", "metadata": map[string]any{"name": name}, "spec": spec})
	if vip != "" {
		c.setLoadBalancerIP("default", name, vip)
	}
	return svc
}

// setLoadBalancerIP writes the Service's status as a cloud controller does
// once its balancer exists.
func (c *cluster) setLoadBalancerIP(namespace, name, vip string) {
	c.t.Helper()
	path := fmt.Sprintf("/api/v1/namespaces/%s/services/%s", namespace, name)
	svc := c.api.do("GET", path, nil, 200)
	svc["status"] = map[string]any{"loadBalancer": map[string]any{"ingress": []map[string]any{{"ip": vip, "ipMode": "VIP"}}}}
	c.api.do("PUT", path+"/status", svc, 200)
}

// podEndpoint is one pod in an EndpointSlice.
type podEndpoint struct {
	pod   *clusterPod
	ready bool
}

// setEndpoints writes the Service's EndpointSlice as the EndpointSlice
// controller would for the given pods (nodeName, ready, serving), with the
// ports by name.
func (c *cluster) setEndpoints(namespace, service string, ports map[string]int, eps ...podEndpoint) {
	c.t.Helper()
	var list []map[string]any
	for _, e := range eps {
		list = append(list, map[string]any{
			"addresses":  []string{e.pod.ip},
			"conditions": map[string]any{"ready": e.ready, "serving": e.ready, "terminating": false},
			"nodeName":   e.pod.node.name,
			"targetRef":  map[string]any{"kind": "Pod", "name": e.pod.name, "namespace": namespace},
		})
	}
	var pl []map[string]any
	for name, port := range ports {
		pl = append(pl, map[string]any{"name": name, "port": port, "protocol": "TCP"})
	}
	slice := map[string]any{
		"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
		"metadata": map[string]any{"name": service + "-slice", "labels": map[string]any{
			"kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
		"addressType": "IPv4", "endpoints": list, "ports": pl,
	}
	c.api.apply(fmt.Sprintf("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices", namespace), service+"-slice", slice)
}

// passthrough is the cloud's pass-through balancer for vip (GCP's and AKS's
// L4 balancers, AWS NLB without the PROXY protocol in instance mode): the
// client's packets are routed unchanged to a node that passes the health
// check, polled every interval as a cloud balancer does (rise 2, fall 2);
// kube-proxy on the node takes the balancer's address. Several healthy
// nodes share connections (equal-cost routes, hashed per connection); none
// leaves the address unreachable.
func (c *cluster) passthrough(vip string, healthPort int, path string, interval time.Duration) (stop func()) {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	c.t.Cleanup(stop)
	c.route(vip, nil)
	go func() {
		defer close(done)
		up := map[string]bool{}
		streak := map[string]int{} // >0: successes in a row, <0: failures
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			changed := false
			for _, n := range c.nodes {
				status, _ := c.httpGet(c.cloud, fmt.Sprintf("%s:%d", n.ip, healthPort), path)
				if status == 200 {
					streak[n.ip] = max(streak[n.ip], 0) + 1
				} else {
					streak[n.ip] = min(streak[n.ip], 0) - 1
				}
				if !up[n.ip] && streak[n.ip] >= 2 || up[n.ip] && streak[n.ip] <= -2 {
					up[n.ip] = !up[n.ip]
					changed = true
				}
			}
			if changed {
				var healthy []string
				for _, n := range c.nodes {
					if up[n.ip] {
						healthy = append(healthy, n.ip)
					}
				}
				c.route(vip, healthy)
			}
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
		}
	}()
	return stop
}

// route points the cloud's route for vip at the given nodes.
func (c *cluster) route(vip string, nodes []string) {
	args := []string{"ip", "netns", "exec", c.cloud, "ip", "route", "replace"}
	switch len(nodes) {
	case 0:
		args = append(args, "unreachable", vip+"/32")
	case 1:
		args = append(args, vip+"/32", "via", nodes[0])
	default:
		args = append(args, vip+"/32")
		for _, n := range nodes {
			args = append(args, "nexthop", "via", n)
		}
	}
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		c.t.Errorf("%s: %v %s", strings.Join(args, " "), err, out)
	}
	c.passthroughMu.Lock()
	c.passthroughHealthy[vip] = nodes
	c.passthroughMu.Unlock()
}

// healthyNodes is where the passthrough balancer for vip sends now.
func (c *cluster) healthyNodes(vip string) []string {
	c.passthroughMu.Lock()
	defer c.passthroughMu.Unlock()
	return slices.Clone(c.passthroughHealthy[vip])
}

// uniqueID is a fresh request ID.
func uniqueID(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// use makes t the test that the cluster's helpers report to (a subtest's).
func (c *cluster) use(t *testing.T) {
	c.t, c.api.t, c.lab.t = t, t, t
}

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requireNetns stops a test that needs root, network namespaces, nftables
// and HAProxy when they are not there: under CI=true that is a failure
// (CI must run these tests); elsewhere the test is skipped with a message
// that says how to run it.
func requireNetns(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces, veth pairs, nftables)")
	}
	for _, tool := range []string{"ip", "nft", "haproxy"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("the network tests need %s: run ./test.sh as root (it installs Debian's haproxy and nftables), "+
		"or as root: apt-get install -y haproxy nftables && go test ./e2e -run Cluster", strings.Join(missing, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// netnsLab creates network namespaces and veth pairs for one test and
// removes them (and every process it started in them) when the test ends.
type netnsLab struct {
	t      *testing.T
	prefix string
	links  int
}

func newNetnsLab(t *testing.T) *netnsLab {
	t.Helper()
	lab := &netnsLab{t: t, prefix: fmt.Sprintf("rip%d", os.Getpid()%100000)}
	return lab
}

// run runs a command and fails the test with its output if it fails.
func (lab *netnsLab) run(args ...string) {
	lab.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		lab.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// in runs a command inside namespace ns.
func (lab *netnsLab) in(ns string, args ...string) {
	lab.t.Helper()
	lab.run(append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// ns creates a namespace with its loopback up and IP forwarding as asked.
func (lab *netnsLab) ns(name string, forward bool) string {
	lab.t.Helper()
	full := lab.prefix + "-" + name
	_ = exec.Command("ip", "netns", "del", full).Run() // left over from a killed run
	lab.run("ip", "netns", "add", full)
	lab.t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", full).CombinedOutput(); err != nil {
			lab.t.Errorf("removing namespace %s: %v %s", full, err, out)
		}
	})
	lab.in(full, "ip", "link", "set", "lo", "up")
	fwd := "0"
	if forward {
		fwd = "1"
	}
	lab.in(full, "sysctl", "-qw", "net.ipv4.ip_forward="+fwd)
	return full
}

// link joins two namespaces with a veth pair and gives each end an address
// (CIDR notation). Deleting a namespace deletes its end of the pair.
func (lab *netnsLab) link(nsA, addrA, nsB, addrB string) {
	lab.t.Helper()
	lab.links++
	a := fmt.Sprintf("%sa%d", lab.prefix, lab.links)
	b := fmt.Sprintf("%sb%d", lab.prefix, lab.links)
	lab.run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
	lab.run("ip", "link", "set", a, "netns", nsA)
	lab.run("ip", "link", "set", b, "netns", nsB)
	lab.in(nsA, "ip", "addr", "add", addrA, "dev", a)
	lab.in(nsB, "ip", "addr", "add", addrB, "dev", b)
	lab.in(nsA, "ip", "link", "set", a, "up")
	lab.in(nsB, "ip", "link", "set", b, "up")
}

// start runs a long-lived process in namespace ns, its output collected,
// and kills it when the test ends (before the namespaces go).
func (lab *netnsLab) start(ns string, env []string, args ...string) *lockedBuffer {
	lab.t.Helper()
	out, _ := lab.startStoppable(ns, env, args...)
	return out
}

// inNetns runs fn on an OS thread switched into namespace ns. Sockets made
// by fn stay in ns after the thread switches back, so a listener or a
// connection can be made there and used from anywhere in the test.
func inNetns(ns string, fn func() error) error {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer self.Close()
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so Go discards it with this goroutine
		// rather than reuse a thread in the wrong namespace.
		return fmt.Errorf("setns back: %w", err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// dialIn connects to addr from inside namespace ns.
func dialIn(ns, addr string) (net.Conn, error) {
	var conn net.Conn
	err := inNetns(ns, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	})
	return conn, err
}

// reply is what came back for one raw request.
type reply struct {
	closed bool // closed or reset without a response
	status int
	header http.Header
	body   string
}

// sendRaw writes raw bytes (PROXY headers, an HTTP request) on a new
// connection made from namespace ns and reads the response.
func sendRaw(t *testing.T, ns, addr string, raw string) reply {
	t.Helper()
	conn, err := dialIn(ns, addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, ns, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		return reply{closed: true}
	}
	all, err := io.ReadAll(conn)
	if len(all) == 0 {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s from %s: no answer and no close", addr, ns)
		}
		return reply{closed: true}
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(all)), nil)
	if err != nil {
		t.Fatalf("%s from %s: bad response %q: %v", addr, ns, all, err)
	}
	body, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// httpClientIn is an HTTP client whose connections are made from namespace
// ns to addr, whatever the URL says (so a URL can carry a host name for
// SNI and Host).
func httpClientIn(ns, addr string, tr *http.Transport) *http.Client {
	tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return dialIn(ns, addr) }
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

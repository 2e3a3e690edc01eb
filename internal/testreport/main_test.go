package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The report says each package as it finishes, each skip with its reason,
// and a failure's whole output, and exits 1 on a failure.
func TestReport(t *testing.T) {
	if os.Getenv("TESTREPORT_CHILD") == "1" {
		main()
		return
	}
	events := strings.Join([]string{
		`{"Action":"output","Package":"p/a","Test":"TestSkip","Output":"    a_test.go:9: needs root\n"}`,
		`{"Action":"skip","Package":"p/a","Test":"TestSkip","Elapsed":0}`,
		`{"Action":"pass","Package":"p/a","Elapsed":1.25}`,
		`{"Action":"output","Package":"p/b","Test":"TestBad","Output":"    b_test.go:3: boom\n"}`,
		`{"Action":"fail","Package":"p/b","Test":"TestBad","Elapsed":0.5}`,
		`{"Action":"fail","Package":"p/b","Elapsed":0.6}`,
		`# p/c`,
	}, "\n")
	cmd := exec.Command(os.Args[0], "-test.run=^TestReport$")
	cmd.Env = append(os.Environ(), "TESTREPORT_CHILD=1")
	cmd.Stdin = strings.NewReader(events)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit: %v, want status 1", err)
	}
	for _, want := range []string{"SKIP p/a TestSkip  a_test.go:9: needs root", "ok   p/a 1.2s", "--- FAIL p/b TestBad (0.5s)\n    b_test.go:3: boom", "FAIL p/b 0.6s", "# p/c"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

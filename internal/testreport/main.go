// Command testreport reads `go test -json` on standard input and prints
// what a person watching ./test.sh needs: each package as it finishes, with
// its time; every test that skipped, with its reason; and the whole output
// of every test that failed. It exits 1 if anything failed.
//
// go test prints a package's result only when every package listed before
// it has finished, so a long package (the end-to-end tests) would hide the
// others; test2json events arrive as they happen.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

func main() {
	output := map[string][]string{} // package/test → its output lines
	failed := false
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1024*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			// Build errors and anything else go test prints as text.
			fmt.Println(string(line))
			continue
		}
		key := e.Package + "/" + e.Test
		switch e.Action {
		case "output":
			output[key] = append(output[key], e.Output)
		case "skip":
			if e.Test != "" {
				reason := ""
				for _, l := range output[key] {
					if t := strings.TrimSpace(l); strings.Contains(l, ".go:") && !strings.HasPrefix(t, "---") {
						reason = t
					}
				}
				fmt.Printf("   SKIP %s %s  %s\n", e.Package, e.Test, reason)
			} else {
				fmt.Printf("   ok   %s (no tests)\n", e.Package)
			}
			delete(output, key)
		case "pass":
			if e.Test == "" {
				fmt.Printf("   ok   %s %.1fs\n", e.Package, e.Elapsed)
			}
			delete(output, key)
		case "fail":
			failed = true
			if e.Test != "" {
				fmt.Printf("--- FAIL %s %s (%.1fs)\n%s", e.Package, e.Test, e.Elapsed, strings.Join(output[key], ""))
			} else {
				fmt.Printf("   FAIL %s %.1fs\n%s", e.Package, e.Elapsed, strings.Join(output[key], ""))
			}
			delete(output, key)
		}
	}
	if failed {
		os.Exit(1)
	}
}

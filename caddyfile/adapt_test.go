package caddyfile_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-realip/realip"
	"github.com/caddy-realip/realip/internal/configtest"
)

var update = flag.Bool("update", false, "rewrite the golden JSON files in testdata/caddyfile/adapt")

func adapt(t *testing.T, body []byte) ([]byte, []caddyconfig.Warning, error) {
	t.Helper()
	return caddyconfig.GetAdapter("caddyfile").Adapt(body, map[string]any{"filename": "Caddyfile"})
}

// TestAdaptGolden adapts every testdata/caddyfile/adapt/*.caddyfile and
// compares the JSON with the .json file beside it; then it loads that JSON
// the way the admin API's /load does (provisioning every module) to prove
// the adapted config is valid.
func TestAdaptGolden(t *testing.T) {
	files, _ := filepath.Glob("../testdata/caddyfile/adapt/*.caddyfile")
	if len(files) < 5 {
		t.Fatalf("only %d golden cases found", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			body, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			out, warnings, err := adapt(t, body)
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			for _, w := range warnings {
				t.Errorf("warning: %s", w)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, out, "", "\t"); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			golden := strings.TrimSuffix(file, ".caddyfile") + ".json"
			if *update {
				if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./caddyfile -update to create it)", err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Errorf("adapted JSON differs from %s:\n%s", golden, pretty.String())
			}
			if err := configtest.Validate(t, out); err != nil {
				t.Errorf("adapted config does not load: %v", err)
			}
		})
	}
}

// TestAdaptErrors checks that each bad Caddyfile in
// testdata/caddyfile/errors fails with the message on its first line
// ("# error: ..."), which names the token and the line.
func TestAdaptErrors(t *testing.T) {
	// Some cases stand for a forgotten environment variable.
	os.Unsetenv("REALIP_TEST_UNSET")
	files, _ := filepath.Glob("../testdata/caddyfile/errors/*.caddyfile")
	if len(files) < 8 {
		t.Fatalf("only %d error cases found", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			body, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(body), "\n")
			want, ok := strings.CutPrefix(first, "# error: ")
			if !ok {
				t.Fatalf("first line must be '# error: <expected message>'")
			}
			out, _, err := adapt(t, body)
			if err == nil {
				// Some errors only show when the modules are provisioned,
				// as on caddy run or a POST to /load.
				err = configtest.Validate(t, out)
			}
			if err == nil {
				t.Fatalf("no error; adapted to %s", out)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q\ndoes not contain %q", err, want)
			}
		})
	}
}

// Package configtest loads Caddy configs in tests the way caddy run and the
// admin API's POST /load do (every module provisioned), without binding the
// admin endpoint or writing to the user's storage. Only tests import it.
package configtest

import (
	"encoding/json"
	"testing"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage" // the storage Validate sets
)

// Validate provisions the JSON config js, with the admin endpoint off and
// storage in a temporary folder of t's, and returns what caddy run would
// fail with.
func Validate(t testing.TB, js []byte) error {
	t.Helper()
	var cfg caddy.Config
	if err := json.Unmarshal(js, &cfg); err != nil {
		return err
	}
	cfg.Admin = &caddy.AdminConfig{Disabled: true}
	cfg.StorageRaw, _ = json.Marshal(map[string]string{"module": "file_system", "root": t.TempDir()})
	return caddy.Validate(&cfg)
}

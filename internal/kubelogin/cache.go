package kubelogin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// entry is what the cache keeps for one issuer, client and organization. Never a client secret.
type entry struct {
	Issuer       string `json:"issuer"`
	ClientID     string `json:"client_id"`
	Organization string `json:"organization,omitempty"`
	IDToken      string `json:"id_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// usable answers the cached ID token's credential when it is for o and valid for more than
// minValidity after now. It was verified before it was cached, and the cache is the person's own
// file, so it is not verified again (which would take the network).
func (e entry) usable(o Options, now time.Time) (Credential, bool) {
	if e.IDToken == "" || e.Issuer != o.Issuer || e.ClientID != o.ClientID || e.Organization != o.Organization {
		return Credential{}, false
	}
	c, err := parseUnverified(e.IDToken)
	if err != nil || c.Issuer != o.Issuer || !slices.Contains(c.Audience, o.ClientID) || c.ExpiresAt == nil ||
		c.ExpiresAt.Sub(now) <= minValidity {
		return Credential{}, false
	}
	return c.credential(e.IDToken), true
}

// cache is the file of one issuer, client and organization; a cache without a path keeps nothing.
type cache struct{ path string }

func cacheOf(o Options) cache {
	if o.CacheDir == "" {
		return cache{}
	}
	sum := sha256.Sum256([]byte(o.Issuer + "|" + o.ClientID + "|" + o.Organization))
	return cache{path: filepath.Join(o.CacheDir, hex.EncodeToString(sum[:])+".json")}
}

// read answers the cached entry; a missing file is an empty entry.
func (c cache) read() (entry, error) {
	var e entry
	if c.path == "" {
		return e, nil
	}
	b, err := os.ReadFile(c.path)
	if errors.Is(err, fs.ErrNotExist) {
		return e, nil
	}
	if err != nil {
		return e, err
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return entry{}, fmt.Errorf("%s is not a token cache file: %w", c.path, err)
	}
	return e, nil
}

// write replaces the file at once (a rename), so that a reader never sees half of it. Both the
// directory (0700) and the file (0600) are the person's alone.
func (c cache) write(e entry) error {
	if c.path == "" {
		return nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := c.mkdir(); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(c.path), ".token-*.tmp") // mode 0600
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(f.Name()) }() // gone after the rename; removed on failure
	_, err = f.Write(b)
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), c.path)
}

func (c cache) remove() error {
	if c.path == "" {
		return nil
	}
	if err := os.Remove(c.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the token cache: %w", err)
	}
	return nil
}

func (c cache) mkdir() error {
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return fmt.Errorf("creating the token cache directory: %w", err)
	}
	return nil
}

// lock holds the cache's lock file until the returned function is called; waiting is called once
// when another process holds it.
func (c cache) lock(ctx context.Context, waiting func()) (func(), error) {
	if c.path == "" {
		return func() {}, nil
	}
	if err := c.mkdir(); err != nil {
		return nil, err
	}
	unlock, err := lockFile(ctx, c.path+".lock", waiting)
	if err != nil {
		return nil, fmt.Errorf("locking the token cache: %w", err)
	}
	return unlock, nil
}

package tctx

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Context is who is asking, in which organization and project, until when.
type Context struct {
	UserID    string
	APIKeyID  string
	OrgID     string
	ProjectID string
	Expires   time.Time
}

// Key is one context key of tenancy.context_keys.
type Key struct {
	ID     string
	Secret []byte
}

// Sign encodes c and signs it with key.
func Sign(key Key, c Context) (string, error) {
	if (c.UserID == "") == (c.APIKeyID == "") {
		return "", errors.New("tctx: exactly one of UserID and APIKeyID must be set")
	}
	if c.OrgID == "" && c.ProjectID != "" {
		return "", errors.New("tctx: a project needs its organization")
	}
	if strings.Contains(key.ID, ".") || key.ID == "" {
		return "", errors.New("tctx: invalid key id")
	}
	payload := strings.Join([]string{"v1", key.ID, c.UserID, c.APIKeyID, c.OrgID, c.ProjectID,
		strconv.FormatInt(c.Expires.Unix(), 10)}, ".")
	mac := hmac.New(sha256.New, key.Secret)
	mac.Write([]byte(payload))
	return payload + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}

package authd

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// PasswordParams are argon2id's cost parameters; they are stored with each hash, so raising them
// later leaves old hashes verifiable (and they are rehashed at the next login).
type PasswordParams struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// OWASPParams are OWASP's minimum for argon2id: 19 MiB, 2 passes, 1 lane.
var OWASPParams = PasswordParams{MemoryKiB: 19 * 1024, Time: 2, Threads: 1}

const (
	saltLength = 16
	hashLength = 32
	// MinPasswordLength is the shortest password accepted (NIST SP 800-63B's minimum is 8; we ask
	// for more since there is no second factor).
	MinPasswordLength = 12
	// maxPasswordLength bounds the work an attacker can ask of argon2 per request.
	maxPasswordLength = 1024
)

// HashPassword hashes password with p into a PHC string:
// $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>.
func HashPassword(password string, p PasswordParams) (string, error) {
	salt := make([]byte, saltLength)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	hash := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, hashLength)
	b64 := base64.RawStdEncoding.EncodeToString
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads, b64(salt), b64(hash)), nil
}

// VerifyPassword reports whether password matches the PHC string encoded, in constant time, and
// whether the hash's parameters are below want (so it should be rehashed).
func VerifyPassword(password, encoded string, want PasswordParams) (ok, outdated bool, err error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false, false, errors.New("not an argon2id hash")
	}
	var p PasswordParams
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil {
		return false, false, fmt.Errorf("argon2id parameters: %w", err)
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false, false, err
	}
	hash, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(hash) == 0 {
		return false, false, errors.New("malformed argon2id hash")
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(hash)))
	outdated = p.MemoryKiB < want.MemoryKiB || p.Time < want.Time || p.Threads < want.Threads
	return subtle.ConstantTimeCompare(got, hash) == 1, outdated, nil
}

// checkNewPassword refuses a password too short or too long to accept.
func checkNewPassword(password string) error {
	switch n := len([]rune(password)); {
	case n < MinPasswordLength:
		return fmt.Errorf("password: must be at least %d characters", MinPasswordLength)
	case len(password) > maxPasswordLength:
		return fmt.Errorf("password: must be at most %d bytes", maxPasswordLength)
	}
	return nil
}

// verifyPassword and hashPassword run argon2id at most once per core at a time: more at once
// only adds memory (19 MiB each) and garbage collection, not throughput.
func (s *Server) verifyPassword(password, hash string) (ok, outdated bool, err error) {
	s.hashing <- struct{}{}
	defer func() { <-s.hashing }()
	return VerifyPassword(password, hash, s.cfg.Passwords)
}

func (s *Server) hashPassword(password string) (string, error) {
	s.hashing <- struct{}{}
	defer func() { <-s.hashing }()
	return HashPassword(password, s.cfg.Passwords)
}

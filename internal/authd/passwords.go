package authd

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
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

// maxBcryptCost bounds the work an imported bcrypt hash may ask for at each sign-in: cost 15 is
// about two seconds of a core, and every cost above doubles it.
const maxBcryptCost = 15

// bcryptPasswordLength is the part of a password bcrypt reads: the systems whose hashes are
// imported cut longer passwords there, so the same cut finds the same hash.
const bcryptPasswordLength = 72

// VerifyPassword reports whether password matches encoded, in constant time, and whether it
// should be rehashed: encoded is an argon2id PHC string (outdated when its parameters are below
// want) or a bcrypt hash imported from another system ($2a$, $2b$, $2y$; always outdated, so the
// next sign-in stores argon2id instead).
func VerifyPassword(password, encoded string, want PasswordParams) (ok, outdated bool, err error) {
	if IsBcryptHash(encoded) {
		return verifyBcrypt(password, encoded)
	}
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

// IsBcryptHash reports whether encoded looks like a bcrypt hash (the modular crypt format of
// OpenBSD's bcrypt, as PHP, Node's bcrypt, Python's passlib and Go's x/crypto write it).
func IsBcryptHash(encoded string) bool {
	return len(encoded) == 60 && (strings.HasPrefix(encoded, "$2a$") || strings.HasPrefix(encoded, "$2b$") || strings.HasPrefix(encoded, "$2y$"))
}

// CheckBcryptHash says why an imported bcrypt hash cannot be used, or nil.
func CheckBcryptHash(encoded string) error {
	cost, err := bcrypt.Cost([]byte(encoded))
	if err != nil {
		return fmt.Errorf("malformed bcrypt hash: %w", err)
	}
	if cost > maxBcryptCost {
		return fmt.Errorf("bcrypt cost %d is above %d, too slow to check at each sign-in", cost, maxBcryptCost)
	}
	return nil
}

func verifyBcrypt(password, encoded string) (ok, outdated bool, err error) {
	if err := CheckBcryptHash(encoded); err != nil {
		return false, false, err
	}
	if len(password) > bcryptPasswordLength {
		password = password[:bcryptPasswordLength]
	}
	err = bcrypt.CompareHashAndPassword([]byte(encoded), []byte(password))
	if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		return false, true, nil
	}
	return err == nil, true, err
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

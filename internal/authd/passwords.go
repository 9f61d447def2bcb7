package authd

import (
	"context"
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

// maxBcryptCost bounds the work an imported bcrypt hash may ask for at each sign-in: cost 12,
// the default of Laravel, Django and Rails, is about 200 ms of a core, and each cost above
// doubles it (and the time an attacker may make a core spend per guess).
const maxBcryptCost = 12

// Bounds of an argon2id hash's parameters: imported hashes choose their own, and each check
// pays them. They admit OWASP's and the usual libraries' defaults (passlib and argon2-cffi:
// 64 MiB, 3 passes, 4 lanes; libsodium's moderate: 256 MiB is above, and is reported).
const (
	maxArgon2MemoryKiB = 128 * 1024
	maxArgon2Time      = 10
	maxArgon2Threads   = 16
	minArgon2HashBytes = 16
	maxArgon2HashBytes = 64
)

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
	p, salt, hash, err := parseArgon2(encoded)
	if err != nil {
		return false, false, err
	}
	ok, outdated = verifyArgon2(password, p, salt, hash, want)
	return ok, outdated, nil
}

// verifyArgon2 checks password against a parsed argon2id hash.
func verifyArgon2(password string, p PasswordParams, salt, hash []byte, want PasswordParams) (ok, outdated bool) {
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(hash)))
	outdated = p.MemoryKiB < want.MemoryKiB || p.Time < want.Time || p.Threads < want.Threads
	return subtle.ConstantTimeCompare(got, hash) == 1, outdated
}

// parseArgon2 reads an argon2id PHC string whose parameters are within the bounds above.
func parseArgon2(encoded string) (p PasswordParams, salt, hash []byte, err error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, errors.New("not an argon2id hash")
	}
	if parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return p, nil, nil, fmt.Errorf("argon2id version %s: only v=%d is supported", parts[2], argon2.Version)
	}
	var extra string
	if n, _ := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d%s", &p.MemoryKiB, &p.Time, &p.Threads, &extra); n != 3 {
		return p, nil, nil, errors.New("malformed argon2id parameters")
	}
	switch {
	case p.Threads < 1 || p.Threads > maxArgon2Threads:
		return p, nil, nil, fmt.Errorf("argon2id lanes %d are outside 1 to %d", p.Threads, maxArgon2Threads)
	case p.Time < 1 || p.Time > maxArgon2Time:
		return p, nil, nil, fmt.Errorf("argon2id passes %d are outside 1 to %d", p.Time, maxArgon2Time)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxArgon2MemoryKiB:
		return p, nil, nil, fmt.Errorf("argon2id memory %d KiB is outside 8 KiB per lane to %d KiB", p.MemoryKiB, maxArgon2MemoryKiB)
	}
	if salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, errors.New("malformed argon2id salt")
	}
	hash, err = base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(hash) < minArgon2HashBytes || len(hash) > maxArgon2HashBytes {
		return p, nil, nil, errors.New("malformed argon2id hash")
	}
	return p, salt, hash, nil
}

// CheckArgon2Hash says why an argon2id hash (one imported from another system) cannot be used,
// or nil.
func CheckArgon2Hash(encoded string) error {
	_, _, _, err := parseArgon2(encoded)
	return err
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

// hashMemoryBudgetKiB bounds the memory that the argon2id hashes running at once may take
// together: an imported hash may ask for up to maxArgon2MemoryKiB, and authd runs within a
// memory limit of its own (512Mi in config/authd).
const hashMemoryBudgetKiB = maxArgon2MemoryKiB

// verifyPassword and hashPassword run a hash at most once per core at a time (more at once only
// adds memory and garbage collection, not throughput), and argon2id hashes within
// hashMemoryBudgetKiB together, so that wrong passwords against imported accounts with costly
// hashes cannot run authd out of memory.
func (s *Server) verifyPassword(password, encoded string) (ok, outdated bool, err error) {
	if IsBcryptHash(encoded) {
		defer s.holdHashing(0)()
		return verifyBcrypt(password, encoded)
	}
	p, salt, hash, err := parseArgon2(encoded)
	if err != nil {
		return false, false, err
	}
	defer s.holdHashing(int64(p.MemoryKiB))()
	ok, outdated = verifyArgon2(password, p, salt, hash, s.cfg.Passwords)
	return ok, outdated, nil
}

func (s *Server) hashPassword(password string) (string, error) {
	defer s.holdHashing(int64(s.cfg.Passwords.MemoryKiB))()
	return HashPassword(password, s.cfg.Passwords)
}

// holdHashing waits for a core and memoryKiB of the budget, and answers the release.
func (s *Server) holdHashing(memoryKiB int64) func() {
	memoryKiB = min(memoryKiB, hashMemoryBudgetKiB)
	s.hashing <- struct{}{}
	_ = s.hashMemory.Acquire(context.Background(), memoryKiB) // never fails without a deadline
	return func() {
		s.hashMemory.Release(memoryKiB)
		<-s.hashing
	}
}

package authd

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestPasswords(t *testing.T) {
	weak := PasswordParams{MemoryKiB: 8 * 1024, Time: 1, Threads: 1}
	hash, err := HashPassword("correct horse battery staple", weak)
	if err != nil {
		t.Fatal(err)
	}
	ok, outdated, err := VerifyPassword("correct horse battery staple", hash, OWASPParams)
	if err != nil || !ok || !outdated {
		t.Fatalf("a weaker hash verifies and asks for a rehash: ok %t outdated %t err %v", ok, outdated, err)
	}
	if ok, _, _ := VerifyPassword("wrong", hash, OWASPParams); ok {
		t.Fatal("a wrong password verifies")
	}
	if _, _, err := VerifyPassword("x", "$1$md5crypt$abcdefghijklmnopqrstuv", OWASPParams); err == nil {
		t.Fatal("a hash of another scheme is refused")
	}
	if checkNewPassword("short") == nil || checkNewPassword("a long enough password") != nil {
		t.Fatal("new passwords need 12 characters")
	}
}

// TestImportedBcryptHashes: hashes imported from another system verify and always ask to be
// rehashed to argon2id, whichever bcrypt variant wrote them.
func TestImportedBcryptHashes(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("old system password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, variant := range []string{"$2a$", "$2b$", "$2y$"} {
		encoded := variant + string(hash[4:]) // PHP writes $2y$, Node and passlib $2b$: the same hash
		if !IsBcryptHash(encoded) {
			t.Fatalf("%s is not taken for bcrypt", encoded)
		}
		ok, outdated, err := VerifyPassword("old system password", encoded, OWASPParams)
		if err != nil || !ok || !outdated {
			t.Fatalf("%s: the right password: ok %t outdated %t err %v, want ok and outdated", variant, ok, outdated, err)
		}
		ok, outdated, err = VerifyPassword("Old system password", encoded, OWASPParams)
		if err != nil || ok || !outdated {
			t.Fatalf("%s: a wrong password: ok %t outdated %t err %v, want refused without error", variant, ok, outdated, err)
		}
	}

	// bcrypt reads 72 bytes; the old system cut longer passwords there, and so does the check.
	long := strings.Repeat("p", 72)
	longHash, err := bcrypt.GenerateFromPassword([]byte(long), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := VerifyPassword(long+"tail", string(longHash), OWASPParams); err != nil || !ok {
		t.Fatalf("a password longer than 72 bytes: ok %t err %v", ok, err)
	}

	// A cost no sign-in should pay is refused, not computed (cost 31 is days of a core).
	costly := "$2b$31$" + string(hash[7:])
	if ok, _, err := VerifyPassword("old system password", costly, OWASPParams); err == nil || ok {
		t.Fatalf("cost 31: ok %t err %v, want an error", ok, err)
	}
	if err := CheckBcryptHash(costly); err == nil || !strings.Contains(err.Error(), "cost 31") {
		t.Fatalf("CheckBcryptHash(cost 31) = %v", err)
	}
	if IsBcryptHash("$2b$10$short") {
		t.Fatal("a truncated hash is taken for bcrypt")
	}
}

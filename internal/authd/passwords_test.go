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

	// A cost no sign-in should pay is refused, not computed (cost 31 is days of a core, 13 is
	// already 400 ms).
	if err := CheckBcryptHash("$2b$13$" + string(hash[7:])); err == nil {
		t.Fatal("cost 13 is accepted")
	}
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

// TestArgon2Bounds: the parameters an imported argon2id hash asks for are bounded, since every
// check pays them.
func TestArgon2Bounds(t *testing.T) {
	good, err := HashPassword("a password", PasswordParams{MemoryKiB: 1024, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$")
	with := func(version, params string) string {
		return strings.Join([]string{"", "argon2id", version, params, parts[4], parts[5]}, "$")
	}
	if err := CheckArgon2Hash(good); err != nil {
		t.Fatalf("a hash of our own: %v", err)
	}
	for _, tc := range []struct{ name, hash, want string }{
		{"passes that cost seconds", with("v=19", "m=1024,t=400,p=1"), "passes 400"},
		{"no pass at all (argon2 panics)", with("v=19", "m=1024,t=0,p=1"), "passes 0"},
		{"gigabytes of memory", with("v=19", "m=4194304,t=1,p=1"), "memory 4194304"},
		{"lanes without end", with("v=19", "m=1024,t=1,p=255"), "lanes 255"},
		{"another version", with("v=16", "m=1024,t=1,p=1"), "version v=16"},
		{"trailing parameters", with("v=19", "m=1024,t=1,p=1,x=2"), "malformed"},
		{"a short hash", strings.Join([]string{"", "argon2id", "v=19", "m=1024,t=1,p=1", parts[4], "AAAA"}, "$"), "malformed argon2id hash"},
	} {
		if err := CheckArgon2Hash(tc.hash); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
		if ok, _, err := VerifyPassword("a password", tc.hash, OWASPParams); ok || err == nil {
			t.Errorf("%s: VerifyPassword ok=%t err=%v, want refused", tc.name, ok, err)
		}
	}
}

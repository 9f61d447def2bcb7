package authd

import "testing"

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
	if _, _, err := VerifyPassword("x", "$2a$10$bcrypt", OWASPParams); err == nil {
		t.Fatal("a hash of another scheme is refused")
	}
	if checkNewPassword("short") == nil || checkNewPassword("a long enough password") != nil {
		t.Fatal("new passwords need 12 characters")
	}
}

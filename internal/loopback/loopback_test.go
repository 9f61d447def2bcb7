package loopback

import "testing"

func TestHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "127.0.0.1": true, "127.3.4.5": true, "::1": true,
		"localhost.example.com": false, "10.0.0.1": false, "::": false, "": false, "LOCALHOST.": false,
	} {
		if got := Host(host); got != want {
			t.Errorf("Host(%q) = %t, want %t", host, got, want)
		}
	}
}

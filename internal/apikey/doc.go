// Package apikey makes and checks Tenancy API keys: tnc_<key id>_<secret><checksum>.
//
// The key id (12 base62 characters) is public: it names the key in logs, in status and as the
// OAuth2 client_id. The secret is 256 random bits in 43 base62 characters. The checksum, 6 base62
// characters of the CRC-32 of everything before it, lets secret scanners tell real keys from
// look-alikes without a database (the scheme GitHub's tokens use). Only SHA-256(key) is stored.
package apikey

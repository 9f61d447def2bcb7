// Package signing holds the keys that sign access tokens: the set the manager keeps in the Secret
// tenancy-signing-keys and rotates, which key signs at a given moment, and the JWKS that publishes
// them. A new key is published before it signs, and a replaced key stays published until every
// token it signed has expired.
package signing

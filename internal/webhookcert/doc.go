// Package webhookcert serves the admission webhooks without cert-manager (manager flag
// --webhook-self-signed, used by `make dev` and by config/self-signed): it makes a private CA and
// a serving certificate, keeps both in one Secret in the operator's namespace so that every
// replica serves the same pair, renews the pair before it expires, and keeps the CA in the
// webhook configurations' caBundle.
package webhookcert

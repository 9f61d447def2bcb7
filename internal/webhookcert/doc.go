// Package webhookcert serves the admission webhooks without cert-manager: it makes a private CA
// and a serving certificate, and keeps that CA in the webhook configurations' caBundle. It is
// what `make dev` uses (manager flag --webhook-self-signed); real clusters use cert-manager
// (config/certmanager). Each replica would make its own CA, so run one replica in this mode.
package webhookcert

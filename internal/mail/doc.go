// Package mail sends the mail of authd and the manager: invitations, address verification,
// password resets and account notices. Mail is written to the outbox table in the transaction
// that decides to send it (Enqueue) and delivered afterwards over SMTP by a Dispatcher, with
// retries, so that a crash or a slow mail server loses nothing and blocks no request.
package mail

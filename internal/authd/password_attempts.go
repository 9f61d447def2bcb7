package authd

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/tenancy-dev/tenancy/internal/db"
)

// Password attempts (logins, password changes, invitations accepted with a password) are
// throttled per client address and slowed down per account, and checked at the same cost
// whether the account exists or not.

// throttleAddress takes an attempt for the client address; when it has none left it sets
// Retry-After and returns the refusal.
func (s *Server) throttleAddress(w http.ResponseWriter, r *http.Request) error {
	if ok, wait := s.addresses.allow(s.clientOf(r).Address); !ok {
		return slowDown(w, wait)
	}
	return nil
}

// throttled answers 429 when the client address has no attempt left.
func (s *Server) throttled(w http.ResponseWriter, r *http.Request) bool {
	if err := s.throttleAddress(w, r); err != nil {
		s.answerError(w, r, err)
		return true
	}
	return false
}

// beginPasswordAttempt decides whether a password of account may be tried now (the caller has
// taken the client address's attempt): the account's failures from this address, and from
// everywhere unless the account signed in from this address recently, must not ask for a wait.
// Every attempt it lets through ends with endPasswordAttempt.
func (s *Server) beginPasswordAttempt(w http.ResponseWriter, r *http.Request, account string) error {
	address, now := s.clientOf(r).Address, time.Now()
	if wait := s.pairs.wait(pairKey(account, address), now); wait > 0 {
		return slowDown(w, wait)
	}
	if wait := s.accounts.wait(account, now); wait > 0 {
		familiar, err := s.store.familiarAddress(r.Context(), account, address, s.cfg.Throttle.FamiliarFor)
		if err != nil {
			return err
		}
		if !familiar {
			return slowDown(w, wait)
		}
	}
	return nil
}

// endPasswordAttempt counts a failed attempt, or forgets this address's failures after a
// success (the account's count from everywhere stays, so that the owner signing in does not
// give a guesser fresh attempts).
func (s *Server) endPasswordAttempt(r *http.Request, account string, ok bool) {
	pair, now := pairKey(account, s.clientOf(r).Address), time.Now()
	if ok {
		s.pairs.succeed(pair)
		return
	}
	s.pairs.fail(pair, now)
	s.accounts.fail(account, now)
}

// pairKey is what an account's failures from one address are counted under.
func pairKey(account, address string) string { return account + "\x00" + address }

// slowDown is the refusal of a throttled attempt, with its Retry-After.
func slowDown(w http.ResponseWriter, wait time.Duration) error {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
	return &problem{Status: http.StatusTooManyRequests, Code: "slow_down",
		Message: fmt.Sprintf("too many attempts; retry in %d seconds", retryAfterSeconds(wait))}
}

// authenticate checks an email and password. Unknown users, users without a password and
// disabled users cost one argon2id hash too, and get the same answer as a wrong password.
func (s *Server) authenticate(ctx context.Context, email, password string) (user, bool, error) {
	u, found, err := s.store.userByEmail(ctx, email)
	if err != nil {
		return user{}, false, err
	}
	hash := s.dummyHash
	if found && u.PasswordHash != nil && !u.Disabled {
		hash = *u.PasswordHash
	}
	ok, outdated, err := s.verifyPassword(password, hash)
	if err != nil || !ok || hash == s.dummyHash {
		return user{}, false, nil
	}
	if outdated {
		if rehashed, err := s.hashPassword(password); err == nil {
			if err := s.store.rehashPassword(ctx, u.ID, hash, rehashed); err != nil {
				s.log.Error(err, "Rehashing a password with the current parameters", "user", u.ID)
			}
		}
	}
	return u, true, nil
}

// checkPassword checks a login's email and password for the API and the login page: throttled
// (beginPasswordAttempt; 429 with Retry-After), the same answer for an unknown user and a wrong
// password, failures audited.
func (s *Server) checkPassword(w http.ResponseWriter, r *http.Request, email, password string) (user, error) {
	email = db.NormalizeEmail(email)
	if email == "" || password == "" {
		return user{}, &problem{Status: http.StatusBadRequest, Code: "invalid_request", Message: "email and password are required"}
	}
	err := s.throttleAddress(w, r)
	if err == nil {
		err = s.beginPasswordAttempt(w, r, email)
	}
	if err != nil {
		s.metrics.logins.WithLabelValues("throttled").Inc()
		return user{}, err
	}
	password = truncate(password, maxPasswordLength) // hash the same bounded work; it cannot match
	u, ok, err := s.authenticate(r.Context(), email, password)
	if err != nil {
		return user{}, err
	}
	s.endPasswordAttempt(r, email, ok)
	if !ok {
		s.metrics.logins.WithLabelValues("failed").Inc()
		s.audit(r, auditEntry{Actor: email, Action: "login.failed", Target: "user/" + email})
		return user{}, &problem{Status: http.StatusUnauthorized, Code: "invalid_credentials", Message: "the email or the password is wrong"}
	}
	return u, nil
}

package authd

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// TestActivateOwnerRefusesAnAccountThatGotAPassword: between signup's check that the email is
// new and its activation of the Owner, somebody else may have set the account's password (an
// invitation accepted meanwhile). The activation must then fail rather than hand the signup a
// session of that account.
func TestActivateOwnerRefusesAnAccountThatGotAPassword(t *testing.T) {
	testenv.SkipIfShort(t, "PostgreSQL")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	database, err := testenv.NewDatabase(ctx, "signup")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = database.Drop(context.Background()) }()
	pool, err := pgxpool.New(ctx, database.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := db.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	store, err := OpenStore(ctx, database.URL, "tenancy_authd")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	setUp := func(email, membershipUID string) {
		t.Helper()
		_, err := pool.Exec(ctx, `
			WITH o AS (INSERT INTO tenancy.organizations (uid, name, tier, namespace)
			           VALUES (gen_random_uuid(), $1, 'Free', $1) RETURNING id),
			     u AS (INSERT INTO tenancy.users (email) VALUES ($2) RETURNING id)
			INSERT INTO tenancy.memberships (uid, organization_id, user_id, role) SELECT $3, o.id, u.id, 'Owner' FROM o, u`,
			membershipUID, email, membershipUID)
		if err != nil {
			t.Fatal(err)
		}
	}
	state := func(email string) (hash *string, membership string) {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT u.password_hash, m.state::text FROM tenancy.users u JOIN tenancy.memberships m ON m.user_id = u.id
			WHERE u.email = $1`, email).Scan(&hash, &membership); err != nil {
			t.Fatal(err)
		}
		return hash, membership
	}

	setUp("new@example.com", "00000000-0000-4000-8000-000000000001")
	u, err := store.activateOwner(ctx, "new@example.com", "signup-hash", "00000000-0000-4000-8000-000000000001")
	if err != nil || u.ID == "" {
		t.Fatalf("a new account is activated: %+v %v", u, err)
	}
	if hash, membership := state("new@example.com"); *hash != "signup-hash" || membership != "Active" {
		t.Fatalf("the signup's password and an Active Owner: %v %s", *hash, membership)
	}

	setUp("raced@example.com", "00000000-0000-4000-8000-000000000002")
	if _, err := pool.Exec(ctx, "UPDATE tenancy.users SET password_hash = 'the invitee-hash' WHERE email = 'raced@example.com'"); err != nil {
		t.Fatal(err)
	}
	_, err = store.activateOwner(ctx, "raced@example.com", "signup-hash", "00000000-0000-4000-8000-000000000002")
	if !errors.Is(err, errEmailTaken) {
		t.Fatalf("activateOwner() = %v, want errEmailTaken", err)
	}
	if hash, membership := state("raced@example.com"); *hash != "the invitee-hash" || membership != "Invited" {
		t.Fatalf("the account is left as it was: %s %s", *hash, membership)
	}
}

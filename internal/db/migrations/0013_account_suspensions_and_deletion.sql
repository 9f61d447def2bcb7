-- Disabling and deleting accounts.

-- One row per AccountSuspension (cluster-scoped). users.disabled is true while any row names the
-- user's address; an account created later with a suspended address starts disabled.
CREATE TABLE tenancy.account_suspensions (
    uid        uuid PRIMARY KEY,                -- metadata.uid of the AccountSuspension
    name       text NOT NULL,
    email      citext NOT NULL CHECK (email = lower(btrim(email::text))),
    reason     text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_suspensions_email_idx ON tenancy.account_suspensions (email);

-- A SECURITY DEFINER trigger, so that authd (which creates users at signup and invitation)
-- needs no access to the suspensions.
CREATE FUNCTION tenancy.users_start_suspended() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, tenancy
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM tenancy.account_suspensions s WHERE s.email = NEW.email) THEN
        NEW.disabled := true;
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION tenancy.users_start_suspended() FROM PUBLIC;
CREATE TRIGGER users_start_suspended BEFORE INSERT ON tenancy.users
    FOR EACH ROW EXECUTE FUNCTION tenancy.users_start_suspended();

-- When the person (or a platform admin) asked for the account to be deleted. The account is
-- disabled at once; the manager deletes its Membership objects and, once their rows are gone,
-- erases the user row and pseudonymises the audit log (docs/auth.md, "Deleting an account").
ALTER TABLE tenancy.users ADD COLUMN deletion_requested_at timestamptz;
CREATE INDEX users_deletion_requested_idx ON tenancy.users (deletion_requested_at) WHERE deletion_requested_at IS NOT NULL;

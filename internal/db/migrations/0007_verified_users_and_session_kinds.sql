-- Verified email addresses, and refresh tokens that tell a browser's session from an API client's.

-- When the user's email was proven to belong to them: by a token that reached the mailbox and
-- nobody else (an emailed link), or by a platform admin's say-so. A password set through a link
-- that others could read (a link-delivered invitation) leaves it NULL. Only a verified user's
-- new memberships are Active without their own invitation. Existing users start unverified:
-- nothing recorded how their passwords were set.
ALTER TABLE tenancy.users ADD COLUMN email_verified_at timestamptz;

-- A browser's session (the cookie of the web pages) is used without rotation and is never
-- accepted by /auth/refresh; an API session rotates at every refresh.
ALTER TABLE tenancy.refresh_tokens ADD COLUMN web boolean NOT NULL DEFAULT false;
-- A rotated token presented again within the reuse interval, by the client that rotated it, is
-- accepted once more (a retried request whose answer was lost); the second time revokes the
-- family. reused_at records that one accepted reuse.
ALTER TABLE tenancy.refresh_tokens ADD COLUMN reused_at timestamptz;
-- The throttle asks whether an address is one the account signed in from before.
CREATE INDEX refresh_tokens_user_address_idx ON tenancy.refresh_tokens (user_id, client_address, created_at DESC);

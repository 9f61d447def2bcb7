-- authd's signup undoes itself when the new organization is not ready in time: it may delete a
-- user row that has neither a password nor a membership (the row the Membership controller made).
GRANT DELETE ON tenancy.users TO tenancy_authd;

-- What the validating webhook admitted and the API server may not have shown to every replica's
-- cache yet: removals and demotions of organization-wide Owners (so that two replicas cannot each
-- admit the removal of one of the last two Owners) and deletions (so that the controller that
-- cleans up after a deletion can name who asked for it in audit_log). Only the manager reads or
-- writes it.
CREATE TABLE tenancy.admission_records (
    object_uid    uuid PRIMARY KEY,
    namespace     text NOT NULL,              -- the organization's namespace; '' for cluster-scoped objects
    target        text NOT NULL,
    requested_by  text NOT NULL,
    deletion      boolean NOT NULL,
    owner_removal boolean NOT NULL,
    admitted_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX admission_records_owner_removals ON tenancy.admission_records (namespace, admitted_at)
    WHERE owner_removal;
CREATE INDEX admission_records_admitted_at ON tenancy.admission_records (admitted_at);
ALTER TABLE tenancy.admission_records ENABLE ROW LEVEL SECURITY;

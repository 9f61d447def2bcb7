package main

import (
	"slices"
	"testing"
	"time"

	"github.com/tenancy-dev/tenancy/internal/signing"
)

func TestOperatorPartsFollowTheFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"--database-url=x", "--namespace=ops", "--username-prefix=oidc:",
		"--max-concurrent-reconciles=3", "--signing-key-algorithm=ES256", "--signing-key-rotation=48h",
		"--platform-admin-users=root@example.com"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}

	parts := operatorParts(cfg)

	c := parts.Controllers
	if c == nil || c.OperatorNamespace != "ops" || c.UsernamePrefix != "oidc:" || c.Options.MaxConcurrentReconciles != 3 ||
		c.ResyncPeriod != 10*time.Minute || c.InvitationTTL != 7*24*time.Hour || c.APIKeyRotationGrace != 24*time.Hour {
		t.Errorf("controllers %+v do not follow the flags", c)
	}
	w := parts.Webhooks
	if w == nil || w.OperatorNamespace != "ops" || w.UsernamePrefix != "oidc:" ||
		!slices.Equal(w.PlatformAdminUsers, []string{"root@example.com"}) || !slices.Equal(w.PlatformAdminGroups, []string{"system:masters"}) {
		t.Errorf("webhooks %+v do not follow the flags", w)
	}
	wantKeys := signing.Policy{Algorithm: signing.ES256, RotateEvery: 48 * time.Hour, PublishAhead: signingKeyLead}
	if k := parts.SigningKeys; k == nil || k.Namespace != "ops" || k.Policy != wantKeys {
		t.Errorf("signing keys %+v, want the Secret in ops with policy %+v", k, wantKeys)
	}

	cfg.enableWebhooks = false
	if parts := operatorParts(cfg); parts.Webhooks != nil || parts.Controllers == nil || parts.SigningKeys == nil {
		t.Errorf("--enable-webhooks=false: %+v, want the controllers and the signing keys alone", parts)
	}
}

package signing

import (
	"testing"
	"time"
)

func TestRotationPublishesAheadAndKeepsReplacedKeys(t *testing.T) {
	policy := Policy{Algorithm: EdDSA, RotateEvery: 30 * 24 * time.Hour, PublishAhead: 10 * time.Minute}
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	set := &Set{}

	if changed, err := set.Rotate(t0, policy); err != nil || !changed {
		t.Fatalf("first Rotate() = %t, %v; want a first key", changed, err)
	}
	first, ok := set.Signer(t0)
	if !ok || !first.SignsFrom.Equal(t0) {
		t.Fatalf("the first key signs at once: %+v %t", first, ok)
	}
	if changed, _ := set.Rotate(t0.Add(time.Hour), policy); changed {
		t.Fatal("nothing is due an hour later")
	}

	due := t0.Add(policy.RotateEvery)
	if changed, _ := set.Rotate(due, policy); !changed || len(set.Keys) != 2 {
		t.Fatalf("a successor is due: %d keys", len(set.Keys))
	}
	if signer, _ := set.Signer(due.Add(5 * time.Minute)); signer.KID != first.KID {
		t.Fatal("the successor is published ahead and does not sign yet")
	}
	if got := len(set.JWKS(due).Keys); got != 2 {
		t.Fatalf("both keys are published, got %d", got)
	}

	takeover := due.Add(policy.PublishAhead)
	second, _ := set.Signer(takeover)
	if second.KID == first.KID {
		t.Fatal("the successor signs once its time comes")
	}
	if changed, _ := set.Rotate(takeover, policy); !changed {
		t.Fatal("the replaced key gets an expiry")
	}
	if exp := set.Keys[0].ExpiresAt; exp == nil || !exp.Equal(takeover.Add(MaxTokenLifetime)) {
		t.Fatalf("the replaced key expires a token lifetime after the takeover: %v", exp)
	}
	if got := len(set.JWKS(takeover.Add(MaxTokenLifetime - time.Second)).Keys); got != 2 {
		t.Fatalf("the replaced key stays published while its tokens live, got %d keys", got)
	}
	if _, _ = set.Rotate(takeover.Add(MaxTokenLifetime), policy); len(set.Keys) != 1 || set.Keys[0].KID != second.KID {
		t.Fatalf("the expired key is removed: %d keys", len(set.Keys))
	}
}

func TestKeySetSurvivesTheSecretAndTheJWKS(t *testing.T) {
	for _, alg := range []string{EdDSA, ES256} {
		set := &Set{}
		now := time.Now()
		if _, err := set.Rotate(now, Policy{Algorithm: alg, RotateEvery: time.Hour, PublishAhead: time.Minute}); err != nil {
			t.Fatal(err)
		}
		data, err := set.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		k := back.Keys[0]
		if k.KID != set.Keys[0].KID || k.Alg != alg || !k.SignsFrom.Equal(set.Keys[0].SignsFrom.UTC()) {
			t.Fatalf("%s: key changed through the Secret: %+v", alg, k)
		}
		if jwk := back.JWKS(now).Keys[0]; jwk.Alg != alg || jwk.KID != k.KID || jwk != ToJWK(k.KID, set.Keys[0].Public()) {
			t.Fatalf("%s: the JWK does not match the key: %+v", alg, jwk)
		}
	}
	if _, err := NewKey("HS256", time.Now(), time.Now()); err == nil {
		t.Fatal("symmetric algorithms are refused")
	}
}

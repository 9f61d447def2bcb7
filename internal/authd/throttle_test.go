package authd

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestThrottle(t *testing.T) {
	th := newThrottle(time.Hour, 2)
	for i := range 2 {
		if ok, _ := th.allow("alice"); !ok {
			t.Fatalf("attempt %d is within the burst", i+1)
		}
	}
	ok, wait := th.allow("alice")
	if ok || wait <= 0 || retryAfterSeconds(wait) < 1 {
		t.Fatalf("the third attempt waits: ok %t, wait %s", ok, wait)
	}
	if ok, _ := th.allow("bob"); !ok {
		t.Fatal("another key has its own bucket")
	}
}

func TestBackoff(t *testing.T) {
	b := newBackoff(3, time.Second, 10*time.Second)
	now := time.Unix(1_000_000, 0)
	for i := range 3 {
		if wait := b.wait("alice", now); wait != 0 {
			t.Fatalf("attempt %d is free, but waits %s", i+1, wait)
		}
		b.fail("alice", now)
	}
	if wait := b.wait("alice", now); wait != 0 {
		t.Fatalf("the attempt after the free failures still goes, waits %s", wait)
	}
	var waits []time.Duration
	for range 6 {
		b.fail("alice", now)
		waits = append(waits, b.wait("alice", now))
	}
	if diff := cmp.Diff([]time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}, waits); diff != "" {
		t.Fatalf("each further failure doubles the wait, up to the maximum (-want +got):\n%s", diff)
	}
	if wait := b.wait("alice", now.Add(10*time.Second)); wait != 0 {
		t.Fatalf("never longer than the maximum after the last failure: %s", wait)
	}
	if wait := b.wait("bob", now); wait != 0 {
		t.Fatal("another key has its own count")
	}
	b.succeed("alice")
	if wait := b.wait("alice", now); wait != 0 {
		t.Fatal("a success forgets the failures")
	}
	b.fail("carol", now)
	b.forgetIdle(now.Add(21 * time.Second))
	if _, kept := b.keys["carol"]; kept {
		t.Fatal("a key idle for twice the maximum is forgotten")
	}
}

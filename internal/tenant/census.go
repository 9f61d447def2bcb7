package tenant

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Census counts, per namespace, the distinct keys of the live (not being deleted) objects of one
// kind: users for Memberships, names for Projects and API keys. It follows the manager's
// informer, so that a quota check costs a map lookup rather than a list of the namespace, which
// matters in an organization with ten thousand members.
type Census struct {
	key          func(client.Object) string
	registration toolscache.ResourceEventHandlerRegistration

	mu     sync.RWMutex
	counts map[string]map[string]int // namespace → key → live objects with that key
}

// NewCensus follows the informer of obj's kind in c; key says what counts as distinct.
func NewCensus(ctx context.Context, c cache.Cache, obj client.Object, key func(client.Object) string) (*Census, error) {
	informer, err := c.GetInformer(ctx, obj)
	if err != nil {
		return nil, fmt.Errorf("getting the informer of %T: %w", obj, err)
	}
	census := &Census{key: key, counts: map[string]map[string]int{}}
	census.registration, err = informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { census.change(nil, o) },
		UpdateFunc: census.change,
		DeleteFunc: func(o any) {
			if unknown, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = unknown.Obj
			}
			census.change(o, nil)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("following %T: %w", obj, err)
	}
	return census, nil
}

// change moves the count from old to o (either may be nil) in one step, so that a reader never
// sees an update half done.
func (c *Census) change(old, o any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.add(old, -1)
	c.add(o, 1)
}

// add counts o, unless it is being deleted; the caller holds mu.
func (c *Census) add(o any, delta int) {
	obj, ok := o.(client.Object)
	if !ok || obj.GetDeletionTimestamp() != nil {
		return
	}
	ns, key := obj.GetNamespace(), c.key(obj)
	keys := c.counts[ns]
	if keys == nil {
		keys = map[string]int{}
		c.counts[ns] = keys
	}
	if keys[key] += delta; keys[key] <= 0 {
		delete(keys, key)
	}
	if len(keys) == 0 {
		delete(c.counts, ns)
	}
}

// Count returns how many distinct keys the live objects in ns have, and whether key is one of
// them. It waits for the informer's first list.
func (c *Census) Count(ctx context.Context, ns, key string) (count int, has bool, err error) {
	if !c.registration.HasSynced() {
		err := wait.PollUntilContextCancel(ctx, 10*time.Millisecond, true, func(context.Context) (bool, error) {
			return c.registration.HasSynced(), nil
		})
		if err != nil {
			return 0, false, fmt.Errorf("waiting for the census to sync: %w", err)
		}
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	keys := c.counts[ns]
	return len(keys), keys[key] > 0, nil
}

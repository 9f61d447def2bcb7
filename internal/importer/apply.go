package importer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// FieldManager is the name the import creates objects under.
const FieldManager = "tenancy-import"

// applier creates the manifests' objects in the cluster, each once: an object that exists is left
// as it is (a tenant may have changed it since), and one the ledger says an earlier run created
// is not created again (a tenant may have deleted it). Organizations go first and must be Ready
// (their namespace made) before anything is created in their namespace; an organization whose
// Organization was refused or never got Ready gets nothing else.
type applier struct {
	c        client.Client
	ledger   *pgx.Conn
	source   string
	progress func(kind string, done, total int)
}

// appliedObject is one object of the import, for the wait that follows.
type appliedObject struct {
	obj  *unstructured.Unstructured
	path string
}

// applyResult is what apply did.
type applyResult struct {
	Counts Counts
	// Objects are the objects besides Organizations, created now or by an earlier run, for the
	// wait until they are Ready.
	Objects  []appliedObject
	Problems []Problem
	Notes    []Problem
}

func (a *applier) apply(ctx context.Context, files []manifestFile, wait time.Duration) (applyResult, error) {
	var r applyResult
	var orgs, rest []appliedObject
	for _, f := range files {
		for _, obj := range f.Objects {
			o := appliedObject{obj: obj, path: f.Path}
			if obj.GetKind() == "Organization" {
				orgs = append(orgs, o)
			} else {
				rest = append(rest, o)
			}
		}
	}
	total := len(orgs) + len(rest)
	done := 0
	create := func(objects []appliedObject) ([]appliedObject, error) {
		var there []appliedObject
		for _, o := range objects {
			state, err := a.createOnce(ctx, o.obj)
			done++
			a.progress(kindObjects, done, total)
			switch {
			case ctx.Err() != nil:
				return there, ctx.Err()
			case apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsBadRequest(err) || apierrors.IsNotFound(err):
				r.Problems = append(r.Problems, Problem{Row: o.path + ": " + describe(o.obj), Message: "refused: " + err.Error()})
				continue
			case err != nil:
				return there, fmt.Errorf("creating %s from %s: %w", describe(o.obj), o.path, err)
			}
			switch state {
			case objectCreated:
				r.Counts.Created++
			case objectForeign:
				r.Problems = append(r.Problems, Problem{Row: o.path + ": " + describe(o.obj),
					Message: "exists and was not made by this import; left as it is"})
				continue
			case objectDeletedSince:
				r.Notes = append(r.Notes, Problem{Row: o.path + ": " + describe(o.obj),
					Message: "an earlier run created it and it was deleted since; not created again"})
				continue
			default:
				r.Counts.Unchanged++
			}
			there = append(there, o)
		}
		return there, nil
	}

	orgsThere, err := create(orgs)
	if err != nil {
		return r, err
	}
	// Objects in an organization's namespace need the namespace, which the operator makes with
	// the Organization's Ready.
	orgsReady, problems, err := a.wait(ctx, orgsThere, wait)
	r.Problems = append(r.Problems, problems...)
	if err != nil {
		return r, err
	}
	ready := map[string]bool{}
	for _, o := range orgsReady {
		ready[o.obj.GetName()] = true
	}
	var inReadyOrgs []appliedObject
	for _, o := range rest {
		switch {
		case o.obj.GetNamespace() == "" || ready[o.obj.GetNamespace()]:
			inReadyOrgs = append(inReadyOrgs, o)
		default:
			done++
			r.Problems = append(r.Problems, Problem{Row: o.path + ": " + describe(o.obj),
				Message: fmt.Sprintf("not created: Organization %s is not Ready", o.obj.GetNamespace())})
		}
	}
	restThere, err := create(inReadyOrgs)
	r.Objects = append(r.Objects, restThere...)
	return r, err
}

// objectState is what createOnce found or did.
type objectState int

const (
	objectThere objectState = iota
	objectCreated
	objectDeletedSince
	objectForeign // exists, without the source's label: someone else's
)

// createOnce creates obj unless it exists or the ledger says an earlier run created it.
func (a *applier) createOnce(ctx context.Context, obj *unstructured.Unstructured) (objectState, error) {
	state, err := a.existing(ctx, obj)
	if err == nil || !apierrors.IsNotFound(err) {
		return state, err
	}
	key := obj.GetNamespace() + "/" + obj.GetName()
	var known bool
	if err := a.ledger.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tenancy.import_ledger WHERE source = $1 AND kind = $2 AND key = $3)`,
		a.source, obj.GetKind(), key).Scan(&known); err != nil {
		return objectThere, fmt.Errorf("reading the import ledger: %w", err)
	}
	if known {
		return objectDeletedSince, nil
	}
	if err := a.c.Create(ctx, obj.DeepCopy(), client.FieldOwner(FieldManager)); apierrors.IsAlreadyExists(err) {
		return a.existing(ctx, obj) // created meanwhile by someone else
	} else if err != nil {
		return objectThere, err
	}
	if _, err := a.ledger.Exec(ctx, `INSERT INTO tenancy.import_ledger (source, kind, key) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		a.source, obj.GetKind(), key); err != nil {
		return objectCreated, fmt.Errorf("recording %s in the import ledger: %w", describe(obj), err)
	}
	return objectCreated, nil
}

// existing reads obj from the cluster: there (and the import's), someone else's, or a NotFound
// error.
func (a *applier) existing(ctx context.Context, obj *unstructured.Unstructured) (objectState, error) {
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(obj.GroupVersionKind())
	if err := a.c.Get(ctx, client.ObjectKeyFromObject(obj), live); err != nil {
		return objectThere, err
	}
	if live.GetLabels()[ManagedByLabel] != a.source {
		return objectForeign, nil
	}
	return objectThere, nil
}

// wait waits until every object is Ready (kstatus Current), or Failed, or timeout passes: it
// answers those that got Ready, and names the others with their reason. It lists each kind once a
// second (the objects carry the source's label) rather than reading hundreds of objects one by
// one.
func (a *applier) wait(ctx context.Context, objects []appliedObject, timeout time.Duration) ([]appliedObject, []Problem, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pending := objects
	var ready []appliedObject
	var problems []Problem
	for len(pending) > 0 {
		live, err := a.listLabelled(ctx, pending)
		if err != nil && ctx.Err() == nil {
			return nil, nil, err
		}
		var still []appliedObject
		for _, o := range pending {
			current, found := live[key(o.obj)]
			if !found {
				still = append(still, o)
				continue
			}
			result, err := kstatus.Compute(current)
			switch {
			case err != nil:
				return nil, nil, fmt.Errorf("reading the status of %s: %w", describe(o.obj), err)
			case result.Status == kstatus.CurrentStatus:
				ready = append(ready, o)
			case result.Status == kstatus.FailedStatus:
				problems = append(problems, Problem{Row: o.path + ": " + describe(o.obj), Message: "not Ready: " + result.Message})
			default:
				still = append(still, o)
			}
		}
		a.progress(kindReadyWait, len(objects)-len(still), len(objects))
		pending = still
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			if !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
				return ready, problems, ctx.Err()
			}
			for _, o := range pending {
				problems = append(problems, Problem{Row: o.path + ": " + describe(o.obj),
					Message: fmt.Sprintf("not Ready after %s; kubectl describe it to see why", timeout)})
			}
			return ready, problems, nil
		case <-time.After(time.Second):
		}
	}
	return ready, problems, nil
}

// listLabelled lists, for each kind among objects, the objects labelled with the source's name.
func (a *applier) listLabelled(ctx context.Context, objects []appliedObject) (map[string]*unstructured.Unstructured, error) {
	live := map[string]*unstructured.Unstructured{}
	listed := map[schema.GroupVersionKind]bool{}
	for _, o := range objects {
		gvk := o.obj.GroupVersionKind()
		if listed[gvk] {
			continue
		}
		listed[gvk] = true
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := a.c.List(ctx, list, client.MatchingLabels{ManagedByLabel: a.source}); err != nil {
			return nil, fmt.Errorf("listing %s: %w", gvk.Kind, err)
		}
		for i := range list.Items {
			live[key(&list.Items[i])] = &list.Items[i]
		}
	}
	return live, nil
}

func key(obj *unstructured.Unstructured) string {
	return obj.GetKind() + "/" + obj.GetNamespace() + "/" + obj.GetName()
}

func describe(obj *unstructured.Unstructured) string {
	if obj.GetNamespace() == "" {
		return obj.GetKind() + " " + obj.GetName()
	}
	return obj.GetKind() + " " + obj.GetNamespace() + "/" + obj.GetName()
}

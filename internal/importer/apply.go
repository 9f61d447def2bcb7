package importer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// FieldManager is the name the import applies objects under (server-side apply).
const FieldManager = "tenancy-import"

// applier applies the manifests with server-side apply, in the order kubectl apply -R would take
// them: every organization's 00- files, then every 01-, and so on, so that each object finds what
// it needs (its namespace, its Organization, its Project) already there.
type applier struct {
	c        client.Client
	progress func(kind string, done, total int)
}

// appliedObject is one object the import applied, for the wait that follows.
type appliedObject struct {
	obj  *unstructured.Unstructured
	path string
}

func (a *applier) apply(ctx context.Context, files []manifestFile) (Counts, []appliedObject, []Problem, error) {
	ordered := make([]manifestFile, len(files))
	copy(ordered, files)
	sort.SliceStable(ordered, func(i, j int) bool { return baseName(ordered[i].Path) < baseName(ordered[j].Path) })
	total := 0
	for _, f := range ordered {
		total += len(f.Objects)
	}
	var c Counts
	var applied []appliedObject
	var problems []Problem
	done := 0
	for _, f := range ordered {
		for _, obj := range f.Objects {
			changed, created, err := a.applyOne(ctx, obj.DeepCopy())
			done++
			a.progress("objects applied", done, total)
			switch {
			case ctx.Err() != nil:
				return c, applied, problems, ctx.Err()
			case apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsBadRequest(err):
				problems = append(problems, Problem{Row: f.Path + ": " + describe(obj), Message: "refused: " + err.Error()})
				continue
			case err != nil:
				return c, applied, problems, fmt.Errorf("applying %s from %s: %w", describe(obj), f.Path, err)
			case created:
				c.Created++
			case changed:
				c.Updated++
			default:
				c.Unchanged++
			}
			applied = append(applied, appliedObject{obj: obj, path: f.Path})
		}
	}
	return c, applied, problems, nil
}

// applyOne applies obj and reports whether it created or changed it.
func (a *applier) applyOne(ctx context.Context, obj *unstructured.Unstructured) (changed, created bool, err error) {
	before := &unstructured.Unstructured{}
	before.SetGroupVersionKind(obj.GroupVersionKind())
	err = a.c.Get(ctx, client.ObjectKeyFromObject(obj), before)
	if err != nil && !apierrors.IsNotFound(err) {
		return false, false, err
	}
	created = apierrors.IsNotFound(err)
	if err := a.c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return false, false, err
	}
	return created || obj.GetResourceVersion() != before.GetResourceVersion(), created, nil
}

// wait waits until every applied object is Ready (kstatus Current), or Failed, or timeout passes,
// and names those that are not Ready with their reason. It lists each kind once a second (the
// objects carry the source's label) rather than reading hundreds of objects one by one.
func (a *applier) wait(ctx context.Context, objects []appliedObject, source string, timeout time.Duration) ([]Problem, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pending := objects
	var problems []Problem
	for {
		live, err := a.listLabelled(ctx, pending, source)
		if err != nil && ctx.Err() == nil {
			return nil, err
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
				return nil, fmt.Errorf("reading the status of %s: %w", describe(o.obj), err)
			case result.Status == kstatus.CurrentStatus:
			case result.Status == kstatus.FailedStatus:
				problems = append(problems, Problem{Row: o.path + ": " + describe(o.obj), Message: "not Ready: " + result.Message})
			default:
				still = append(still, o)
			}
		}
		a.progress("objects Ready", len(objects)-len(still), len(objects))
		if len(still) == 0 {
			return problems, nil
		}
		select {
		case <-ctx.Done():
			for _, o := range still {
				problems = append(problems, Problem{Row: o.path + ": " + describe(o.obj),
					Message: fmt.Sprintf("not Ready after %s; kubectl describe it to see why", timeout)})
			}
			if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
				return problems, nil
			}
			return problems, ctx.Err()
		case <-time.After(time.Second):
		}
		pending = still
	}
}

// listLabelled lists, for each kind among objects, the objects labelled with source's name.
func (a *applier) listLabelled(ctx context.Context, objects []appliedObject, source string) (map[string]*unstructured.Unstructured, error) {
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
		if err := a.c.List(ctx, list, client.MatchingLabels{ManagedByLabel: source}); err != nil {
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

// baseName is a file's name without its directory: 00-namespace.yaml sorts before
// 01-organization.yaml whichever organization it belongs to.
func baseName(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			return path[i+1:]
		}
	}
	return path
}

package controllers

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
)

func TestWantedRowIDNeverReKeysARow(t *testing.T) {
	const (
		id       = "0b9f3c4e-5a6d-4e7f-8a9b-0c1d2e3f4a5b"
		statusID = "1c0a4d5f-6b7e-4f80-9bac-1d2e3f4a5b6c"
	)
	project := func(annotation string) *tenancyv1.Project {
		p := &tenancyv1.Project{}
		if annotation != "" {
			p.ObjectMeta = metav1.ObjectMeta{Annotations: map[string]string{tenancyv1.RowIDAnnotation: annotation}}
		}
		return p
	}
	for _, tc := range []struct {
		reason     string
		annotation string
		statusID   string
		want       string
		wantReason string // of the stalledError, "" for none
	}{
		{reason: "no annotation, no row yet: the database picks", want: ""},
		{reason: "no row yet: the annotation's id", annotation: id, want: id},
		{reason: "in the database's spelling", annotation: strings.ToUpper(id), want: id},
		{reason: "the row's id once it has one, whatever the annotation says", annotation: id, statusID: statusID, want: statusID},
		{reason: "a row deleted by hand comes back with its id", statusID: statusID, want: statusID},
		{reason: "not a UUID: Stalled, not a database error retried for ever", annotation: "acme-1", wantReason: tenancyv1.InvalidRowIDReason},
	} {
		got, err := wantedRowID(project(tc.annotation), tc.statusID)
		var stall *stalledError
		switch {
		case tc.wantReason != "" && (!errors.As(err, &stall) || stall.reason != tc.wantReason):
			t.Errorf("%s: error %v, want Stalled with %s", tc.reason, err, tc.wantReason)
		case tc.wantReason == "" && err != nil:
			t.Errorf("%s: error %v", tc.reason, err)
		case got != tc.want:
			t.Errorf("%s: id %q, want %q", tc.reason, got, tc.want)
		}
	}
}

func TestRowIDInUseStallsWithTheHolder(t *testing.T) {
	inUse := fmt.Errorf("upserting organization b: %w", &db.RowIDInUseError{ID: "0b9f3c4e-5a6d-4e7f-8a9b-0c1d2e3f4a5b", Holder: "organization a"})
	var stall *stalledError
	if err := rowIDInUse(inUse); !errors.As(err, &stall) || stall.reason != tenancyv1.RowIDInUseReason {
		t.Fatalf("got %v, want Stalled with %s", err, tenancyv1.RowIDInUseReason)
	}
	if want := "Row id 0b9f3c4e-5a6d-4e7f-8a9b-0c1d2e3f4a5b is already the id of organization a"; !strings.HasPrefix(stall.message, want) {
		t.Errorf("message %q, want it to start with %q", stall.message, want)
	}
	other := errors.New("connection reset")
	if err := rowIDInUse(other); err != other {
		t.Errorf("other errors pass unchanged; got %v", err)
	}
	if err := rowIDInUse(nil); err != nil {
		t.Errorf("nil stays nil; got %v", err)
	}
}

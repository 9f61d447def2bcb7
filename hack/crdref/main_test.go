package main

import (
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

const widgetCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.dev
spec:
  group: example.dev
  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wd]}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    schema:
      openAPIV3Schema:
        type: object
        description: Widget is a test kind.
        required: [spec]
        properties:
          spec:
            type: object
            required: [size]
            x-kubernetes-validations:
            - {rule: "!has(self.a) || !has(self.b)", message: a and b exclude each other, fieldPath: .a}
            properties:
              size:
                type: string
                enum: [Small, Large]
                default: Small
                description: |-
                  size is the widget's size;
                  defaults to <small>.
              limits:
                type: object
                default: {}
                properties:
                  max: {type: integer, format: int32, minimum: 1, maximum: 10}
          status:
            type: object
            properties:
              conditions:
                type: array
                items:
                  type: object
                  properties:
                    lastTransitionTime: {type: string}
                    message: {type: string}
                    observedGeneration: {type: integer}
                    reason: {type: string}
                    status: {type: string}
                    type: {type: string}
`

func TestRender(t *testing.T) {
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict([]byte(widgetCRD), &crd); err != nil {
		t.Fatal(err)
	}
	page, err := render([]apiextensionsv1.CustomResourceDefinition{crd})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ line, reason string }{
		{"| resource | `widgets` (singular `widget`), short names `wd` |", "names and short names"},
		{"| Ready | string | `.status.conditions[?(@.type==\"Ready\")].status` |", "print columns"},
		{"### Widget.spec (required)", "a required part"},
		{"Rules on `spec`: `!has(self.a) || !has(self.b)` (on `spec.a`): a and b exclude each other",
			"object rules outside a table keep their pipes"},
		{"| `spec.size` **required** | string | `Small` | one of `Small`, `Large` | size is the widget's size; defaults to &lt;small&gt;. |",
			"required, default, enum, and a description joined into one line with <…> escaped"},
		{"| `spec.limits.max` | integer (int32) |  | minimum 1; maximum 10 |  |", "nested fields with format and bounds"},
		{"| `spec.limits` | object | `{}` |", "an object default"},
		{"| `status.conditions` | [][Condition](https://pkg.go.dev/k8s.io/apimachinery/pkg/apis/meta/v1#Condition) |", "conditions shortened"},
	} {
		if !strings.Contains(string(page), want.line) {
			t.Errorf("%s: missing %q in:\n%s", want.reason, want.line, page)
		}
	}
	if strings.Contains(string(page), "status.conditions[].reason") {
		t.Error("the fields of metav1.Condition are listed, though every kind shares them")
	}
}

func TestCellEscapesPipes(t *testing.T) {
	if got, want := cell("a || b"), `a \|\| b`; got != want {
		t.Errorf("cell(%q) = %q, want %q", "a || b", got, want)
	}
}

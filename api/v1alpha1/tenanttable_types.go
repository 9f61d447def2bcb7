package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// TableAccess gives, per SQL command, the minimum role a principal needs in the row's
// organization (or project) for the row to pass the policy.
type TableAccess struct {
	// select is the minimum role to read rows.
	// +optional
	// +kubebuilder:default=Viewer
	Select Role `json:"select,omitempty"`

	// insert is the minimum role to insert rows.
	// +optional
	// +kubebuilder:default=Member
	Insert Role `json:"insert,omitempty"`

	// update is the minimum role to update rows.
	// +optional
	// +kubebuilder:default=Member
	Update Role `json:"update,omitempty"`

	// delete is the minimum role to delete rows.
	// +optional
	// +kubebuilder:default=Admin
	Delete Role `json:"delete,omitempty"`
}

// TenantTableSpec is the desired state of a TenantTable.
// +kubebuilder:validation:XValidation:rule="!has(self.projectColumn) || !has(self.organizationColumn) || self.projectColumn != self.organizationColumn",message="spec.projectColumn must differ from spec.organizationColumn",fieldPath=".projectColumn"
type TenantTableSpec struct {
	// schema is the PostgreSQL schema of the table; immutable. It may not be tenancy (the
	// operator's own schema), information_schema or any schema starting with pg_ (PostgreSQL's).
	// +optional
	// +kubebuilder:default=public
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_$]*$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.schema is immutable; create another TenantTable instead"
	// +kubebuilder:validation:XValidation:rule="self != 'tenancy' && self != 'information_schema' && !self.startsWith('pg_')",message="spec.schema may not be tenancy (the operator's own schema), information_schema or a pg_ schema (PostgreSQL's): a TenantTable protects application tables only"
	Schema string `json:"schema,omitempty"`

	// table is the application table to protect with row-level security; immutable.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_$]*$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.table is immutable; create another TenantTable instead"
	Table string `json:"table"`

	// organizationColumn is the table's uuid column holding the organization id.
	// +optional
	// +kubebuilder:default=org_id
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_$]*$`
	OrganizationColumn string `json:"organizationColumn,omitempty"`

	// projectColumn, when set, is the table's uuid column holding the project id; rows then also
	// need a role in (or above) that project.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_$]*$`
	ProjectColumn string `json:"projectColumn,omitempty"`

	// access gives the minimum role per command.
	// +optional
	// +kubebuilder:default={}
	Access TableAccess `json:"access,omitempty"`
}

// TenantTableStatus is the observed state of a TenantTable.
type TenantTableStatus struct {
	CommonStatus `json:",inline"`

	// policies names the row-level-security policies in place on the table.
	// +optional
	Policies []string `json:"policies,omitempty"`

	// warnings name what weakens the table's isolation and the operator cannot fix: roles with
	// BYPASSRLS, an owner with BYPASSRLS, an organization column without an index.
	// +optional
	Warnings []string `json:"warnings,omitempty"`
}

// TenantTable puts an application table under row-level security by organization and project.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=tt,categories=tenancy
// +kubebuilder:printcolumn:name="Schema",type=string,JSONPath=`.spec.schema`
// +kubebuilder:printcolumn:name="Table",type=string,JSONPath=`.spec.table`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TenantTable struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec TenantTableSpec `json:"spec"`
	// status is what the operator last observed and did. It starts with observedGeneration -1, so
	// that kstatus (kubectl wait, Argo CD, Flux) reads a new object as InProgress, not Current,
	// until the operator has looked at it.
	// +kubebuilder:default={"observedGeneration":-1}
	Status TenantTableStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// TenantTableList is a list of TenantTables.
type TenantTableList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TenantTable `json:"items"`
}

// WithDefaults returns the spec with the CRD's defaults filled in: schema public, organization
// column org_id, and minimum roles Viewer, Member, Member, Admin.
func (s TenantTableSpec) WithDefaults() TenantTableSpec {
	fill := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	fillRole := func(r *Role, def Role) {
		if *r == "" {
			*r = def
		}
	}
	fill(&s.Schema, "public")
	fill(&s.OrganizationColumn, "org_id")
	fillRole(&s.Access.Select, RoleViewer)
	fillRole(&s.Access.Insert, RoleMember)
	fillRole(&s.Access.Update, RoleMember)
	fillRole(&s.Access.Delete, RoleAdmin)
	return s
}

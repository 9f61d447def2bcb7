package controllers_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// The ValidatingAdmissionPolicy of config/policy, enforced by the API server itself.
var _ = Describe("Namespace label policy", func() {
	var org *tenancyv1.Organization

	BeforeEach(func(ctx SpecContext) {
		org = &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("labelled")}}
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		eventuallyReady(ctx, org)
	})

	relabel := func(ctx SpecContext, c client.Client, name string, mutate func(labels map[string]string)) error {
		ns := &corev1.Namespace{}
		Expect(c.Get(ctx, client.ObjectKey{Name: name}, ns)).To(Succeed())
		before := ns.DeepCopy()
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		mutate(ns.Labels)
		return c.Patch(ctx, ns, client.MergeFrom(before))
	}
	forbidden := func(err error) {
		GinkgoHelper()
		Expect(apierrors.IsForbidden(err) || apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("only the Tenancy operator may set, change or remove this label"))
	}

	It("refuses anyone but the operator, cluster admins included, changing or removing the label", func(ctx SpecContext) {
		Eventually(func(g Gomega) {
			err := relabel(ctx, k8sClient, org.Name, func(l map[string]string) { l[tenancyv1.OrganizationLabel] = "someone-else" })
			g.Expect(err).To(HaveOccurred(), "the policy is not enforced yet")
		}).WithContext(ctx).Should(Succeed())
		forbidden(relabel(ctx, k8sClient, org.Name, func(l map[string]string) { l[tenancyv1.OrganizationLabel] = "someone-else" }))
		forbidden(relabel(ctx, k8sClient, org.Name, func(l map[string]string) { delete(l, tenancyv1.OrganizationLabel) }))
		Expect(relabel(ctx, k8sClient, org.Name, func(l map[string]string) { l["team"] = "payments" })).To(Succeed(),
			"other labels stay editable")

		ns := &corev1.Namespace{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: org.Name}, ns)).To(Succeed())
		ns.Labels[tenancyv1.OrganizationLabel] = "someone-else"
		forbidden(k8sClient.Status().Update(ctx, ns))
	})

	It("refuses putting the label on a namespace, and leaves unlabelled namespaces alone", func(ctx SpecContext) {
		name := uniqueName("plain")
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
		Expect(relabel(ctx, k8sClient, name, func(l map[string]string) { l["team"] = "payments" })).To(Succeed())
		Eventually(func(g Gomega) {
			err := relabel(ctx, k8sClient, name, func(l map[string]string) { l[tenancyv1.OrganizationLabel] = org.Name })
			g.Expect(err).To(HaveOccurred())
		}).WithContext(ctx).Should(Succeed())
		forbidden(relabel(ctx, k8sClient, name, func(l map[string]string) { l[tenancyv1.OrganizationLabel] = org.Name }))
		err := k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: uniqueName("born-labelled"), Labels: map[string]string{tenancyv1.OrganizationLabel: org.Name},
		}})
		forbidden(err)
	})
})

// Package web holds what authd's browser pages share that needs neither the database nor
// Kubernetes: the embedded templates and static files, the headers every page carries, the
// site's cookies and flash messages, CSRF tokens and safe post-login redirects. The page
// handlers themselves, which do need them, are in package authd.
package web

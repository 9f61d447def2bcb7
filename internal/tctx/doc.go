// Package tctx encodes the signed request context ("tctx") that access tokens carry and that
// PostgreSQL verifies in tenancy.request_context(). The format must match that SQL function:
//
//	v1.<kid>.<user id>.<api key id>.<org id>.<project id>.<exp>.<mac>
//
// Absent ids are empty fields, exp is Unix seconds, and mac is the unpadded base64url
// HMAC-SHA256 of everything before it under the context key named kid.
package tctx

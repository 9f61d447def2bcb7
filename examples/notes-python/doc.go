// Package notespython holds the test of the Python example beside it: notes.py, the notes service
// of examples/notes written with FastAPI, psycopg 3 and PyJWT. The test (notes_test.go) runs it
// with Debian's /usr/bin/python3 ($TENANCY_PYTHON, from hack/python.sh) against a migrated
// database and an issuer that publishes its keys as authd does, and drives it over HTTP. See
// README.md in this directory.
package notespython

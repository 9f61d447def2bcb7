package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	databaseURL := os.Getenv("NOTES_DATABASE_URL")
	if databaseURL == "" {
		return errors.New("NOTES_DATABASE_URL is required: a login that is a member of tenancy_app")
	}
	issuer := strings.TrimSuffix(getenv("TENANCY_ISSUER", "http://localhost:8090"), "/")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("connecting to the database: %w", err)
	}
	defer pool.Close()
	verifier := tenancy.NewVerifier(issuer, getenv("TENANCY_AUDIENCE", "tenancy"),
		tenancy.NewJWKSCache(issuer+"/.well-known/jwks.json"))

	server := &http.Server{
		Addr:              getenv("NOTES_LISTEN", "127.0.0.1:8070"),
		Handler:           newHandler(verifier, pool),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = server.Shutdown(shutdown)
	}()
	log.Printf("notes listening on %s, trusting tokens of %s", server.Addr, issuer)
	if err := server.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newHandler routes the API. Every route sits behind the verifier's middleware, so a handler
// always finds a principal in its request's context.
func newHandler(verifier *tenancy.Verifier, db tenancy.Beginner) http.Handler {
	n := &notes{db: db}
	mux := http.NewServeMux()
	mux.Handle("GET /notes", tenancy.RequirePermission("data:read")(http.HandlerFunc(n.list)))
	mux.Handle("POST /notes", tenancy.RequirePermission("data:write")(http.HandlerFunc(n.create)))
	mux.Handle("DELETE /notes/{id}", tenancy.RequirePermission("data:delete")(http.HandlerFunc(n.delete)))
	return verifier.Middleware(mux)
}

type notes struct {
	db tenancy.Beginner
}

// Note is one row of public.notes as the API shows it.
type Note struct {
	ID   int64  `json:"id"`
	Body string `json:"body"`
}

// list answers the notes that row-level security shows: those of the token's organization. The
// query has no WHERE on the organization on purpose.
func (n *notes) list(w http.ResponseWriter, r *http.Request) {
	found := []Note{}
	err := tenancy.WithTenant(r.Context(), n.db, func(tx pgx.Tx) error {
		rows, err := tx.Query(r.Context(), "SELECT id, body FROM public.notes ORDER BY id")
		if err != nil {
			return err
		}
		found, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Note])
		return err
	})
	if err != nil {
		failed(w, r, err)
		return
	}
	reply(w, http.StatusOK, found)
}

// create inserts a note into the organization that the database read from the signed request
// context (tenancy.current_org_id()), not from anything the client sent, and audits it.
func (n *notes) create(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Body string `json:"body"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&in); err != nil || strings.TrimSpace(in.Body) == "" {
		replyError(w, http.StatusBadRequest, "invalid_request", `body: send {"body": "<text>"} with a non-empty text`)
		return
	}
	var note Note
	err := tenancy.WithTenant(r.Context(), n.db, func(tx pgx.Tx) error {
		if err := tx.QueryRow(r.Context(),
			"INSERT INTO public.notes (org_id, body) VALUES (tenancy.current_org_id(), $1) RETURNING id, body",
			in.Body).Scan(&note.ID, &note.Body); err != nil {
			return err
		}
		return tenancy.Audit(r.Context(), tx, "note.created", "notes/"+strconv.FormatInt(note.ID, 10), nil)
	})
	if err != nil {
		failed(w, r, err)
		return
	}
	reply(w, http.StatusCreated, note)
}

// delete removes a note. A note of another organization is invisible under row-level security,
// so it is "not found" rather than "forbidden": the caller learns nothing about it.
func (n *notes) delete(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		replyError(w, http.StatusBadRequest, "invalid_request", "id: must be a note's number")
		return
	}
	err = tenancy.WithTenant(r.Context(), n.db, func(tx pgx.Tx) error {
		tag, err := tx.Exec(r.Context(), "DELETE FROM public.notes WHERE id = $1", id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errNotFound
		}
		return tenancy.Audit(r.Context(), tx, "note.deleted", "notes/"+strconv.FormatInt(id, 10), nil)
	})
	if err != nil {
		failed(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

var errNotFound = errors.New("no such note")

// failed answers a database error. The policies refuse a write with SQLSTATE 42501
// (insufficient_privilege) when the principal's live role is below what the command needs (the
// token's role may be up to one token lifetime stale), or the request context is not valid.
func failed(w http.ResponseWriter, r *http.Request, err error) {
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, errNotFound):
		replyError(w, http.StatusNotFound, "not_found", "no such note")
	case errors.As(err, &pgErr) && pgErr.Code == "42501":
		replyError(w, http.StatusForbidden, "insufficient_scope", "the database refused: your role there does not allow it")
	default:
		log.Printf("%s %s: %v", r.Method, r.URL.Path, err)
		replyError(w, http.StatusInternalServerError, "server_error", "the request failed; try again")
	}
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func replyError(w http.ResponseWriter, status int, code, description string) {
	reply(w, status, map[string]string{"error": code, "error_description": description})
}

func getenv(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

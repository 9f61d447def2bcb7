package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// devMailpit is the stack's mail catcher: authd and the manager send to smtpURL, people read at webURL.
type devMailpit struct {
	smtpURL string
	webURL  string
}

// startMailpit runs Mailpit with its web UI (hack/mailpit.sh --ui) on 1025 and 8025 when they
// are free, keeping its mail in the state directory across runs. Should the UI fail to build,
// the API-only Mailpit of the tests runs instead.
func startMailpit(ctx context.Context, s *stack, root, state, logs string) (devMailpit, error) {
	build := exec.CommandContext(ctx, filepath.Join(root, "hack", "mailpit.sh"), "--ui")
	build.Stderr = os.Stderr // the first build takes a minute or two: show its progress
	bin, err := build.Output()
	path := strings.TrimSpace(string(bin))
	if err != nil || path == "" {
		say("Mailpit's web UI did not build (%v): running Mailpit without it; read mail through its API", err)
		if path, err = testenv.MailpitBinary(); err != nil {
			return devMailpit{}, err
		}
	}
	smtpPort, err := portOrFree(1025)
	if err != nil {
		return devMailpit{}, err
	}
	webPort, err := portOrFree(8025)
	if err != nil {
		return devMailpit{}, err
	}
	m := devMailpit{
		// Mailpit on loopback speaks no TLS: nothing leaves the machine.
		smtpURL: fmt.Sprintf("smtp://127.0.0.1:%d?starttls=none", smtpPort),
		webURL:  fmt.Sprintf("http://localhost:%d", webPort),
	}
	say("Starting Mailpit on %s (SMTP 127.0.0.1:%d)", m.webURL, smtpPort)
	if err := startProcess(ctx, s, logs, "mailpit", path,
		"--smtp", "127.0.0.1:"+strconv.Itoa(smtpPort), "--listen", "127.0.0.1:"+strconv.Itoa(webPort),
		"--database", filepath.Join(state, "mailpit.db"), "--smtp-disable-rdns", "--disable-version-check"); err != nil {
		return devMailpit{}, err
	}
	return m, nil
}

// mailedInvitationToken waits for the invitation mailed to address whose token hashes to
// tokenHash (the live one: earlier runs' mails stay in Mailpit), and returns that token.
func mailedInvitationToken(ctx context.Context, mailURL, address, linkPrefix, tokenHash string) (string, error) {
	mailpit := testenv.MailpitAt(mailURL)
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		msgs, err := mailpit.MessagesTo(ctx, address)
		if err != nil {
			return "", err
		}
		for _, msg := range msgs {
			detail, err := mailpit.Message(ctx, msg.ID)
			if err != nil {
				return "", err
			}
			link, ok := testenv.FirstLink(detail.Text, linkPrefix)
			if !ok {
				continue
			}
			token := strings.TrimPrefix(link, linkPrefix)
			if sum := sha256.Sum256([]byte(token)); hex.EncodeToString(sum[:]) == tokenHash {
				return token, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("the invitation of %s did not arrive in Mailpit within 2 minutes; see the manager's log", address)
}

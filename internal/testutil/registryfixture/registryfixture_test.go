package registryfixture

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// TestCPU: the registry's CPU time grows with the work it is given (a
// 64 MiB upload it must receive over TLS and hash), and CPU fails once it
// is stopped.
func TestCPU(t *testing.T) {
	testutil.RequireTools(t, Tools...)
	r, err := New(filepath.Join(t.TempDir(), "registry"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer r.Kill()
	before, err := r.CPU()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(r.CertsDir, r.Host, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	// send makes an authenticated request that must be accepted (202).
	send := func(method, url string, body io.Reader) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, url, body)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(User, Password)
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%s %s: %s", method, url, resp.Status)
		}
		return resp
	}
	loc, err := send(http.MethodPost, "https://"+r.Host+"/v2/snaps/cpu/blobs/uploads/", nil).Location()
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 64<<20)
	rand.Read(data)
	send(http.MethodPatch, loc.String(), bytes.NewReader(data))
	after, err := r.CPU()
	if err != nil {
		t.Fatal(err)
	}
	// Receiving 64 MiB over TLS and hashing it takes the registry well
	// over 50 ms of CPU on any machine.
	if after-before < 50*time.Millisecond {
		t.Errorf("registry CPU %v → %v over a 64 MiB upload: not measured", before, after)
	}
	r.Kill()
	if _, err := r.CPU(); err == nil {
		t.Error("CPU of a stopped registry: no error")
	}
}

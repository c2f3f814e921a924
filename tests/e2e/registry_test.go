package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// The registry fixture: Debian's docker-registry (distribution 2.8) on
// 127.0.0.1, TLS from a CA made here (given to clients as a
// containers-certs.d(5) directory), htpasswd authentication (given to
// clients as a containers-auth.json(5) file). Its access log is kept, so a
// test can tell that no request reached it.

const (
	regUser     = "snapper"
	regPassword = "s3cret-Pa55word-never-logged"
)

type testRegistry struct {
	t        testing.TB
	dir      string
	Host     string // 127.0.0.1:port
	CertsDir string // certs.d with Host/ca.crt
	AuthFile string // auth.json with the right credentials
	BadAuth  string // auth.json with a wrong password
	Storage  string // the registry's storage root
	config   string
	logPath  string

	imageTar string // the one base image every node imports

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func startRegistry(t testing.TB) *testRegistry {
	t.Helper()
	testutil.RequireTools(t, "docker-registry", "htpasswd")
	dir := t.TempDir()
	r := &testRegistry{t: t, dir: dir, Storage: filepath.Join(dir, "storage"), logPath: filepath.Join(dir, "registry.log")}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	r.Host = l.Addr().String()
	l.Close()

	caPEM, certPEM, keyPEM := makeCerts(t)
	r.CertsDir = filepath.Join(dir, "certs.d")
	must(t, os.MkdirAll(filepath.Join(r.CertsDir, r.Host), 0o755))
	must(t, os.WriteFile(filepath.Join(r.CertsDir, r.Host, "ca.crt"), caPEM, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "server.crt"), certPEM, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "server.key"), keyPEM, 0o600))

	out, err := exec.Command("htpasswd", "-Bbn", regUser, regPassword).Output()
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "htpasswd"), out, 0o600))
	r.AuthFile = writeAuthFile(t, filepath.Join(dir, "auth.json"), r.Host, regUser, regPassword)
	r.BadAuth = writeAuthFile(t, filepath.Join(dir, "bad-auth.json"), r.Host, regUser, "wrong-"+regPassword)

	r.config = filepath.Join(dir, "config.yml")
	must(t, os.WriteFile(r.config, []byte(fmt.Sprintf(`version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  tls:
    certificate: %s
    key: %s
auth:
  htpasswd:
    realm: ocisnap-test
    path: %s
`, r.Storage, r.Host, filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "htpasswd"))), 0o644))
	r.Start()
	t.Cleanup(r.Kill)
	return r
}

func writeAuthFile(t testing.TB, path, host, user, pass string) string {
	t.Helper()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	must(t, os.WriteFile(path, []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth)), 0o600))
	return path
}

// Start starts the registry and waits until it answers.
func (r *testRegistry) Start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		r.t.Fatal("registry already running")
	}
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	must(r.t, err)
	cmd := exec.Command("docker-registry", "serve", r.config)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(r.t, cmd.Start())
	logf.Close()
	r.cmd, r.done = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(r.done)

	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(r.CertsDir, r.Host, "ca.crt"))
	must(r.t, err)
	pool.AppendCertsFromPEM(ca)
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := c.Get("https://" + r.Host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return
			}
		}
		select {
		case <-r.done:
			log, _ := os.ReadFile(r.logPath)
			r.t.Fatalf("docker-registry exited at start:\n%s", log)
		default:
		}
	}
	r.t.Fatalf("docker-registry did not answer on %s", r.Host)
}

// Kill stops the registry at once (SIGKILL); it is a no-op when stopped.
func (r *testRegistry) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	syscall.Kill(-r.cmd.Process.Pid, syscall.SIGCONT) // a paused one too
	<-r.done
	r.cmd = nil
}

// Pause stops the registry's processes (SIGSTOP): connections are
// accepted by the kernel and then hang, as with a registry that is
// overloaded or behind a dead link. Resume continues them.
func (r *testRegistry) Pause()  { r.signal(syscall.SIGSTOP) }
func (r *testRegistry) Resume() { r.signal(syscall.SIGCONT) }

func (r *testRegistry) signal(s syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		syscall.Kill(-r.cmd.Process.Pid, s)
	}
}

// Log is the registry's log so far (access log included).
func (r *testRegistry) Log() string {
	b, _ := os.ReadFile(r.logPath)
	return string(b)
}

// Requests counts the requests the registry logged for a path containing s.
func (r *testRegistry) Requests(s string) int {
	n := 0
	for _, line := range strings.Split(r.Log(), "\n") {
		if strings.Contains(line, "/v2/") && strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// BlobPath is where the registry stores the blob with digest d
// ("sha256:<hex>").
func (r *testRegistry) BlobPath(d string) string {
	hex := strings.TrimPrefix(d, "sha256:")
	return filepath.Join(r.Storage, "docker/registry/v2/blobs/sha256", hex[:2], hex, "data")
}

// makeCerts makes a CA and a server certificate for 127.0.0.1 signed by it.
func makeCerts(t testing.TB) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ocisnap test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(t, err)
	ca, err := x509.ParseCertificate(caDER)
	must(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	must(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// node is one "node": its own podman store, state dir, allow-dir and
// spool, sharing nothing with another node but the registry.
type node struct {
	*podman
	allow, state, spool, hooks string
	img                        string
}

// newNode makes a node whose hook allows the registry's "snaps/"
// repositories with the given auth file (and extra hook flags).
func newNode(t testing.TB, r *testRegistry, authFile string, extra ...string) *node {
	t.Helper()
	r.mu.Lock()
	if r.imageTar == "" {
		root := filepath.Join(r.dir, "imgroot")
		buildImageRoot(t, root)
		r.imageTar = filepath.Join(r.dir, "img.tar")
		if out, err := exec.Command("tar", "-C", root, "--numeric-owner", "-cf", r.imageTar, ".").CombinedOutput(); err != nil {
			t.Fatalf("tar: %v\n%s", err, out)
		}
	}
	r.mu.Unlock()
	base := t.TempDir()
	n := &node{allow: snapshotDir(t), state: filepath.Join(base, "state"), spool: filepath.Join(base, "spool")}
	args := append([]string{"--allow-dir", n.allow, "--state-dir", n.state, "--spool-dir", n.spool,
		"--allow-registry", r.Host + "/snaps/", "--registry-auth-file", authFile,
		"--registry-certs-dir", r.CertsDir, "--registry-timeout", "20s"}, extra...)
	n.hooks = writeHooksDir(t, filepath.Join(base, "hooks.d"), hookBin, 0, args...)
	n.podman = newPodman(t, n.hooks)
	// Every node imports the same image tar: the same files, mtimes
	// included, as nodes pulling one image from a registry have.
	n.img = "localhost/ocisnap-e2e:latest"
	n.run("import", "-q", r.imageTar, n.img)
	return n
}

// cli runs the ocisnap CLI with the registry's credentials and CA.
func (r *testRegistry) cli(t testing.TB, args ...string) (string, error) {
	t.Helper()
	full := append([]string{"--registry-auth-file", r.AuthFile, "--registry-certs-dir", r.CertsDir}, args...)
	out, err := exec.Command(cliBin, full...).CombinedOutput()
	return string(out), err
}

// skopeo runs skopeo with the registry's credentials and CA.
func (r *testRegistry) skopeo(t testing.TB, args ...string) string {
	t.Helper()
	testutil.RequireTools(t, "skopeo")
	out, err := exec.Command("skopeo", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

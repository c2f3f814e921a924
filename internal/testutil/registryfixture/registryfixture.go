// Package registryfixture runs a real OCI registry for the tests and the
// benchmark: Debian's docker-registry (distribution 2.8) on 127.0.0.1,
// TLS from a CA made here (given to clients as a containers-certs.d(5)
// directory), htpasswd authentication (given to clients as a
// containers-auth.json(5) file). Its access log is kept, so a test can tell
// that no request reached it. It needs docker-registry and htpasswd
// (apache2-utils) in PATH.
package registryfixture

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The credentials the registry accepts.
const (
	User     = "snapper"
	Password = "s3cret-Pa55word-never-logged"
)

// Tools are the programs the fixture runs.
var Tools = []string{"docker-registry", "htpasswd"}

// Registry is one registry process (stopped and started again on the same
// port and storage by Kill and Start).
type Registry struct {
	Dir      string // everything of the fixture: config, certs, storage, log
	Host     string // 127.0.0.1:port
	CertsDir string // certs.d with Host/ca.crt
	AuthFile string // auth.json with the right credentials
	BadAuth  string // auth.json with a wrong password
	Storage  string // the registry's storage root
	config   string
	logPath  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// New prepares a registry in dir (made if missing): a free port, a CA and a
// server certificate, the htpasswd file, the auth files and the
// configuration. It does not start it (Start).
func New(dir string) (*Registry, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	r := &Registry{Dir: dir, Storage: filepath.Join(dir, "storage"), logPath: filepath.Join(dir, "registry.log")}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r.Host = l.Addr().String()
	l.Close()

	caPEM, certPEM, keyPEM, err := makeCerts()
	if err != nil {
		return nil, err
	}
	r.CertsDir = filepath.Join(dir, "certs.d")
	out, err := exec.Command("htpasswd", "-Bbn", User, Password).Output()
	if err != nil {
		return nil, fmt.Errorf("htpasswd: %w", err)
	}
	r.config = filepath.Join(dir, "config.yml")
	cfg := fmt.Sprintf(`version: 0.1
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
`, r.Storage, r.Host, filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "htpasswd"))
	r.AuthFile = filepath.Join(dir, "auth.json")
	r.BadAuth = filepath.Join(dir, "bad-auth.json")
	for _, step := range []func() error{
		func() error { return os.MkdirAll(filepath.Join(r.CertsDir, r.Host), 0o755) },
		func() error { return os.WriteFile(filepath.Join(r.CertsDir, r.Host, "ca.crt"), caPEM, 0o644) },
		func() error { return os.WriteFile(filepath.Join(dir, "server.crt"), certPEM, 0o644) },
		func() error { return os.WriteFile(filepath.Join(dir, "server.key"), keyPEM, 0o600) },
		func() error { return os.WriteFile(filepath.Join(dir, "htpasswd"), out, 0o600) },
		func() error { return WriteAuthFile(r.AuthFile, r.Host, User, Password) },
		func() error { return WriteAuthFile(r.BadAuth, r.Host, User, "wrong-"+Password) },
		func() error { return os.WriteFile(r.config, []byte(cfg), 0o644) },
	} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// WriteAuthFile writes a containers-auth.json(5) file with one credential.
func WriteAuthFile(path, host, user, pass string) error {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	return os.WriteFile(path, []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth)), 0o600)
}

// Start starts the registry and waits until it answers.
func (r *Registry) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return errors.New("registry already running")
	}
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command("docker-registry", "serve", r.config)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return fmt.Errorf("docker-registry: %w", err)
	}
	r.cmd, r.done = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(r.done)

	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(r.CertsDir, r.Host, "ca.crt"))
	if err != nil {
		return err
	}
	pool.AppendCertsFromPEM(ca)
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer c.CloseIdleConnections()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := c.Get("https://" + r.Host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		select {
		case <-r.done:
			log, _ := os.ReadFile(r.logPath)
			r.cmd = nil
			return fmt.Errorf("docker-registry exited at start:\n%s", log)
		default:
		}
	}
	return fmt.Errorf("docker-registry did not answer on %s", r.Host)
}

// Kill stops the registry at once (SIGKILL); it is a no-op when stopped.
func (r *Registry) Kill() {
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
func (r *Registry) Pause()  { r.signal(syscall.SIGSTOP) }
func (r *Registry) Resume() { r.signal(syscall.SIGCONT) }

func (r *Registry) signal(s syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		syscall.Kill(-r.cmd.Process.Pid, s)
	}
}

// CPU is the CPU time (user+sys, all threads) the running registry has
// used so far, from /proc/PID/stat (in clock ticks of 10 ms: USER_HZ is
// 100 on Linux whatever the kernel's HZ).
func (r *Registry) CPU() (time.Duration, error) {
	r.mu.Lock()
	cmd := r.cmd
	r.mu.Unlock()
	if cmd == nil {
		return 0, errors.New("registry not running")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected %q", cmd.Process.Pid, b)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", cmd.Process.Pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// Log is the registry's log so far (access log included).
func (r *Registry) Log() string {
	b, _ := os.ReadFile(r.logPath)
	return string(b)
}

// Requests counts the requests the registry logged for a path containing s.
func (r *Registry) Requests(s string) int {
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
func (r *Registry) BlobPath(d string) string {
	hex := strings.TrimPrefix(d, "sha256:")
	return filepath.Join(r.Storage, "docker/registry/v2/blobs/sha256", hex[:2], hex, "data")
}

// ClientArgs are the ocisnap flags that reach this registry.
func (r *Registry) ClientArgs() []string {
	return []string{"--registry-auth-file", r.AuthFile, "--registry-certs-dir", r.CertsDir}
}

// SkopeoSrcArgs are skopeo copy's flags to read from this registry.
func (r *Registry) SkopeoSrcArgs() []string {
	return []string{"--src-authfile", r.AuthFile, "--src-cert-dir", filepath.Join(r.CertsDir, r.Host)}
}

// makeCerts makes a CA and a server certificate for 127.0.0.1 signed by it.
func makeCerts() (caPEM, certPEM, keyPEM []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ocisnap test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

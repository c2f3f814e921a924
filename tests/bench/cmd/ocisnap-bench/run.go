package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sample is one timed run of a tool, measured as a child process: wall
// time from fork to exit, CPU time from wait4's rusage (which covers the
// child's own children, for shell pipelines), peak RSS from GNU time.
//
// Peak RSS cannot come from this process's wait4: Go starts children with
// vfork (CLONE_VM), and execve records the high-water RSS of the mm it
// replaces, this process's, in the child's ru_maxrss. /usr/bin/time
// fork()s, so the tool's ru_maxrss it reports is the tool's own (at least
// time's ~1 MiB).
type sample struct {
	Wall   time.Duration
	User   time.Duration
	Sys    time.Duration
	MaxRSS int64 // bytes
	// Peer is the CPU (user+sys) the server the tool talks to (the
	// registry) spent during the run, for a tool with one (tool.peer).
	Peer time.Duration `json:",omitempty"`
}

// measure runs argv in dir with stdout to /dev/null and stdin from the
// file stdin ("" for /dev/null).
func measure(argv []string, dir, stdin string) (sample, error) {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return sample{}, err
	}
	defer devnull.Close()
	rssFile, err := os.CreateTemp("", "ocisnap-bench-rss")
	if err != nil {
		return sample{}, err
	}
	rssFile.Close()
	defer os.Remove(rssFile.Name())
	var stderr bytes.Buffer
	args := append([]string{"-f", "%M", "-o", rssFile.Name(), "--"}, argv...)
	name := timeBin
	if niceness != 0 {
		// nice(1) execs time(1), which forks the tool: all at niceness.
		args = append([]string{"-n", strconv.Itoa(niceness), timeBin}, args...)
		name = "nice"
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout = devnull
	cmd.Stderr = &stderr
	if stdin != "" {
		in, err := os.Open(stdin)
		if err != nil {
			return sample{}, err
		}
		defer in.Close()
		cmd.Stdin = in
	}
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return sample{}, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, trim(stderr.String(), 2000))
	}
	if stderr.Len() > 0 && verbose {
		fmt.Fprintf(os.Stderr, "%s: stderr: %s\n", argv[0], trim(stderr.String(), 500))
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	out, err := os.ReadFile(rssFile.Name())
	if err != nil {
		return sample{}, err
	}
	kib, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return sample{}, fmt.Errorf("%s: peak RSS from %s: %q", argv[0], timeBin, out)
	}
	return sample{
		Wall:   wall,
		User:   time.Duration(ru.Utime.Nano()),
		Sys:    time.Duration(ru.Stime.Nano()),
		MaxRSS: kib << 10,
	}, nil
}

// niceness is the nice value the tools run at (-nice): a benchmark on a
// machine shared with CPU-bound jobs measures the tools, not the sharing.
var niceness int

// timeBin is GNU time (Debian package "time").
const timeBin = "/usr/bin/time"

func trim(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// stats summarizes the samples of one tool on one workload.
type stats struct {
	Runs    int
	Median  time.Duration
	Min     time.Duration
	Max     time.Duration
	CPU     time.Duration // median user+sys
	PeerCPU time.Duration `json:",omitempty"` // median of sample.Peer
	MaxRSS  int64         // largest over the runs
	Samples []sample      `json:",omitempty"`
}

func summarize(ss []sample) stats {
	if len(ss) == 0 {
		return stats{}
	}
	walls := make([]time.Duration, len(ss))
	cpus := make([]time.Duration, len(ss))
	peers := make([]time.Duration, len(ss))
	var rss int64
	for i, s := range ss {
		walls[i], cpus[i], peers[i] = s.Wall, s.User+s.Sys, s.Peer
		rss = max(rss, s.MaxRSS)
	}
	slices.Sort(walls)
	slices.Sort(cpus)
	slices.Sort(peers)
	return stats{Runs: len(ss), Median: median(walls), Min: walls[0], Max: walls[len(walls)-1], CPU: median(cpus),
		PeerCPU: median(peers), MaxRSS: rss, Samples: ss}
}

func median(d []time.Duration) time.Duration {
	n := len(d)
	if n%2 == 1 {
		return d[n/2]
	}
	return (d[n/2-1] + d[n/2]) / 2
}

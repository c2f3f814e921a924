package cgroupfreeze

import (
	"errors"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
)

var (
	mV1Freezer = &mountinfo.Info{Mountpoint: "/sys/fs/cgroup/freezer", FSType: "cgroup", Root: "/", VFSOptions: "rw,freezer"}
	mV1CPU     = &mountinfo.Info{Mountpoint: "/sys/fs/cgroup/cpu,cpuacct", FSType: "cgroup", Root: "/", VFSOptions: "rw,cpu,cpuacct"}
	mUnified   = &mountinfo.Info{Mountpoint: "/sys/fs/cgroup/unified", FSType: "cgroup2", Root: "/", VFSOptions: "rw"}
	mV2        = &mountinfo.Info{Mountpoint: "/sys/fs/cgroup", FSType: "cgroup2", Root: "/", VFSOptions: "rw,nsdelegate"}
	mV2Subtree = &mountinfo.Info{Mountpoint: "/sys/fs/cgroup", FSType: "cgroup2", Root: "/machine.slice/ctr", VFSOptions: "rw"}
)

func TestCgroupDir(t *testing.T) {
	for _, tc := range []struct {
		name   string
		proc   string
		mounts []*mountinfo.Info
		want   string
		err    error
	}{
		{
			name:   "v2 only",
			proc:   "0::/machine.slice/libpod-abc.scope/container\n",
			mounts: []*mountinfo.Info{mV2},
			want:   "/sys/fs/cgroup/machine.slice/libpod-abc.scope/container",
		},
		{
			name:   "hybrid prefers the v1 freezer",
			proc:   "12:cpu,cpuacct:/libpod_parent/libpod-abc\n6:freezer:/libpod_parent/libpod-abc\n0::/\n",
			mounts: []*mountinfo.Info{mV1CPU, mV1Freezer, mUnified},
			want:   "/sys/fs/cgroup/freezer/libpod_parent/libpod-abc",
		},
		{
			name:   "v1 freezer line but hierarchy not mounted: v2",
			proc:   "6:freezer:/a\n0::/b\n",
			mounts: []*mountinfo.Info{mUnified},
			want:   "/sys/fs/cgroup/unified/b",
		},
		{
			name:   "subtree mount (cgroup namespace)",
			proc:   "0::/machine.slice/ctr/inner\n",
			mounts: []*mountinfo.Info{mV2Subtree},
			want:   "/sys/fs/cgroup/inner",
		},
		{
			name:   "outside the mounted subtree",
			proc:   "0::/other\n",
			mounts: []*mountinfo.Info{mV2Subtree},
			err:    ErrNoFreezer,
		},
		{
			name:   "prefix is not a parent",
			proc:   "0::/machine.slice/ctr2\n",
			mounts: []*mountinfo.Info{mV2Subtree},
			err:    ErrNoFreezer,
		},
		{
			name:   "nothing mounted",
			proc:   "0::/x\n",
			mounts: nil,
			err:    ErrNoFreezer,
		},
		{
			name:   "garbage lines ignored",
			proc:   "junk\n\n0::/x\n",
			mounts: []*mountinfo.Info{mV2},
			want:   "/sys/fs/cgroup/x",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cgroupDir(strings.NewReader(tc.proc), tc.mounts)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("got %q, %v; want error %v", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestFromPathsNoFreezer(t *testing.T) {
	if _, err := FromPaths(map[string]string{"cpu": "/sys/fs/cgroup/cpu/x"}); !errors.Is(err, ErrNoFreezer) {
		t.Fatalf("got %v, want ErrNoFreezer", err)
	}
}

package hooks

import (
	"reflect"
	"testing"

	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// requireAllSet fails unless every field of v (a struct, through slices
// and pointers) is set: a fixture that sets them all makes a round trip
// check every field, those added later included.
func requireAllSet(t *testing.T, name string, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			t.Errorf("%s is not set", name)
			return
		}
		requireAllSet(t, name, v.Elem())
	case reflect.Slice:
		if v.Len() == 0 {
			t.Errorf("%s is not set", name)
		}
		for i := range v.Len() {
			requireAllSet(t, name+"[]", v.Index(i))
		}
	case reflect.Struct:
		for i := range v.NumField() {
			requireAllSet(t, name+"."+v.Type().Field(i).Name, v.Field(i))
		}
	default:
		if v.IsZero() {
			t.Errorf("%s is not set", name)
		}
	}
}

// TestViewRecordRoundTrip: a view record mapped to a view.State and back
// is the record unchanged, every field included (an older record's Stub
// too, which release still reads), and so is the empty record.
func TestViewRecordRoundTrip(t *testing.T) {
	full := statefile.View{
		Kind: "file", Source: "/var/lib/ocisnap/boot.erofs", Mountpoint: "/run/ocisnap/views/c1",
		LoopDevice: "/dev/loop7", Mounted: true,
		Binds: []statefile.Bind{
			{Src: "/vmlinuz", Dst: "/boot/vmlinuz", Stub: "/boot", Mounted: true,
				Stubs: []statefile.Stub{{Path: "/boot", Dir: true}, {Path: "/boot/vmlinuz", Dir: true}}},
			{Src: "/initrd", Dst: "/a/b/initrd", Stub: "/a", Mounted: true, Stubs: []statefile.Stub{
				{Path: "/a", Dir: true}, {Path: "/a/b", Dir: true}, {Path: "/a/b/initrd", Dir: true}}},
		},
	}
	requireAllSet(t, "View", reflect.ValueOf(full))
	for _, rec := range []statefile.View{full, {}} {
		st := viewState(&rec)
		if got := viewRecord(st); !reflect.DeepEqual(got, rec) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, rec)
		}
	}
	st := viewState(&full)
	if st.Binds[1].LegacyStub != "/a" || len(st.Binds[1].Stubs) != 3 || !st.Binds[1].Mounted || !st.Pending() {
		t.Errorf("view state %+v does not hold the record's binds", st)
	}
	if got := viewStates([]statefile.View{full, {}}); len(got) != 2 || !reflect.DeepEqual(viewRecord(&got[0]), full) {
		t.Errorf("viewStates = %+v", got)
	}
}

// TestViewOverlay: an image view gets every read-only part of the
// recorded overlay (not its upper or work directory); no overlay, none.
func TestViewOverlay(t *testing.T) {
	rec := &statefile.Overlay{Upper: "/u", Work: "/w", Lowers: []string{"/l1", "/l2"}, DataDirs: []string{"/d"},
		Options: []string{"metacopy=on"}, UserXattr: true}
	ov := viewOverlay(rec)
	requireAllSet(t, "view.Overlay", reflect.ValueOf(ov))
	if !reflect.DeepEqual(ov.Lowers, rec.Lowers) || !reflect.DeepEqual(ov.DataDirs, rec.DataDirs) ||
		!reflect.DeepEqual(ov.Options, rec.Options) || !ov.UserXattr {
		t.Errorf("viewOverlay(%+v) = %+v", rec, ov)
	}
	if viewOverlay(nil) != nil {
		t.Error("viewOverlay(nil) is not nil")
	}
}
